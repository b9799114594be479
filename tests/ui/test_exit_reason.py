"""The dashboard's last word on a process, under Pilot on a real one: when the connection ends
while the process still runs, and the process exits a moment later (what SIGKILL does: the
descriptors close before the process is gone), the dashboard ends up saying "exited", not
that the agent closed the connection."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from taskscope.ui.app import TaskscopeApp
from taskscope.ui.source import AgentSource
from tests.ui.harness import SIZE, until


def test_dashboard_says_exited_when_the_process_exits_after_the_connection_ends(
    start: Any,
) -> None:
    # GIVEN a dashboard on a real program
    target = start("agent_goes_first.py").wait_ready()
    app = TaskscopeApp(AgentSource(target.pid), clock=time.time, interval=0.2)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.updates_applied >= 1, what="the first snapshot")
            # WHEN the connection ends while the process still runs
            target.file(f"detach-{target.pid}").write_text("detach")
            await until(pilot, lambda: app.gone is not None, what="the feed to end")
            assert app.gone == f"the agent of process {target.pid} closed the connection"
            # AND the process exits afterwards
            target.stop()
            # THEN the dashboard says it exited, in the header too
            await until(
                pilot,
                lambda: app.gone == f"process {target.pid} exited",
                within=10,
                what="the dashboard to say exited",
            )
            await until(
                pilot,
                lambda: f"process {target.pid} exited" in str(app.header.render()),
                what="the header to say exited",
            )
            app.exit()

    asyncio.run(main())
