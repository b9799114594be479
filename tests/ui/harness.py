"""Running the dashboard under Pilot from plain (synchronous) pytest tests: the app, its fake
source, and waiting for a condition with a deadline instead of sleeping blind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from textual.pilot import Pilot

from taskscope.ui.app import TaskscopeApp
from tests.ui.fakes import NOW, FakeSource

SIZE = (140, 40)


class Clock:
    """A frozen clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def until(
    pilot: Pilot[Any],
    condition: Callable[[], object],
    within: float = 15.0,
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


Scenario = Callable[[TaskscopeApp, Pilot[Any], FakeSource], Awaitable[None]]


def run_app(
    scenario: Scenario,
    source: FakeSource | None = None,
    *,
    clock: Callable[[], float] | None = None,
    messages: list[object] | None = None,
    size: tuple[int, int] = SIZE,
    **options: Any,
) -> TaskscopeApp:
    """Run `scenario` against a dashboard on a fake source, after the first snapshot is in."""
    source = source or FakeSource()
    app = TaskscopeApp(source, clock=clock or Clock(), **options)

    async def main() -> None:
        hook = messages.append if messages is not None else None
        async with app.run_test(size=size, message_hook=hook) as pilot:
            await until(pilot, lambda: app.updates_applied >= 1, what="the first snapshot")
            await pilot.pause()
            await scenario(app, pilot, source)

    asyncio.run(main())
    return app


def screen_text(app: TaskscopeApp) -> str:
    """What the terminal shows now, as plain text lines (the screen the user reads)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)
