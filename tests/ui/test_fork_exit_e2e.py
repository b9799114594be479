"""The dashboard on a program that forked a long-lived child: when the parent is killed with
SIGKILL, the child (which inherited the parent's descriptors) must not keep the dashboard's
connection open; the dashboard says "exited" within seconds (issue 15, item 4)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.ui.test_tmux_e2e import REPO, Terminal, pytestmark, wait_for

__all__ = ["pytestmark"]


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal("fork-exit")
    yield term
    term.kill()


def test_dashboard_says_exited_when_a_forked_parent_is_killed(
    start: Any, terminal: Terminal
) -> None:
    # GIVEN a program that forked a child which sleeps on, holding the parent's descriptors
    target = start("forker.py", "loop").wait_ready()
    notes = target.file(f"notes-{target.pid}")
    env = {"PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
    env["TASKSCOPE_SOCKET_DIR"] = os.environ["TASKSCOPE_SOCKET_DIR"]
    terminal.start(
        [sys.executable, "-m", "taskscope", "attach", str(target.pid), "--no-inject"], env
    )
    wait_for(lambda: "ticker" in terminal.screen(), 30, "the tasks on screen")
    # AND forked once more while the dashboard is connected
    target.file(f"fork-{target.pid}").write_text("fork")
    wait_for(lambda: notes.read_text().count("forked") == 3, 10, "the fork")
    children = [int(line.split()[1]) for line in notes.read_text().splitlines()]
    try:
        # WHEN the parent is killed with SIGKILL
        os.kill(target.pid, signal.SIGKILL)
        killed = time.monotonic()
        # THEN the dashboard says so within seconds, though the children live on
        wait_for(lambda: "exited" in terminal.screen(), 10, "the dashboard to say exited")
        assert time.monotonic() - killed < 5.0
        assert all(os.path.exists(f"/proc/{child}") for child in children)
    finally:
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
