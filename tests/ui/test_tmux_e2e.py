"""End to end in a real terminal: tmux runs `taskscope attach PID` against a real asyncio
program, the test reads the screen with capture-pane, cancels a task with keystrokes, and
checks in the target that the task was cancelled."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskscope.client import AgentClient
from taskscope.model import TaskModel
from taskscope.protocol import socket_path

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(__file__).parent / "targets" / "cancel_me.py"

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def wait_for(condition: Callable[[], object], within: float, what: str) -> object:
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        time.sleep(0.05)


class Terminal:
    """A detached tmux session of fixed size on a private tmux server."""

    def __init__(self, name: str) -> None:
        self.server = f"taskscope-test-{os.getpid()}"
        self.name = name

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.server, *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=10,
        )

    def start(self, command: list[str], env: dict[str, str]) -> None:
        shell = " ".join(["env", *(f"{key}={value}" for key, value in env.items()), *command])
        self.tmux(
            "-f", "/dev/null", "new-session", "-d", "-s", self.name, "-x", "160", "-y", "45", shell
        )

    def screen(self) -> str:
        result = self.tmux("capture-pane", "-p", "-t", self.name, check=False)
        return result.stdout

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.name, *keys)

    def alive(self) -> bool:
        return self.tmux("has-session", "-t", self.name, check=False).returncode == 0

    def kill(self) -> None:
        self.tmux("kill-server", check=False)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, "-m", "taskscope.agent.launch", str(TARGET), str(tmp_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: (
                (
                    (tmp_path / f"ready-{process.pid}").exists()
                    and os.path.exists(socket_path(process.pid))
                )
                or process.poll() is not None
            ),
            20,
            "the target's ready file and socket",
        )
        assert process.poll() is None, "the target exited early"
        yield process, tmp_path
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal("attach")
    yield term
    term.kill()


def detail_title(screen: str) -> str:
    """The title of the detail pane: the name of the selected task."""
    for line in screen.splitlines()[:8]:
        if "╮╭─" in line:
            return line.split("╮╭─", 1)[1].strip(" ─╮")
    return ""


def test_attach_cancel_a_task_with_keys_and_quit(
    target: tuple[subprocess.Popen[bytes], Path], terminal: Terminal
) -> None:
    process, workdir = target
    env = {"PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
    if "TASKSCOPE_SOCKET_DIR" in os.environ:
        env["TASKSCOPE_SOCKET_DIR"] = os.environ["TASKSCOPE_SOCKET_DIR"]
    terminal.start(
        [sys.executable, "-m", "taskscope", "attach", str(process.pid), "--no-inject"], env
    )

    # The tree shows the target's tasks.
    wait_for(
        lambda: "victim" in terminal.screen() and "bystander-3" in terminal.screen(),
        30,
        "the task tree on screen",
    )

    # Move down with the arrow key until the detail pane shows the victim.
    for _ in range(20):
        if detail_title(terminal.screen()) == "victim":
            break
        terminal.keys("Down")
        wait_for(lambda: detail_title(terminal.screen()), 5, "a selected task")
        time.sleep(0.1)  # let the key land before reading the title again
    assert detail_title(terminal.screen()) == "victim"
    # How long it has waited where it is: from the dashboard's first look, so "≥", once a
    # second has gone by (the pane counts on between updates).
    wait_for(lambda: re.search(r"waiting ≥\d+\.\ds", terminal.screen()), 10, "the victim's wait")

    # c asks, naming the task; y confirms.
    terminal.keys("c")
    question = wait_for(
        lambda: next(
            (
                line
                for line in terminal.screen().splitlines()
                if "Cancel victim (victim(), pending" in line
            ),
            None,
        ),
        10,
        "the cancel confirmation",
    )
    assert "[y/N]" in str(question)
    assert not (workdir / f"cancelled-{process.pid}").exists()
    terminal.keys("y")

    # The target itself saw the CancelledError.
    cancelled = workdir / f"cancelled-{process.pid}"
    # The file is made, then written: wait for its line, not only for the file.
    wait_for(
        lambda: cancelled.exists() and cancelled.read_text() == "victim cancelled\n",
        15,
        "the victim's cancelled line",
    )
    wait_for(lambda: "⊘ cancelled" in terminal.screen(), 15, "the outcome on screen")

    # q quits: the pane's process exits and the session closes.
    terminal.keys("q")
    wait_for(lambda: not terminal.alive(), 15, "the dashboard to exit")
    assert process.poll() is None, "quitting the dashboard must not stop the target"


def screen_line(terminal: Terminal, needle: str) -> str | None:
    return next((line for line in terminal.screen().splitlines() if needle in line), None)


def test_filter_then_cancel_hits_the_match_and_the_main_task_warns(
    target: tuple[subprocess.Popen[bytes], Path], terminal: Terminal
) -> None:
    process, workdir = target
    env = {"PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
    if "TASKSCOPE_SOCKET_DIR" in os.environ:
        env["TASKSCOPE_SOCKET_DIR"] = os.environ["TASKSCOPE_SOCKET_DIR"]
    terminal.start(
        [sys.executable, "-m", "taskscope", "attach", str(process.pid), "--no-inject"], env
    )
    wait_for(lambda: "victim" in terminal.screen(), 30, "the task tree on screen")
    wait_for(lambda: detail_title(terminal.screen()) == "Task-1", 10, "Task-1 selected")

    # c on the main task (the one asyncio.run drives) warns that the program ends; n keeps it.
    terminal.keys("c")
    warning = wait_for(
        lambda: screen_line(terminal, "⚠ This ends the program"), 10, "the main task warning"
    )
    assert f"(process {process.pid})" in str(warning)
    terminal.keys("n")
    wait_for(lambda: screen_line(terminal, "⚠ This ends") is None, 10, "the dialog to close")

    # /, victim, Enter: Task-1 stays on screen as context, the cursor goes to the victim.
    terminal.keys("/")
    wait_for(lambda: screen_line(terminal, "filter by name"), 10, "the filter box")
    terminal.keys("victim", "Enter")
    wait_for(lambda: detail_title(terminal.screen()) == "victim", 10, "the victim selected")
    assert screen_line(terminal, "Task-1") is not None

    # c asks about the victim, without a warning; y cancels it, and only it.
    terminal.keys("c")
    wait_for(lambda: screen_line(terminal, "Cancel victim (victim(), pending"), 10, "the question")
    assert screen_line(terminal, "⚠") is None
    terminal.keys("y")
    wait_for((workdir / f"cancelled-{process.pid}").exists, 15, "the victim's cancelled file")

    # The target itself: alive, its main task still pending in main().
    with AgentClient(process.pid) as client:
        model = TaskModel.from_snapshot(client.snapshot())
    [loop] = model.loops.values()
    assert loop.main_task is not None
    main_task = model.tasks[loop.main_task]
    assert (main_task.name, main_task.coro, main_task.state) == ("Task-1", "main", "pending")
    assert process.poll() is None
    terminal.keys("q")
    wait_for(lambda: not terminal.alive(), 15, "the dashboard to exit")
