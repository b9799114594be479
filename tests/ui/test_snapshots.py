"""SVG snapshots of the dashboard at 140x40, and its main screens at a narrow 80x24, with a
frozen clock and a fake source.

Regenerate with `pytest tests/ui/test_snapshots.py --snapshot-update` using Textual 8.2.8
(the version pinned for these images); review the SVGs in __snapshots__ before committing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from taskscope.client import AgentGone
from taskscope.ui.app import TaskscopeApp
from taskscope.ui.cancel_dialog import CancelDialog
from tests.ui.fakes import FakeSource, delta, timed_loop, wire_loop
from tests.ui.harness import SIZE, Clock, until

pytestmark = pytest.mark.skipif(
    __import__("textual").__version__ != "8.2.8",
    reason="needs Textual 8.2.8, the version the snapshots were taken with "
    f"(this is {__import__('textual').__version__})",
)

SnapCompare = Callable[..., bool]


def dashboard(source: FakeSource | None = None) -> TaskscopeApp:
    return TaskscopeApp(source or FakeSource(), clock=Clock())


async def ready(pilot: Pilot[Any], select: str | None = "7") -> None:
    app = pilot.app
    assert isinstance(app, TaskscopeApp)
    await until(pilot, lambda: app.updates_applied >= 1)
    await until(pilot, lambda: "cpu_percent" in app.facts)
    await until(pilot, lambda: app.main.warnings_looks >= 1)
    if select is not None:
        app.jump_to(select)
        await until(pilot, lambda: app.detail.stack_reply is not None)
    await pilot.pause()


def test_tree_with_detail(snap_compare: SnapCompare) -> None:
    assert snap_compare(dashboard(), terminal_size=SIZE, run_before=ready)


def test_cancel_confirmation(snap_compare: SnapCompare) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(pilot.app.screen, CancelDialog))
        await pilot.pause()

    assert snap_compare(dashboard(), terminal_size=SIZE, run_before=before)


def test_cancel_main_task_warns(snap_compare: SnapCompare) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await ready(pilot, select="1")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(pilot.app.screen, CancelDialog))
        await pilot.pause()

    assert snap_compare(dashboard(), terminal_size=SIZE, run_before=before)


def test_grouped_view(snap_compare: SnapCompare) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await ready(pilot, select=None)
        await pilot.press("g")
        await pilot.pause()

    assert snap_compare(dashboard(), terminal_size=SIZE, run_before=before)


def test_target_exited(snap_compare: SnapCompare) -> None:
    source = FakeSource()

    async def before(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        source.end(AgentGone("process 4242 exited"))
        app = pilot.app
        assert isinstance(app, TaskscopeApp)
        await until(pilot, lambda: app.gone is not None)
        app.clear_notifications()
        await pilot.pause()

    assert snap_compare(dashboard(source), terminal_size=SIZE, run_before=before)


def test_help_screen(snap_compare: SnapCompare) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await ready(pilot, select=None)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(dashboard(), terminal_size=SIZE, run_before=before)


# --- a narrow terminal (80x24): the same screens must still read -------------------------------

NARROW = (80, 24)


async def narrow_tree(pilot: Pilot[Any]) -> None:
    await ready(pilot)


async def narrow_cancel(pilot: Pilot[Any]) -> None:
    await ready(pilot, select="1")
    await pilot.press("c")
    await until(pilot, lambda: isinstance(pilot.app.screen, CancelDialog))
    await pilot.pause()


async def narrow_table(pilot: Pilot[Any]) -> None:
    await ready(pilot, select=None)
    await pilot.press("l")
    await pilot.pause()


async def narrow_groups(pilot: Pilot[Any]) -> None:
    await ready(pilot, select=None)
    await pilot.press("g")
    await pilot.pause()


async def narrow_history(pilot: Pilot[Any]) -> None:
    await ready(pilot, select=None)
    await pilot.press("h")
    await pilot.pause()


async def narrow_help(pilot: Pilot[Any]) -> None:
    await ready(pilot, select=None)
    await pilot.press("question_mark")
    await pilot.pause()


@pytest.mark.parametrize(
    "before",
    [narrow_tree, narrow_cancel, narrow_table, narrow_groups, narrow_history, narrow_help],
    ids=["tree", "cancel_main_task", "table", "groups", "history", "help"],
)
def test_narrow_80x24(snap_compare: SnapCompare, before: Callable[[Pilot[Any]], Any]) -> None:
    assert snap_compare(dashboard(), terminal_size=NARROW, run_before=before)


def test_narrow_80x24_target_exited(snap_compare: SnapCompare) -> None:
    source = FakeSource()

    async def before(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        source.end(AgentGone("process 4242 exited"))
        app = pilot.app
        assert isinstance(app, TaskscopeApp)
        await until(pilot, lambda: app.gone is not None)
        app.clear_notifications()
        await pilot.pause()

    assert snap_compare(dashboard(source), terminal_size=NARROW, run_before=before)


# --- issue 12: runtime figures, sparklines, stalls ---------------------------------------------


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Wall-clock times (a stall's start) as in UTC, whatever the machine's zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def timed_dashboard() -> TaskscopeApp:
    from tests.ui.test_runtime_dashboard import stall_history, with_stalls

    return dashboard(FakeSource(with_stalls(stall_history())))


async def with_trend(pilot: Pilot[Any]) -> None:
    """Eight more updates, the loop's figures moving, so that the sparklines have a shape."""
    app = pilot.app
    assert isinstance(app, TaskscopeApp)
    source = app.source
    assert isinstance(source, FakeSource)
    stalls = source.latest["loops"][0].get("stalls", [])
    for step in range(8):
        loop = timed_loop(
            wire_loop(11),
            steps_per_s=1000.0 + 300 * (step % 3),
            busy_share=0.2 + 0.05 * step,
            stalls=list(stalls),  # type: ignore[arg-type]
        )
        loop["lag"] = 0.001 * (step % 4)
        update = delta([], tasks=11)
        update["loops"] = [loop]
        applied = app.updates_applied
        source.push(update)
        await until(pilot, lambda n=applied: app.updates_applied > n)  # type: ignore[misc]


async def busiest_first(pilot: Pilot[Any]) -> None:
    await ready(pilot, select=None)
    await with_trend(pilot)
    await pilot.press("l", "s")
    await pilot.pause()


async def stalls_view(pilot: Pilot[Any]) -> None:
    await ready(pilot, select=None)
    await with_trend(pilot)
    await pilot.press("b", "down", "enter")
    await pilot.pause()


@pytest.mark.parametrize("before", [busiest_first, stalls_view], ids=["busiest", "stalls"])
@pytest.mark.parametrize("size", [SIZE, NARROW], ids=["140x40", "80x24"])
def test_runtime_screens(
    snap_compare: SnapCompare,
    before: Callable[[Pilot[Any]], Any],
    size: tuple[int, int],
    utc: None,
) -> None:
    assert snap_compare(timed_dashboard(), terminal_size=size, run_before=before)
