"""End to end in a real terminal: the dashboard attached (the agent injected) to a program
whose loop is busy in steps of 4 ms, the case that kept the agent from the GIL. The dashboard
shows the tasks within the usual wait, and its status line says that the agent was kept from
the GIL and holds the switch interval lowered; the program keeps running throughout."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskscope.agent.gil import LOWERED_INTERVAL
from tests.helpers import Target, spawn
from tests.test_gil_share import intervals
from tests.ui.test_tmux_e2e import REPO, Terminal
from tests.ui.test_tmux_runtime import line_with, on_screen

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.skipif(
        shutil.which("gdb") is None and sys.version_info < (3, 14),
        reason="attaching to Python 3.11-3.13 needs gdb (apt-get install gdb)",
    ),
]


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[Target]:
    """`busy_steps.py` with steps of 4 ms, started without taskscope."""
    started = spawn("busy_steps.py", "4", agent=False, workdir=str(tmp_path)).wait_ready(30)
    try:
        yield started
    finally:
        started.kill()


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal("gil")
    yield term
    term.kill()


def test_the_dashboard_on_a_busy_loop_shows_its_tasks_and_says_the_agent_was_starved(
    busy: Target, terminal: Terminal
) -> None:
    # GIVEN a program that never imported taskscope, its loop busy in steps of 4 ms
    env = {"PYTHONPATH": str(REPO), "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "45"}
    if "TASKSCOPE_SOCKET_DIR" in os.environ:
        env["TASKSCOPE_SOCKET_DIR"] = os.environ["TASKSCOPE_SOCKET_DIR"]
    # WHEN the user attaches the dashboard to it
    terminal.start([sys.executable, "-m", "taskscope", "attach", str(busy.pid)], env)
    # THEN the busy task is on screen
    on_screen(terminal, lambda: line_with(terminal, "busy", "running"), 30, "the busy task")
    # AND when the agent holds the interval lowered (on a quiet machine the busy loop starves
    # its start-up, every run here; on a loaded one it may not, and nothing is lowered), the
    # status line says what the agent met and did
    time.sleep(0.5)  # the program notes its interval every 50 ms
    if intervals(busy)[-1] == LOWERED_INTERVAL:
        status = on_screen(
            terminal,
            lambda: line_with(terminal, "agent kept from the GIL up to", "switch interval 50 µs"),
            30,
            "the status line's words on the GIL",
        )
        assert "data " in str(status)
    # AND the program is still running
    assert busy.process.poll() is None
    terminal.keys("q")
    on_screen(terminal, lambda: not terminal.alive(), 15, "the dashboard to quit")
