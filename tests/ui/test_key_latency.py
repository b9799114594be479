"""Keys during large updates (issue 9, item 8): what makes a key wait, checked as structure,
never timed (figures come from benchmarks/ui_scale.py).

- An update redraws only the tree's rows on screen that show a changed task, or another line
  than before: not every row on screen (each drawn row costs Textual a few tenths of a ms).
- The selection (the detail pane) follows the cursor in the same frame as the cursor.
- A key that lands while an update is applied in slices is on screen before the next slice.
- The collector's full passes skip what survived the previous one (the picture).
- The once-a-second redraw of the rows on screen (ages) goes a group of rows at a time.
- A key's picture is drawn as soon as the screen knows what changed, not at the frame timer's
  next tick, and the collector waits until it is on screen.
- A frame draws far-apart changed regions (the tree's rows, the detail pane) each on its own,
  and of the detail pane under a new title only the lines that changed.
- The feed's thread gives the interpreter's lock up within 1 ms while the dashboard runs.
- A look for warnings does not write the model out in words (a worker's default name).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from textual import events
from textual.geometry import Region
from textual.pilot import Pilot

from taskscope.model import TaskModel
from taskscope.protocol import WireTask
from taskscope.ui import feed, long_lived
from taskscope.ui.app import TaskscopeApp
from taskscope.ui.help_screen import HelpScreen
from taskscope.ui.screen_updates import clusters
from taskscope.ui.task_tree import TICK_PARTS
from tests.ui.fakes import FakeSource, awaiting, delta, snapshot, wire_loop, wire_task
from tests.ui.harness import run_app, screen_text, until

#: Tasks in the tree: many more than its rows on screen.
TASKS = 3_000


def worker(number: int, text: str = "", *, age: float | None = None) -> WireTask:
    """Worker `number` under the main task 1, oldest first (the tree's order)."""
    facts = {"seconds_left": 5.0} if not text else {"seconds_left": float(len(text))}
    return wire_task(
        str(number),
        f"worker-{number}",
        "worker",
        parent="1",
        awaited_by=["1"],
        awaiting=awaiting("sleep", **facts),
        age=age if age is not None else 10_000.0 - number,
    )


def many_tasks() -> FakeSource:
    main = wire_task("1", "main", "main", age=20_000.0, awaiting=awaiting("taskgroup"))
    tasks = [main, *(worker(number) for number in range(2, TASKS + 1))]
    return FakeSource(snapshot(tasks, cycles=[]))


def count_drawn_rows(app: TaskscopeApp) -> list[str]:
    """Record the task of every tree row Textual draws from now on (a cached row is not)."""
    tree = app.task_tree
    drawn: list[str] = []
    original = tree.render_label

    def render_label(node: Any, base_style: Any, style: Any) -> Any:
        drawn.append(node.data)
        return original(node, base_style, style)

    tree.render_label = render_label  # type: ignore[method-assign]
    return drawn


def on_screen(app: TaskscopeApp) -> list[str]:
    tree = app.task_tree
    top = tree.scroll_offset.y
    rows = range(top, top + tree.size.height)
    return [node.data for row in rows if (node := tree.get_node_at_line(row)) and node.data]


def change(changed: list[WireTask], removed: list[str] | None = None) -> Any:
    """A delta (no await cycle, as in the snapshot)."""
    return delta(changed, removed or [], cycles=[])


async def apply(app: TaskscopeApp, pilot: Pilot[Any], update: Any) -> None:
    """Apply one update at once (no slices) and wait for the screen to be drawn."""
    app.buffer.put_delta(update)
    app.apply_pending()
    await pilot.pause()
    await pilot.pause()


def test_an_update_redraws_only_the_rows_on_screen_that_changed() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        shown = on_screen(app)
        assert len(shown) > 20 and str(TASKS) not in shown
        drawn = count_drawn_rows(app)
        # GIVEN an update of 500 tasks none of which is on screen, with tasks added and gone
        # at the end of the tree
        off_screen = [worker(number, "changed") for number in range(500, 1000)]
        added = [worker(number) for number in range(TASKS + 1, TASKS + 21)]
        await apply(app, pilot, change(off_screen + added, removed=["2999", "2998"]))
        # THEN no row on screen is drawn again
        assert drawn == []
        # WHEN one task on screen changes
        await apply(app, pilot, change([worker(int(shown[5]), "now waiting longer")]))
        # THEN its row alone is drawn, and shows the change
        assert drawn == [shown[5]]
        assert "sleep, 18.0 s left" in screen_text(app)

    run_app(scenario, many_tasks(), tick_seconds=3600)


def test_rows_redrawn_after_nodes_move_show_what_a_full_redraw_shows() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        tree = app.task_tree
        # GIVEN updates that shift the rows on screen: an older task inserted above them,
        # tasks on screen removed and changed, a subtree moved under another task
        oldest = wire_task("9001", "oldest", "main", age=30_000.0, awaiting=awaiting("sleep"))
        await apply(app, pilot, change([oldest], removed=["3", "5"]))
        await apply(app, pilot, change([worker(7, "seven"), worker(9, "nine")], removed=["6"]))
        moved = worker(4, age=9996.0)
        moved["parent"], moved["awaited_by"] = "9001", ["9001"]
        await apply(app, pilot, change([moved, worker(TASKS + 1)], removed=["2", "8"]))
        drawn_by_updates = screen_text(app)
        # WHEN everything is drawn afresh
        tree._line_cache.clear()
        tree.refresh()
        await pilot.pause()
        await pilot.pause()
        # THEN the screen is the same
        assert screen_text(app) == drawn_by_updates
        assert "oldest" in drawn_by_updates and "worker-3 " not in drawn_by_updates

    run_app(scenario, many_tasks(), tick_seconds=3600)


def test_the_detail_pane_follows_the_cursor_in_the_same_frame() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        # Every screen write: which task the tree's cursor is on, which the detail pane shows.
        frames: list[tuple[str | None, str | None]] = []
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            frames.append((app.task_tree.selected_task, app.detail.task_id))
            original(screen, renderable)

        app._display = display  # type: ignore[method-assign]
        for _ in range(6):
            await pilot.press("down")
            await pilot.pause()
        # THEN no frame shows the cursor on one task and the detail pane on another
        assert len({cursor for cursor, _ in frames}) >= 6
        assert [frame for frame in frames if frame[0] != frame[1]] == []

    run_app(scenario, many_tasks(), tick_seconds=3600)


def test_a_key_during_an_update_in_slices_is_shown_before_the_next_slice() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        views = app.main.views
        before = app.task_tree.selected_task
        # Every screen write: slices of the update still to apply, and the cursor's task.
        frames: list[tuple[int, str | None]] = []
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            frames.append((len(views.slices), app.task_tree.selected_task))
            original(screen, renderable)

        app._display = display  # type: ignore[method-assign]
        # GIVEN an update of every task, applied in slices, the first one applied
        app.buffer.put_delta(change([worker(n, "all") for n in range(2, TASKS + 1)]))
        app.main.feed_updated()
        left = len(views.slices)
        assert left >= 10
        # WHEN a key lands
        app.post_message(events.Key("down", None))
        await until(pilot, lambda: not views.slices, what="the update to be applied")
        # THEN the first frame with the cursor moved came while most of the update waited
        moved = next(left_then for left_then, cursor in frames if cursor != before)
        assert moved >= left - 2, frames

    run_app(scenario, many_tasks(), tick_seconds=3600)


def test_the_survivors_of_a_full_collection_are_kept_out_of_the_next_ones() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        # GIVEN the picture of the first snapshot, frozen, then updates that replace records
        frozen = gc.get_freeze_count()
        assert frozen > TASKS
        await apply(app, pilot, change([worker(n, "new record") for n in range(2, 1002)]))
        # WHEN the collector makes a full pass (as it does on its own every second or so)
        gc.collect()
        # THEN what survived it (the new records among them) is out of the next full pass
        if long_lived.FREEZES:
            assert gc.get_freeze_count() > frozen
            assert gc.get_count()[2] == 0
            assert _after_a_pass_installed()

    run_app(scenario, many_tasks(), tick_seconds=3600)
    # AND the dashboard gives everything back to the collector when it ends
    assert gc.get_freeze_count() == 0
    assert not _after_a_pass_installed()


def test_every_so_many_full_passes_the_frozen_cycles_go_back_to_the_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not long_lived.FREEZES:
        pytest.skip(
            "needs Python 3.11-3.13: from 3.14 (an incremental collector) no survivors are frozen"
        )
    monkeypatch.setattr(long_lived, "THAW_EVERY", 3)
    monkeypatch.setattr(long_lived, "_passes", 0)
    released: list[bool] = []

    class Node:
        def __init__(self) -> None:
            self.parent: Node | None = None
            self.children: list[Node] = []

    long_lived.keep()
    try:
        # GIVEN a reference cycle (a tree node and its child) frozen by a full pass, then dropped
        parent, child = Node(), Node()
        parent.children.append(child)
        child.parent = parent
        watched = weakref.ref(parent, lambda _ref: released.append(True))
        gc.collect()
        assert gc.get_freeze_count() > 0
        del parent, child
        # WHEN full passes go on: the first ones keep it (frozen), the thaw's next one frees it
        gc.collect()
        assert watched() is not None
        gc.collect()  # the third pass: everything goes back to the collector
        gc.collect()
        # THEN the cycle is freed
        assert watched() is None and released
    finally:
        long_lived.release()


def _after_a_pass_installed() -> bool:
    return any(
        getattr(callback, "__module__", "") == long_lived.__name__ for callback in gc.callbacks
    )


def test_a_tick_draws_the_rows_on_screen_a_group_at_a_time() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        rows = on_screen(app)
        drawn = count_drawn_rows(app)
        # WHEN the ages tick, spread over two seconds
        app.task_tree.tick(within=2.0)
        await pilot.pause()
        await pilot.pause()
        # THEN the first frame draws a quarter of the rows on screen, not all of them
        assert 0 < len(drawn) <= -(-len(rows) // TICK_PARTS)
        # AND every row is drawn once within the tick
        await until(pilot, lambda: len(drawn) >= len(rows), within=10, what="every row")
        await pilot.pause(0.6)
        assert sorted(drawn) == sorted(rows)

    run_app(scenario, many_tasks(), tick_seconds=3600)


def record_writes(app: TaskscopeApp, what: Callable[[], object]) -> list[object]:
    """`what` at every screen write from now on."""
    writes: list[object] = []
    original = app._display

    def display(screen: Any, renderable: Any) -> None:
        writes.append(what())
        original(screen, renderable)

    app._display = display  # type: ignore[method-assign]
    return writes


async def until_unaided(condition: Callable[[], object], what: str) -> None:
    """Wait for `condition` without Pilot's pause (which draws the screen itself)."""
    deadline = time.monotonic() + 15
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def test_a_keys_picture_does_not_wait_for_the_frame_timer() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        # GIVEN Textual's frame timer stopped: no frame comes on its tick
        timer = app.main._update_timer
        timer.pause()
        timer.resume = lambda: None  # type: ignore[method-assign]
        before = app.task_tree.selected_task
        writes = record_writes(app, lambda: app.task_tree.selected_task)
        # WHEN a key moves the cursor
        app.post_message(events.Key("down", None))
        # THEN its picture is written all the same, with the detail pane's new task
        await until_unaided(
            lambda: any(task != before for task in writes), "the key's picture on screen"
        )
        assert app.detail.task_id == app.task_tree.selected_task != before

    run_app(scenario, many_tasks(), tick_seconds=3600)


def test_the_collector_waits_until_a_keys_picture_is_on_screen() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        before = app.task_tree.selected_task
        assert gc.isenabled()
        writes = record_writes(app, lambda: (app.task_tree.selected_task, gc.isenabled()))
        # WHEN a key moves the cursor
        app.post_message(events.Key("down", None))
        await until_unaided(
            lambda: any(task != before for task, _ in writes), "the key's picture on screen"
        )
        # THEN no collector pass could run until the key's picture was written
        first = next(collecting for task, collecting in writes if task != before)
        assert first is False
        # AND it runs again once the picture is on screen
        assert gc.isenabled()

    run_app(scenario, many_tasks(), tick_seconds=3600)
    assert gc.isenabled()


def test_a_dialog_opened_before_a_keys_picture_does_not_keep_the_collector_off() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert gc.isenabled()
        # WHEN a key moves the cursor and the help comes up before the key's frame is drawn
        app.post_message(events.Key("down", None))
        app.post_message(events.Key("question_mark", "?"))
        await until_unaided(lambda: isinstance(app.screen, HelpScreen), "the help screen")
        # THEN the collector runs while the help is up (no frame of the tree will come)
        await until_unaided(gc.isenabled, "the collector on again")
        await pilot.press("escape")

    run_app(scenario, many_tasks(), tick_seconds=3600)
    assert gc.isenabled()


def test_far_apart_changes_are_drawn_each_in_its_own_rectangle() -> None:
    tree_rows = [Region(1, 9, 104, 1), Region(1, 10, 104, 1)]
    detail_pane = Region(106, 4, 54, 40)
    summary = Region(108, 5, 50, 2)
    groups = clusters([detail_pane, *tree_rows, summary])
    # The tree's two rows together, the pane (with the summary inside it) on its own
    assert sorted(map(sorted, groups)) == sorted([sorted(tree_rows), [detail_pane, summary]])
    # Rows far apart in the tree are drawn apart; a single region is one group
    assert len(clusters([Region(1, 5, 104, 1), Region(1, 40, 104, 1)])) == 2
    assert clusters([detail_pane]) == [[detail_pane]]


def test_a_key_frame_draws_the_tree_rows_and_the_detail_pane_each_on_its_own() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        tree, pane = app.task_tree, app.detail
        # GIVEN the cursor on a task, its picture drawn
        await pilot.press("down", "down")
        await pilot.pause()
        # Every screen write from now on: the rows it draws in the tree, and in the pane.
        writes: list[tuple[set[int], set[int]]] = []
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            spans = getattr(renderable, "spans", [])
            writes.append(
                (
                    {y for y, x1, _ in spans if x1 < tree.region.right},
                    {y for y, x1, _ in spans if x1 >= pane.region.x},
                )
            )
            original(screen, renderable)

        app._display = display  # type: ignore[method-assign]
        # WHEN a key moves the cursor (the detail pane shows another task)
        await pilot.press("down")
        await pilot.pause()
        # THEN the cursor's rows are written, and no write draws both the tree and the pane
        cursor_row = tree.region.y + tree.cursor_line - tree.scroll_offset.y
        assert any(tree_rows == {cursor_row - 1, cursor_row} for tree_rows, _ in writes), writes
        assert any(pane_rows for _, pane_rows in writes), writes
        assert not [write for write in writes if write[0] and write[1]], writes
        # AND of the pane, the lines that changed: its title (in the border) and the summary,
        # not every line of it under a new title
        pane_rows = set().union(*(rows for _, rows in writes))
        assert pane.region.y in pane_rows and len(pane_rows) < pane.region.height // 2, writes
        name = app.model.tasks[str(tree.selected_task)].name
        assert name in screen_text(app)

    run_app(scenario, many_tasks(), tick_seconds=3600)


def test_the_feed_thread_gives_the_lock_up_within_1_ms_while_the_dashboard_runs() -> None:
    before = sys.getswitchinterval()
    seen: list[float] = []

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        seen.append(sys.getswitchinterval())

    run_app(scenario, many_tasks(), tick_seconds=3600)
    assert seen == [feed.SWITCH_INTERVAL]
    assert sys.getswitchinterval() == before


def test_a_look_for_warnings_does_not_put_the_model_in_words_on_the_screens_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written: list[str] = []
    original = TaskModel.__repr__

    def recorded(model: TaskModel) -> str:
        written.append(threading.current_thread().name)
        return original(model)

    monkeypatch.setattr(TaskModel, "__repr__", recorded)

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await until(pilot, lambda: app.main.warnings_looks >= 1, what="the first look")
        looks = app.main.warnings_looks
        written.clear()
        # WHEN the dashboard looks for warnings again (every 2 seconds after an update)
        app.main._look_for_warnings()
        await until(pilot, lambda: app.main.warnings_looks > looks, what="another look")
        # THEN the model's 3,000 tasks were not written out (Textual names a worker by the
        # repr of its arguments unless told a name)
        assert written == []

    run_app(scenario, many_tasks(), tick_seconds=3600)


def test_new_loop_figures_in_the_header_do_not_lay_the_screen_out_again() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        def update(lag: float) -> Any:
            loop = wire_loop(TASKS)
            loop["lag"] = lag
            return delta([worker(2_000, f"lag {lag}")], [], cycles=[], loops=[loop])

        # GIVEN the trend lines shown (two samples make a trend)
        for lag in (0.001, 0.002):
            await apply(app, pilot, update(lag))
        layouts = 0
        original = app.main._refresh_layout

        def refresh_layout(*args: Any, **kwargs: Any) -> None:
            nonlocal layouts
            layouts += 1
            original(*args, **kwargs)

        app.main._refresh_layout = refresh_layout  # type: ignore[method-assign]
        # WHEN updates bring new loop figures (the lag's value beside its sparkline)
        for lag in (0.004, 0.008, 0.016):
            await apply(app, pilot, update(lag))
        # THEN the figures are on screen, and the screen was not laid out again for them
        assert "16.0 ms" in screen_text(app)
        assert layouts == 0

    run_app(scenario, many_tasks(), tick_seconds=3600)
