"""Keys typed at once, in a real terminal (issue 9): `/slow` sent by tmux in one go right after
`taskscope attach PID` starts must land in the filter box, not run as view keys (s sort,
l list, o, w worker) because the box took the focus only after the keys behind `/` had been
handed out."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.ui.test_tmux_e2e import REPO, Terminal, pytestmark, screen_line, wait_for

__all__ = ["pytestmark"]


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal("type-ahead")
    yield term
    term.kill()


def filter_box(screen: str) -> str:
    """What the filter box holds ("" when it is not on screen)."""
    lines = screen.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("▊") and index + 2 < len(lines) and lines[index + 2].startswith("▊"):
            return lines[index + 1].strip("▊▎ ")
    return ""


def test_filter_typed_in_one_go_right_after_attach_lands_in_the_filter_box(
    start: Any, terminal: Terminal
) -> None:
    # GIVEN a real service with its agent, and a dashboard just started on it
    target = start("service.py").wait_ready()
    env = {"PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
    env["TASKSCOPE_SOCKET_DIR"] = os.environ["TASKSCOPE_SOCKET_DIR"]
    terminal.start(
        [sys.executable, "-m", "taskscope", "attach", str(target.pid), "--no-inject"], env
    )
    # WHEN `/slow` arrives in one write, before the first picture
    terminal.keys("/slow")
    # THEN the filter box holds it and says so in the header
    wait_for(lambda: "filter: slow" in terminal.screen(), 30, "the filter in the header")
    screen = terminal.screen()
    assert filter_box(screen) == "slow", screen
    # AND none of its letters ran as a key: no sort (s), still the tree (not l's list)
    assert screen_line(terminal, "sorted by") is None, screen
    assert screen_line(terminal, "Task tree") is not None, screen
    assert screen_line(terminal, "All tasks") is None, screen

    # WHEN the filter is cleared, and another is typed and kept with Enter in one write
    terminal.keys("Escape")
    wait_for(lambda: filter_box(terminal.screen()) == "", 15, "the filter box to close")
    terminal.keys("/victim", "Enter")
    # THEN it is applied, and the cursor is on the match
    wait_for(lambda: "filter: victim" in terminal.screen(), 15, "the second filter")
    wait_for(lambda: "╮╭─ victim" in terminal.screen(), 15, "the victim selected")
    terminal.keys("q")
    wait_for(lambda: not terminal.alive(), 15, "the dashboard to exit")
