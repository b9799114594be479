"""SVG snapshots of the dashboard at 140x40, and its main screens at a narrow 80x24, with a
frozen clock and a fake source.

Regenerate with `pytest tests/ui/test_snapshots.py --snapshot-update` using Textual 8.2.8
(the version pinned for these images); review the SVGs in __snapshots__ before committing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from taskscope.client import AgentGone
from taskscope.ui.app import TaskscopeApp
from taskscope.ui.cancel_dialog import CancelDialog
from tests.ui.fakes import FakeSource
from tests.ui.harness import SIZE, Clock, until

pytestmark = pytest.mark.skipif(
    __import__("textual").__version__ != "8.2.8",
    reason="snapshots were taken with Textual 8.2.8",
)

SnapCompare = Callable[..., bool]


def dashboard(source: FakeSource | None = None) -> TaskscopeApp:
    return TaskscopeApp(source or FakeSource(), clock=Clock())


async def ready(pilot: Pilot[Any], select: str | None = "7") -> None:
    app = pilot.app
    assert isinstance(app, TaskscopeApp)
    await until(pilot, lambda: app.updates_applied >= 1)
    await until(pilot, lambda: "cpu_percent" in app.facts)
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
