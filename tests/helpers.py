"""Starting real target programs for the tests and waiting for them without sleeping blind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskscope.agent.tracker import Tracker
from taskscope.client import AgentClient
from taskscope.protocol import socket_path
from taskscope.recording import open_recording

TARGETS = Path(__file__).parent / "targets"
REPO = Path(__file__).parent.parent


@contextlib.contextmanager
def program_in_own_session(
    command: list[str], ready: Path, what: str, env: dict[str, str] | None = None
) -> Iterator[int]:
    """`command` started in a session of its own: its pid once it has written `ready`; the
    whole session (its children too) killed after."""
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        wait_for(ready.exists, 20, what)
        yield process.pid
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@dataclass
class Target:
    """A running target program: its process, its files, and its agent socket."""

    process: subprocess.Popen[str]
    workdir: Path
    agent: bool
    output: tuple[str, str] | None = field(default=None)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def ready_file(self) -> Path:
        return self.workdir / f"ready-{self.pid}"

    def file(self, name: str) -> Path:
        return self.workdir / name

    def wait_ready(self, timeout: float = 20.0) -> Target:
        def ready() -> bool:
            if self.process.poll() is not None:
                _out, err = self.process.communicate()
                raise AssertionError(f"target exited early ({self.process.returncode}): {err}")
            if not self.ready_file.exists():
                return False
            return not self.agent or os.path.exists(socket_path(self.pid))

        wait_for(ready, timeout, "the target's ready signal")
        return self

    def stop(self, timeout: float = 20.0) -> tuple[int, str, str]:
        """Ask the target to finish (it watches for a stop file) and collect its output."""
        (self.workdir / f"stop-{self.pid}").write_text("stop")
        out, err = self.process.communicate(timeout=timeout)
        self.output = (out, err)
        return self.process.returncode, out, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def notes(target: Target) -> str:
    """What the target has written to its notes file so far ('' before it writes one)."""
    path = target.file(f"notes-{target.pid}")
    return path.read_text() if path.exists() else ""


def agent_snapshot(pid: int) -> dict[str, Any]:
    """A snapshot straight from the agent of `pid`, over its socket (no CLI in between)."""
    with AgentClient(pid) as client:
        return dict(client.snapshot())


def by_name(snap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tasks of a snapshot by their names."""
    return {task["name"]: task for task in snap["tasks"]}


def spawn(
    script: str,
    *args: str,
    agent: bool = True,
    workdir: str,
    env: dict[str, str] | None = None,
    python: str | None = None,
) -> Target:
    path = str(TARGETS / script) if not os.path.isabs(script) else script
    command = [python or sys.executable]
    if agent:
        command += ["-m", "taskscope.agent.launch"]
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    process = subprocess.Popen(
        [*command, path, workdir, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=workdir,
    )
    return Target(process, Path(workdir), agent)


def run_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run the real `taskscope` command line in a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "taskscope", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def recorded_updates(path: Path) -> int:
    """Updates in a recording being written (0 while it cannot be read yet)."""
    try:
        return len(open_recording(path).chunks)
    except Exception:  # not written yet
        return 0


def record_around_a_cue(
    target: Target, path: Path, *, cue: str, done: str, before: int, after: int
) -> str:
    """Record `target` to `path` with the real `taskscope record` (every 0.1 s): once `before`
    updates are in, write the target's cue file `cue`, wait for its file `done`, let `after`
    more updates in, and stop the recorder with Ctrl-C as a user would. The recorder's stderr."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    recorder = subprocess.Popen(
        [sys.executable, "-m", "taskscope", "record", str(target.pid), "-o", str(path),
         "--interval", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        wait_for(lambda: recorded_updates(path) >= before, what="the first updates recorded")
        target.file(cue).write_text("go")
        wait_for(target.file(done).exists, what=f"the target's {done}")
        enough = recorded_updates(path) + after
        wait_for(lambda: recorded_updates(path) >= enough, what=f"updates after {done}")
        recorder.send_signal(signal.SIGINT)
        _out, err = recorder.communicate(timeout=20)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.communicate()
    assert recorder.returncode == 0, err
    return err


def mount_proc_in(root: Path) -> None:
    """A chroot's /proc, as a container has one: the target's own Python looks at it there."""
    if not (root / "proc" / "self").exists():
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)


def write_package(root: Path, name: str, main_source: str) -> Path:
    """A package `name` under `root` that `python -m name` runs: its `__main__.py` is
    `main_source`."""
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(main_source)
    return package


def assert_lint_finds_the_transfer_deadlock(result: subprocess.CompletedProcess[str]) -> None:
    """`taskscope lint` of a deadlock target (transfer-1 holds `a` and waits for `b`,
    transfer-2 the other way round): the one deadlock line, told from either side, and the
    warnings exit status."""
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert result.stdout.strip() in (
        "lock deadlock: transfer-1 holds a and waits for b, held by transfer-2, which waits for a",
        "lock deadlock: transfer-2 holds b and waits for a, held by transfer-1, which waits for b",
    ), result.stdout


def with_tracker(scenario: Callable[[Tracker], Awaitable[None]]) -> None:
    """Run `scenario` in `asyncio.run` with a Tracker installed for its loop, then removed."""

    async def main() -> None:
        tracker = Tracker()
        tracker.install()
        try:
            await scenario(tracker)
        finally:
            tracker.uninstall()

    asyncio.run(main())


#: A program (its source) with one task, `victim`, asleep; it writes "ready" to the file named
#: by its first argument, and prints "victim cancelled" once cancelled.
VICTIM_PROGRAM = """\
import asyncio, sys

async def victim():
    await asyncio.sleep(3600)

async def main():
    victim_task = asyncio.create_task(victim(), name="victim")
    open(sys.argv[1], "w").write("ready")
    try:
        await victim_task
    except asyncio.CancelledError:
        print("victim cancelled", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""
