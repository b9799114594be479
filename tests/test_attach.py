"""`taskscope` commands on processes that never imported taskscope: the agent is injected,
reused on the next attach, and the target notices nothing (output, exit code)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskscope.attach import load_agent, stage_agent
from taskscope.protocol import socket_path
from tests.helpers import TARGETS, run_cli, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("gdb") is None and sys.version_info < (3, 14),
    reason="attaching to Python 3.11-3.13 needs gdb (apt-get install gdb)",
)

TARGET = str(TARGETS / "injection_target.py")


def clean_env() -> dict[str, str]:
    """An environment in which the target cannot import taskscope."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return env


class Plain:
    """A plain asyncio program started without taskscope."""

    def __init__(self, mode: str, workdir: Path, python: str = sys.executable) -> None:
        self.ready_file = workdir / f"ready-{mode}-{id(self)}"
        self.process = subprocess.Popen(
            [python, TARGET, mode, str(self.ready_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
            cwd=workdir,
        )
        self.mode = mode

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self) -> Plain:
        wait_for(
            lambda: self.ready_file.exists() or self.process.poll() is not None,
            what=f"the {self.mode} target",
        )
        assert self.process.poll() is None, self.process.communicate()
        return self

    def finish(self) -> tuple[int, str, str]:
        self.process.send_signal(signal.SIGUSR1)
        out, err = self.process.communicate(timeout=60)
        return self.process.returncode, out, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Any]:
    started: list[Plain] = []

    def _start(mode: str, python: str = sys.executable) -> Plain:
        target = Plain(mode, tmp_path, python)
        started.append(target)
        return target.wait_ready()

    yield _start
    for target in started:
        target.kill()


def dump(pid: int, *extra: str) -> dict[str, Any]:
    result = run_cli("dump", *extra, str(pid), timeout=60)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_the_first_look_at_a_loop_blocked_before_the_attach_says_so(plain: Any) -> None:
    # GIVEN a program whose loop has been blocked in time.sleep since before any attach
    target = plain("sleep")
    blocked_at = time.monotonic()
    time.sleep(1.0)
    # WHEN taskscope dumps it (the agent loaded now has never seen the loop turn)
    snap = dump(target.pid)
    # THEN the very first look says the loop is blocked, for at least as long as its timers
    # have been due, and where it is stuck
    [loop] = snap["loops"]
    assert loop["blocked_for"] is not None, (loop, snap["tasks"])
    assert 0.5 <= loop["blocked_for"] <= time.monotonic() - blocked_at + 0.1, loop
    assert loop["blocking_stack"][-1]["function"] == "sleep", loop["blocking_stack"]
    assert loop["blocking_stack"][-1]["file"].endswith("injection_target.py")
    code, out, err = target.finish()
    assert (code, out, err) == (0, "sleep: started\nsleep: finished\n", "")


@pytest.mark.parametrize("mode", ["idle", "busy", "sleep", "threads"])
def test_dump_attaches_to_a_plain_process(plain: Any, mode: str) -> None:
    # GIVEN a program that never heard of taskscope
    target = plain(mode)
    assert not os.path.exists(socket_path(target.pid))
    # WHEN taskscope dumps it
    snap = dump(target.pid)
    # THEN the agent was loaded and reports the loops and tasks that already existed
    assert snap["pid"] == target.pid
    assert snap["tasks"], snap
    assert all(task["parent"] is None for task in snap["tasks"] if task["state"] == "pending")
    if mode == "threads":
        assert len([loop for loop in snap["loops"] if loop["running"]]) == 4
    if mode == "sleep":
        wait_for(
            lambda: dump(target.pid)["loops"][0]["blocked_for"],
            timeout=10,
            what="the blocked loop to be reported",
        )
    # AND a second look reuses the same agent
    inode = os.stat(socket_path(target.pid)).st_ino
    assert run_cli("ps", str(target.pid)).returncode == 0
    assert os.stat(socket_path(target.pid)).st_ino == inode
    # AND the program finishes as it would have
    code, out, err = target.finish()
    assert code == 0, err
    assert out == f"{mode}: started\n{mode}: finished\n"
    assert err == ""


