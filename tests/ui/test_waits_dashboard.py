"""How long each task has waited where it is, in the dashboard's rows: the tree's say
`, for ≥41.0s` after what a task awaits (UX.md: it "is worth as much as what it waits for"),
the list has a WAITED column, and `s` offers the order "waited", the longest waits first.

GIVEN the scripted service with waits known (from the agent's looks: lower bounds; one timed
exactly), WHEN the dashboard shows it, THEN the rows say each wait and the sort orders by it.
"""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from taskscope.protocol import WireTask
from taskscope.ui.app import TaskscopeApp
from taskscope.ui.task_table import TaskTable
from tests.ui.fakes import NOW, FakeSource, service_tasks, snapshot
from tests.ui.harness import Clock, run_app, screen_text, until

#: Task id -> since when it waits where it is (seen by a look, so a lower bound).
SEEN = {"3": NOW - 41.0, "4": NOW - 0.5, "9": NOW - 600.0}


def service_with_waits() -> list[WireTask]:
    tasks = service_tasks()
    for task in tasks:
        if task["id"] in SEEN:
            task["waiting_seen_at"] = SEEN[task["id"]]
        if task["id"] == "2":  # timed exactly (the agent times steps): no ≥
            task["waiting_since"] = NOW - 90.0
    return tasks


def row_of(app: TaskscopeApp, task_id: str) -> str:
    tree = app.task_tree
    node = tree.node_for(task_id)
    assert node is not None, task_id
    return tree.render_label(node, tree.rich_style, tree.rich_style).plain


def test_tree_rows_say_how_long_each_task_waited_and_count_on() -> None:
    clock = Clock()

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        # THEN a wait seen by a look reads as a lower bound, a timed one exactly
        assert "Queue.get on jobs (0 items), for ≥41.0s" in row_of(app, "3")
        assert "for ≥10m00s" in row_of(app, "9")
        assert ", for 1m30s" in row_of(app, "2")
        assert "for ≥" not in row_of(app, "2")
        # AND a wait shorter than a second is not said (the first look finds every task so)
        assert ", for" not in row_of(app, "4")
        # AND a task awaiting nothing known (finished) says no wait
        assert ", for" not in row_of(app, "33")
        # AND on a terminal wide enough for the row, the user reads it
        assert "Queue.get on jobs (0 items), for ≥41.0s" in screen_text(app)
        # WHEN time goes on with no update, THEN the row counts on
        clock.now += 5
        assert "for ≥46.0s" in row_of(app, "3")
        assert "for ≥5.5s" in row_of(app, "4")

    run_app(scenario, FakeSource(snapshot(service_with_waits())), clock=clock, size=(200, 40))


def test_s_sorts_by_the_longest_wait_in_the_list_and_the_tree() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        # WHEN s is pressed (no runtime figures: age, then waited)
        await pilot.press("s")
        assert app.options.sort == "waited"
        await until(pilot, lambda: "sorted by waited" in screen_text(app), what="the notice")
        # THEN the tree's siblings under main come longest wait first, those with no known
        # wait after them
        main = app.task_tree.node_for("1")
        assert main is not None
        children = [child.data for child in main.children]
        assert children[:4] == ["9", "2", "3", "4"], children
        # AND the list: the timed wait of 90 s between 600 s and 41 s, every wait before the
        # tasks with none
        await pilot.press("l")
        table = app.query_one(TaskTable)
        await until(pilot, lambda: bool(table.keys), what="the list")
        assert table.keys[:4] == ["9", "2", "3", "4"], table.keys
        # AND its WAITED column says each wait, blank where none is known
        assert "WAITED" in table.header().plain
        waited_at = table.header().plain.index("WAITED") - 1  # right-aligned in 7 cells
        row = table.render_row("9").plain
        assert row[waited_at : waited_at + 7].strip() == "≥10m00s", row
        assert table.render_row("2").plain[waited_at : waited_at + 7].strip() == "1m30s"
        assert table.render_row("4").plain[waited_at : waited_at + 7].strip() == ""
        screen = screen_text(app)
        assert "WAITED" in screen and "≥41.0s" in screen

    run_app(scenario, FakeSource(snapshot(service_with_waits())))
