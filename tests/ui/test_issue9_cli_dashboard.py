"""The dashboard's share of issue 9's facts, under Pilot on a real process (the real source,
not a fake): which loop a task runs on, a cancel pending on a blocked loop, and what an
attach could not see (history since, ages from first sight)."""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
import time
from typing import Any

import pytest
from textual.pilot import Pilot

from taskscope.ui.app import TaskscopeApp
from taskscope.ui.source import AgentSource
from tests.helpers import Target, notes, run_cli, wait_for
from tests.ui.harness import SIZE, until


def task_id(app: TaskscopeApp, name: str) -> str:
    return next(task.id for task in app.model.tasks.values() if task.name == name)


def run_on(target: Target, scenario: Any) -> None:
    source = AgentSource(target.pid)
    app = TaskscopeApp(source, clock=time.time, interval=0.2)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.updates_applied >= 1, what="the first snapshot")
            await scenario(app, pilot)
            app.exit()

    asyncio.run(main())


def summary(app: TaskscopeApp) -> str:
    return str(app.detail.query_one("#detail-summary").render())


def test_detail_pane_names_the_loop_and_a_cancel_pending_on_a_blocked_loop(start: Any) -> None:
    # GIVEN a program with two loops, the main one about to block itself for a while
    target = start("newcomer.py", "--thread").wait_ready()

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any]) -> None:
        # WHEN a task of the thread's loop is selected THEN the pane says which loop
        assert app.jump_to(task_id(app, "side-worker"))
        await until(pilot, lambda: "loop side-loop" in summary(app), what="the loop's name")
        assert app.jump_to(task_id(app, "victim"))
        await until(pilot, lambda: "loop MainThread" in summary(app), what="the main loop")
        # WHEN the victim is cancelled while its loop is blocked
        target.file(f"block-{target.pid}").write_text("5")
        await until(pilot, lambda: "blocking" in notes(target), what="the loop to block")
        assert run_cli("cancel", str(target.pid), "victim").returncode == 0
        # THEN the pane says the cancel waits, and for how long, until it takes effect
        await until(
            pilot,
            lambda: re.search(
                r"cancel requested \d+\.\d s ago: its loop has not run it yet", summary(app)
            ),
            what="the cancel requested line",
        )
        await until(
            pilot, lambda: "cancelled" in summary(app), within=30, what="the cancel's effect"
        )
        assert "cancel requested" not in summary(app)

    run_on(target, scenario)


@pytest.mark.skipif(
    shutil.which("gdb") is None and sys.version_info < (3, 14),
    reason="attaching to Python 3.11-3.13 needs gdb (apt-get install gdb)",
)
def test_after_an_attach_ages_are_lower_bounds_and_history_says_since_when(start: Any) -> None:
    target = start("newcomer.py", agent=False).wait_ready()
    assert run_cli("dump", str(target.pid)).returncode == 0  # loads the agent

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any]) -> None:
        assert app.model.history_since is not None
        assert app.jump_to(task_id(app, "flusher"))
        await until(pilot, lambda: re.search(r"pending ≥\d", summary(app)), what="≥ age")
        await pilot.press("h")
        since = time.strftime("%H:%M:%S", time.localtime(app.model.history_since))
        history = app.query_one("#history")
        await until(
            pilot,
            lambda: (
                f"no task has finished since the agent started at {since}"
                in history.render_line(1).text
            ),
            what="the history's empty line",
        )

    run_on(target, scenario)
    wait_for(lambda: target.process.poll() is None, what="the target to live on")