def other_pythons() -> list[str]:
    """Interpreters of the supported versions other than this one, where installed."""
    found = []
    for minor in range(11, 16):
        if minor == sys.version_info[1]:
            continue
        path = shutil.which(f"python3.{minor}")
        if path is not None:
            real = subprocess.run(
                [path, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True
            ).stdout.strip()
            if real:
                found.append(real)
    return found[:1]


@pytest.mark.parametrize("python", [sys.executable, *other_pythons()])
def test_the_agent_is_staged_compiled_for_the_targets_python(
    plain: Any, python: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a program that writes no bytecode (PYTHONDONTWRITEBYTECODE, as many container
    # images set), and no agent staged yet
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    target = plain("idle", python)
    version = tuple(
        int(part)
        for part in subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    )
    # WHEN the agent is loaded into it
    load_agent(target.pid)
    # THEN the staged copy holds the bytecode of every file for the target's version (made
    # here: the target does not compile the agent's sources while its loop waits)
    stage = stage_agent(os.getuid())
    assert str(stage).startswith(str(tmp_path))
    tag = f"cpython-{version[0]}{version[1]}"
    sources = sorted((stage / "taskscope").rglob("*.py"))
    assert sources
    for source in sources:
        assert (source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc").exists(), source
    assert target.finish()[0] == 0


def test_no_inject_refuses(plain: Any) -> None:
    target = plain("idle")
    result = run_cli("ps", "--no-inject", str(target.pid))
    assert f"process {target.pid} has no taskscope agent" in result.stderr
    assert not os.path.exists(socket_path(target.pid))
    if sys.version_info >= (3, 14):
        # No code may run there, but its memory can still be read: a read-only look.
        assert result.returncode == 0, result.stderr
        assert "read-only look" in result.stdout
    else:
        assert result.returncode == 1


def test_attach_to_a_target_in_another_virtualenv(plain: Any, tmp_path: Path) -> None:
    # GIVEN a target in a virtualenv that has no taskscope installed
    env_dir = tmp_path / "other-venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = str(env_dir / "bin" / "python")
    check = subprocess.run(
        [python, "-c", "import taskscope"], capture_output=True, env=clean_env(), cwd=tmp_path
    )
    assert check.returncode != 0, "the other virtualenv must not see taskscope"
    target = plain("idle", python)
    # WHEN taskscope attaches
    snap = dump(target.pid)
    # THEN it works and the target finishes normally
    assert snap["python"] == sys.version.split()[0]
    assert target.finish()[0] == 0


def test_the_same_process_20_times_and_20_processes(plain: Any) -> None:
    same = plain("idle")
    for _ in range(20):
        assert dump(same.pid)["pid"] == same.pid
    others = [plain("idle") for _ in range(20)]
    for other in others:
        assert dump(other.pid)["pid"] == other.pid
    for target in [same, *others]:
        code, out, _err = target.finish()
        assert code == 0 and out == "idle: started\nidle: finished\n"


def test_a_failed_attach_says_why_in_one_line(plain: Any, tmp_path: Path) -> None:
    # GIVEN a socket directory the agent must refuse (open to everyone)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    target = plain("idle")
    env = dict(os.environ, TASKSCOPE_SOCKET_DIR=str(open_dir))
    result = subprocess.run(
        [sys.executable, "-m", "taskscope", "dump", str(target.pid)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    # THEN the user gets one line, and the target lives on unharmed
    assert result.returncode == 1
    assert "the agent failed to start" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # AND a later attach with a sound directory works
    assert dump(target.pid)["pid"] == target.pid
    assert target.finish()[0] == 0


def test_errors_for_processes_that_cannot_be_attached() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        result = run_cli("dump", str(sleeper.pid))
        assert result.returncode == 1
        assert "not a Python process" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        sleeper.kill()
        sleeper.wait()
    gone = run_cli("dump", "999999")
    assert gone.returncode == 1 and "no process with pid 999999" in gone.stderr


def test_list_shows_attachable_python_processes(plain: Any) -> None:
    target = plain("idle")
    before = run_cli("list")
    line = next(line for line in before.stdout.splitlines() if line.split()[0] == str(target.pid))
    assert line.split()[1] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert line.split()[2] == "-"  # no agent yet
    dump(target.pid)
    after = run_cli("list")
    line = next(line for line in after.stdout.splitlines() if line.split()[0] == str(target.pid))
    assert line.split()[2] == "agent"


@pytest.mark.parametrize("runtime_kind", ["directory", "file", "unset"])
def test_the_targets_socket_directory_is_the_one_its_agent_would_choose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime_kind: str
) -> None:
    # GIVEN a process whose XDG_RUNTIME_DIR is a directory of its user, a file, or unset,
    # and a client that names no socket directory of its own
    from taskscope.attach import target_socket_directory

    runtime = tmp_path / "runtime"
    if runtime_kind == "directory":
        runtime.mkdir()
    elif runtime_kind == "file":
        runtime.write_text("not a directory")
    env = {
        k: v for k, v in os.environ.items() if k not in ("TASKSCOPE_SOCKET_DIR", "XDG_RUNTIME_DIR")
    }
    if runtime_kind != "unset":
        env["XDG_RUNTIME_DIR"] = str(runtime)
    code = "import sys; from taskscope.protocol import socket_directory; "
    code += "print(socket_directory(), flush=True); sys.stdin.read()"
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        chosen_by_the_target = child.stdout.readline().strip()
        monkeypatch.delenv("TASKSCOPE_SOCKET_DIR")
        # THEN taskscope looks where the target's own agent would listen
        expected = (
            str(runtime / "taskscope")
            if runtime_kind == "directory"
            else f"/tmp/taskscope-{os.getuid()}"
        )
        assert chosen_by_the_target == expected
        assert target_socket_directory(child.pid) == expected
    finally:
        child.communicate(timeout=10)
