"""End to end in a real terminal, issue 12: tmux runs `taskscope attach PID` against a real
program that blocked its loop 300 ms once and holds two tasks in a lock deadlock; the test
reads the screen as a person would after pressing the keys: the stalls view names the task
and the blocking line, the deadlocked task is marked ⚠ and its detail pane says who holds the
lock it waits for."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import spawn
from tests.ui.test_tmux_e2e import REPO, Terminal, detail_title, wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

TARGET = Path(__file__).parent / "targets" / "stall_and_deadlock.py"
#: The line of the target that blocks its loop (`time.sleep(0.3)` in rebuild_index).
BLOCKING_LINE = next(
    number
    for number, line in enumerate(TARGET.read_text().splitlines(), start=1)
    if "# the blocking line" in line
)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """The target started with the agent, once it said it is ready and the socket is there."""
    started = spawn(str(TARGET), workdir=str(tmp_path)).wait_ready(30)
    try:
        yield started.process
    finally:
        started.kill()


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal("runtime")
    yield term
    term.kill()


def on_screen(
    terminal: Terminal, condition: Callable[[], object], within: float, what: str
) -> object:
    """`wait_for`, saying what the screen showed when the condition never came."""
    try:
        return wait_for(condition, within, what)
    except AssertionError as error:
        raise AssertionError(f"{error}; the screen:\n{terminal.screen()}") from None


def line_with(terminal: Terminal, *needles: str) -> str | None:
    return next(
        (
            line
            for line in terminal.screen().splitlines()
            if all(needle in line for needle in needles)
        ),
        None,
    )


def attach(terminal: Terminal, pid: int) -> None:
    attach_to(terminal, pid, "transfer-b")


def attach_to(terminal: Terminal, pid: int, shown: str) -> None:
    """The dashboard on `pid`, once `shown` is on screen."""
    # The terminal's size (the tmux session's), whatever COLUMNS and LINES tmux inherited.
    env = {"PYTHONPATH": str(REPO), "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "45"}
    if "TASKSCOPE_SOCKET_DIR" in os.environ:
        env["TASKSCOPE_SOCKET_DIR"] = os.environ["TASKSCOPE_SOCKET_DIR"]
    terminal.start([sys.executable, "-m", "taskscope", "attach", str(pid), "--no-inject"], env)
    on_screen(terminal, lambda: line_with(terminal, shown), 30, "the task tree on screen")


def clear_filter(terminal: Terminal) -> None:
    """Escape, alone: a key right after it would read as Alt+key."""
    terminal.keys("Escape")
    on_screen(terminal, lambda: line_with(terminal, "filter:") is None, 10, "the filter cleared")


def quit_dashboard(terminal: Terminal, target: subprocess.Popen[str]) -> None:
    terminal.keys("q")
    wait_for(lambda: not terminal.alive(), 15, "the dashboard to exit")
    assert target.poll() is None


def test_the_stalls_view_names_the_task_and_the_blocking_line(
    target: subprocess.Popen[str], terminal: Terminal
) -> None:
    attach(terminal, target.pid)
    # b: the stall the target's indexer caused, over since, with its blocking line.
    terminal.keys("b")
    row = on_screen(
        terminal, lambda: line_with(terminal, "rebuild_index()", "indexer"), 15, "the stall's row"
    )
    assert f"stall_and_deadlock.py:{BLOCKING_LINE}" in str(row)
    assert "⏸" not in str(row)  # over: not marked as under way
    # Enter: the whole sampled stack in the detail pane, the blocking line marked.
    terminal.keys("Enter")
    on_screen(
        terminal, lambda: line_with(terminal, "stack sampled while it ran"), 10, "the stall's stack"
    )
    assert line_with(terminal, "▶ rebuild_index()") is not None
    assert line_with(terminal, "indexer()") is not None
    quit_dashboard(terminal, target)


def test_a_lock_deadlock_is_marked_and_names_who_holds_the_lock(
    target: subprocess.Popen[str], terminal: Terminal
) -> None:
    attach(terminal, target.pid)
    # The deadlocked transfer-a: marked ⚠, and its lock's holder named.
    terminal.keys("/")
    on_screen(terminal, lambda: line_with(terminal, "filter by name"), 10, "the filter box")
    terminal.keys("transfer-a", "Enter")
    on_screen(
        terminal, lambda: detail_title(terminal.screen()) == "transfer-a", 10, "transfer-a selected"
    )
    on_screen(terminal, lambda: line_with(terminal, "⚿ held by transfer-b"), 15, "the holder link")
    on_screen(
        terminal, lambda: line_with(terminal, "⚠", "transfer-a", "transfer()"), 15, "the mark"
    )
    header = line_with(terminal, "warning", "lock deadlock (")
    assert header is not None and "transfer-a" in header and "transfer-b" in header
    # and transfer-b's (the row below): held by transfer-a.
    terminal.keys("Down")
    on_screen(terminal, lambda: detail_title(terminal.screen()) == "transfer-b", 10, "transfer-b")
    on_screen(terminal, lambda: line_with(terminal, "⚿ held by transfer-a"), 15, "its holder")
    # ! shows only the tasks with warnings: both transfers (and the indexer, whose step
    # blocked the loop), not the healthy idler.
    clear_filter(terminal)
    on_screen(terminal, lambda: line_with(terminal, "idler()"), 10, "the idler shown")
    terminal.keys("!")
    on_screen(
        terminal, lambda: line_with(terminal, "only tasks with warnings"), 10, "the warnings filter"
    )
    on_screen(terminal, lambda: line_with(terminal, "idler()") is None, 10, "the idler hidden")
    assert line_with(terminal, "transfer-a", "transfer()") is not None
    quit_dashboard(terminal, target)


def test_attach_with_time_steps_turns_the_timing_on_for_the_dashboard(
    tmp_path: Path, terminal: Terminal
) -> None:
    from taskscope.client import AgentClient
    from tests.helpers import TARGETS

    # GIVEN a program whose agent does not time steps (started without --time-steps)
    started = spawn(str(TARGETS / "runtime.py"), "0.3", workdir=str(tmp_path)).wait_ready(30)
    try:
        env = {"PYTHONPATH": str(REPO), "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "45"}
        if "TASKSCOPE_SOCKET_DIR" in os.environ:
            env["TASKSCOPE_SOCKET_DIR"] = os.environ["TASKSCOPE_SOCKET_DIR"]
        # WHEN the dashboard is opened with --time-steps
        command = [sys.executable, "-m", "taskscope", "attach", str(started.pid), "--time-steps"]
        terminal.start([*command, "--no-inject"], env)
        on_screen(terminal, lambda: line_with(terminal, "burner"), 30, "the tasks on screen")
        # THEN the list has the BUSY and STEPS columns, and the agent times the steps
        terminal.keys("l")
        on_screen(terminal, lambda: line_with(terminal, "BUSY", "STEPS"), 15, "the BUSY column")
        with AgentClient(started.pid) as client:
            tasks = {task["name"]: task for task in client.snapshot()["tasks"]}
        assert tasks["burner"].get("steps", 0) >= 1
        quit_dashboard(terminal, started.process)
    finally:
        started.kill()


def test_the_header_says_the_process_is_stopped_until_it_runs_again(
    target: subprocess.Popen[str], terminal: Terminal
) -> None:
    attach(terminal, target.pid)
    # WHEN the process is stopped (Ctrl-Z in its terminal, a SIGSTOP)
    os.kill(target.pid, signal.SIGSTOP)
    try:
        # THEN the header says why no data comes, and how to let it run
        line = on_screen(
            terminal, lambda: line_with(terminal, "the process is stopped"), 15, "the stopped note"
        )
        assert f"`kill -CONT {target.pid}` resumes it" in str(line)
        assert "s old" in str(line)
    finally:
        os.kill(target.pid, signal.SIGCONT)
    # WHEN it runs again THEN the note goes, and data comes again
    on_screen(
        terminal,
        lambda: (
            line_with(terminal, "the process is stopped") is None
            and line_with(terminal, "data 0.") is not None
        ),
        15,
        "the note gone, fresh data",
    )
    quit_dashboard(terminal, target)
