"""`--read-only`: a 3.14+ process's tasks read from its memory with `_remote_debugging`, no
code run in it; and the same look as the fallback when the agent cannot be loaded there
(`-X disable-remote-debug`). On 3.11-3.13 the target runs in the sid chroot (the reader must
run under the target's own version, which is the point of these tests)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, mount_proc_in, wait_for

CHROOT = Path(os.environ.get("TASKSCOPE_SID_CHROOT", "/var/cache/taskscope-ci/sid"))
NATIVE = sys.version_info >= (3, 14)

PROGRAM = """\
import asyncio, sys

async def leaf():
    await asyncio.sleep(3600)

async def child():
    await asyncio.gather(leaf(), leaf())

async def main():
    child_task = asyncio.create_task(child(), name="child")
    async with asyncio.TaskGroup() as group:
        group.create_task(leaf(), name="member")
        open(sys.argv[1], "w").write("ready")
        await child_task

asyncio.run(main())
"""

#: PROGRAM, with a Python helper process of its own (which ends when the program does).
WITH_HELPER = PROGRAM.replace(
    "async def main():\n",
    "async def main():\n"
    "    import subprocess\n"
    "    helper = subprocess.Popen(\n"
    "        [sys.executable, '-c', 'import sys; sys.stdin.read()'], stdin=subprocess.PIPE\n"
    "    )\n",
)

if not NATIVE and not (CHROOT / "usr/bin/python3.14").exists():
    pytest.skip(
        f"needs Python 3.14+, or on {sys.version_info.major}.{sys.version_info.minor} the sid "
        f"chroot at {CHROOT} (made by .ci/run) to run the 3.14 target in",
        allow_module_level=True,
    )


def taskscope(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TASKSCOPE_SOCKET_DIR"}
    return subprocess.run(
        [sys.executable, "-m", "taskscope", *args],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
    )  # fmt: skip


Start = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def start_314() -> Iterator[Start]:
    """Starts PROGRAM under Python 3.14+ (this interpreter, or the chroot's python3.14)."""
    started: list[tuple[subprocess.Popen[str], Path]] = []

    def _start(*options: str, program: str = PROGRAM) -> subprocess.Popen[str]:
        if not NATIVE:
            mount_proc_in(CHROOT)
        base = None if NATIVE else CHROOT / "tmp"
        workdir = Path(tempfile.mkdtemp(prefix="taskscope-ro-", dir=base))
        inside = str(workdir) if NATIVE else "/tmp/" + workdir.name
        (workdir / "app.py").write_text(program)
        if NATIVE:
            command = [sys.executable, *options, f"{inside}/app.py", f"{inside}/ready"]
        else:
            chroot = shutil.which("chroot") or "/usr/sbin/chroot"
            python = "/usr/bin/python3.14"
            command = [chroot, str(CHROOT), python, *options, f"{inside}/app.py", f"{inside}/ready"]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        started.append((process, workdir))
        wait_for(lambda: (workdir / "ready").exists() or process.poll() is not None, what="ready")
        assert process.poll() is None, process.communicate()
        return process

    yield _start
    for process, workdir in started:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.communicate()
        shutil.rmtree(workdir, ignore_errors=True)


def threads_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def test_tree_read_only_runs_no_code(start_314: Start) -> None:
    process = start_314()
    threads = threads_of(process.pid)
    # WHEN the tree is read from memory
    tree = taskscope("tree", "--read-only", str(process.pid))
    # THEN every pending task is there, nested under the task awaiting it
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    assert "read-only look" in lines[1] and "cancel" in lines[1]
    body = "\n".join(lines[2:])
    assert "Task-1" in body and "main()" in body
    assert "├─ child" in body or "└─ child" in body
    assert body.count("leaf()") == 3
    assert "member" in body
    # AND nothing was loaded into the process: no agent thread
    assert threads_of(process.pid) == threads
    assert process.poll() is None


def test_dump_read_only_has_the_awaited_by_graph(start_314: Start) -> None:
    process = start_314()
    dump = taskscope("dump", "--read-only", str(process.pid))
    assert dump.returncode == 0, dump.stderr
    snapshot = json.loads(dump.stdout)
    assert snapshot["schema"] == 1 and snapshot["pid"] == process.pid
    assert set(snapshot["read_only"]) >= {"leaf_awaiting", "creators", "history", "cancel"}
    by_name = {task["name"]: task for task in snapshot["tasks"]}
    main, child, member = by_name["Task-1"], by_name["child"], by_name["member"]
    assert main["id"] in child["awaited_by"] and main["id"] in member["awaited_by"]
    leaves = [task for task in snapshot["tasks"] if task["coro"] == "leaf"]
    assert len(leaves) == 3
    gathered = [task for task in leaves if child["id"] in task["awaited_by"]]
    assert len(gathered) == 2
    assert child["awaiting"]["kind"] == "tasks"
    assert sorted(child["awaiting"]["tasks"]) == sorted(task["id"] for task in gathered)
    assert member["stack"][0]["function"] == "leaf"
    assert member["stack"][-1]["function"] == "sleep"


def test_remote_debugging_disabled_falls_back_to_a_read_only_look(start_314: Start) -> None:
    process = start_314("-X", "disable-remote-debug")
    tree = taskscope("tree", str(process.pid))
    assert tree.returncode == 0, tree.stderr
    assert "disable-remote-debug" in tree.stderr and "read-only" in tree.stderr
    assert tree.stderr.count("\n") == 1  # one line, no traceback
    assert "read-only look" in tree.stdout and "member" in tree.stdout


def test_a_program_with_python_helpers_falls_back_to_a_read_only_look_too(start_314: Start) -> None:
    # GIVEN a program that forbids remote debugging and runs a Python helper process (whose
    # agent finds no asyncio)
    process = start_314("-X", "disable-remote-debug", program=WITH_HELPER)
    wait_for(lambda: len(_python_children(process.pid)) == 1, what="the helper process")
    # WHEN its tree is asked for
    tree = taskscope("tree", str(process.pid))
    # THEN the program is read from its memory, not said to run no asyncio
    assert tree.returncode == 0, tree.stderr
    assert f"process {process.pid} was started with -X disable-remote-debug" in tree.stderr
    assert f"reading process {process.pid}'s memory instead (read-only)" in tree.stderr
    assert "no event loop" not in tree.stderr
    assert "read-only look" in tree.stdout and "member" in tree.stdout
    # AND what a read-only look cannot do is refused in a line that does not deny its loop
    cancel = taskscope("cancel", str(process.pid), "member")
    assert cancel.returncode == 1
    assert cancel.stderr.splitlines()[-1] == (
        f"taskscope: process {process.pid} could not be looked at (said above), and none of "
        "its Python processes runs asyncio"
    )


def _python_children(pid: int) -> list[int]:
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [child.pid for child in children if "python" in child.name()]


@pytest.mark.skipif(NATIVE, reason="needs a target older than 3.14; this interpreter is 3.14+")
def test_read_only_on_an_older_python_says_why(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    target = subprocess.Popen(
        [sys.executable, str(REPO / "tests/targets/injection_target.py"), "idle", str(ready)],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for(ready.exists, what="ready")
        for command in ("ps", "attach"):  # the dashboard says it before its screen opens
            result = taskscope(command, "--read-only", str(target.pid))
            assert result.returncode != 0
            assert "needs Python 3.14 or newer" in result.stderr
            assert result.stderr.count("\n") == 1
    finally:
        target.kill()
        target.wait()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_dashboard_reads_a_program_that_forbids_the_agent_from_its_memory(
    start_314: Start,
) -> None:
    from tests.ui.test_tmux_e2e import Terminal
    from tests.ui.test_tmux_runtime import line_with, on_screen

    # GIVEN a 3.14+ program that forbids remote debugging
    process = start_314("-X", "disable-remote-debug")
    terminal = Terminal("read-only")
    try:
        # WHEN the user opens the dashboard on it
        env = {"PYTHONPATH": str(REPO), "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "45"}
        terminal.start([sys.executable, "-m", "taskscope", "attach", str(process.pid)], env)
        # THEN its tasks are shown, read from its memory, and the header says what is not
        on_screen(terminal, lambda: line_with(terminal, "member"), 30, "the task tree")
        on_screen(
            terminal,
            lambda: line_with(terminal, "read-only look (from memory, no agent)"),
            10,
            "the header's read-only notice",
        )

        # AND the reads go on: the data stays fresh (a read a second)
        def age() -> float | None:
            line = line_with(terminal, "data ", " s old")
            if line is None:
                return None
            return float(line.split("data ", 1)[1].split(" s old", 1)[0])

        on_screen(terminal, lambda: (seconds := age()) is not None and seconds < 2.5, 10, "data")
        # WHEN it asks to cancel a task
        terminal.keys("/")
        on_screen(terminal, lambda: line_with(terminal, "filter by name"), 10, "the filter box")
        terminal.keys("member", "Enter")
        on_screen(terminal, lambda: line_with(terminal, "filter: member"), 10, "the filter")
        terminal.keys("c")
        # THEN one notice says why it cannot, and what to do
        on_screen(
            terminal,
            lambda: line_with(terminal, "cannot cancel in a read-only look: cancelling needs"),
            10,
            "the notice",
        )
        assert "restart" in terminal.screen()
        terminal.keys("q")
        wait_for(lambda: not terminal.alive(), what="the dashboard to exit")
        # AND the program runs on as before
        assert process.poll() is None
    finally:
        terminal.kill()
