"""Pilot tests of what a new user met on screen (issue 9), reading the rendered screen: the
two tree relations told apart, grouping by await site, asyncio's own tasks marked, the header
and footer at 140 columns, and finished children in a stable order.

GIVEN a dashboard on a scripted source (frozen clock), WHEN it shows the tasks, THEN the
screen text says what the issue asks for.
"""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from taskscope.relations import LEGEND
from taskscope.ui.app import TaskscopeApp
from tests.ui.fakes import FakeSource
from tests.ui.harness import run_app, screen_text


def line_with(screen: str, needle: str) -> str:
    found = [line for line in screen.splitlines() if needle in line]
    assert found, f"{needle!r} is not on screen:\n{screen}"
    return found[0]


def test_created_child_is_drawn_dashed_and_awaited_child_solid_with_a_legend() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.pause()
        screen = screen_text(app)
        # THEN dispatcher, awaited by main's TaskGroup, hangs on a solid branch
        assert "├─ " in line_with(screen, "dispatcher")
        # and conn-51234, created by api-server and awaited by nobody, on a dashed one
        conn = line_with(screen, "conn-51234")
        assert "└┄ " in conn and "─" not in conn.split("conn-51234")[0]
        # and the legend under the tree says which is which
        assert LEGEND in screen

    run_app(scenario)
