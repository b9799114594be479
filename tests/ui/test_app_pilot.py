"""Pilot tests: every key and action of the dashboard against a fake source.

GIVEN a dashboard on the scripted service of `fakes.service_tasks()` (frozen clock), WHEN the
test presses keys or pushes deltas, THEN the widgets, the source and the messages show it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import Input, OptionList

from taskscope.client import AgentGone
from taskscope.ui.app import TaskscopeApp
from taskscope.ui.cancel_dialog import CancelDialog
from taskscope.ui.group_table import GroupTable
from taskscope.ui.help_screen import HelpScreen
from taskscope.ui.history_table import HistoryTable
from taskscope.ui.task_table import TaskTable
from taskscope.ui.task_tree import TaskTree
from tests.ui.fakes import (
    FakeSource,
    awaiting,
    delta,
    service_tasks,
    snapshot,
    wire_loop,
    wire_task,
)
from tests.ui.harness import Clock, run_app, until


def parent_of(tree: TaskTree, task_id: str) -> str | None:
    node = tree.node_for(task_id)
    assert node is not None, f"task {task_id} has no node"
    parent = node.parent
    return None if parent is None or parent.is_root else parent.data


def dialog_text(app: TaskscopeApp) -> str:
    screen = app.screen
    assert isinstance(screen, CancelDialog)
    return screen.question


# --- the tree --------------------------------------------------------------------------------


def test_snapshot_nests_tasks_and_shows_cycles_once() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        tree = app.task_tree
        # THEN every task has one node, nested under its waiter, TaskGroup or creator
        assert tree.task_ids == {task["id"] for task in service_tasks()}
        assert parent_of(tree, "2") == "1"
        assert parent_of(tree, "5") == "2"
        assert parent_of(tree, "33") == "3"
        # and the await cycle hangs under its lowest member, once, not forever
        assert parent_of(tree, "7") is None
        assert parent_of(tree, "8") == "7"
        label = tree.render_label(tree.node_for("8"), tree.rich_style, tree.rich_style)  # type: ignore[arg-type]
        assert "⟳" in label.plain
        assert "task fetch-7" in label.plain

    run_app(scenario)


def test_delta_updates_nodes_by_task_id_without_rebuilding() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        tree = app.task_tree
        reporter_node = tree.node_for("4")
        rebuilds: list[object] = []
        original = tree.rebuild
        tree.rebuild = lambda *args: rebuilds.append(args) or original(*args)  # type: ignore[method-assign, func-returns-value]
        applied = app.updates_applied
        # WHEN a delta changes one task, adds one and removes one
        changed = wire_task(
            "4",
            "reporter",
            "report_loop",
            awaiting=awaiting("sleep", seconds_left=1.0),
            awaited_by=["1"],
            parent="1",
            age=724,  # created when it was: a record's creation time never changes
        )
        new = wire_task("35", "job-35", "process", awaiting=awaiting("sleep"), parent="3", age=0.5)
        source.push(delta([changed, new], removed=["34"]))
        await until(pilot, lambda: app.updates_applied > applied, what="the delta")
        # THEN the changed task keeps its node, the new one is added, the gone one removed
        assert tree.node_for("4") is reporter_node
        assert parent_of(tree, "35") == "3"
        assert tree.node_for("34") is None
        assert rebuilds == []
        assert (
            "sleep, 1.0 s left"
            in tree.render_label(reporter_node, tree.rich_style, tree.rich_style).plain
        )  # type: ignore[arg-type]

    run_app(scenario)


def test_a_cancel_waiting_for_a_blocked_loop_shows_on_the_row() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        tree = app.task_tree
        applied = app.updates_applied
        # WHEN the agent says a cancel of reporter waits for its loop
        record = wire_task(
            "4",
            "reporter",
            "report_loop",
            awaiting=awaiting("sleep", seconds_left=1.0),
            awaited_by=["1"],
            parent="1",
            age=724,
        )
        record["cancel_requested_at"] = 1_800_000_000.0 - 2.0  # type: ignore[typeddict-unknown-key]
        source.push(delta([record]))
        await until(pilot, lambda: app.updates_applied > applied, what="the delta")
        # THEN its row in the tree and in the table says so before what it awaits
        node = tree.node_for("4")
        assert node is not None
        label = tree.render_label(node, tree.rich_style, tree.rich_style).plain  # type: ignore[arg-type]
        assert "cancel requested · sleep, 1.0 s left" in label
        await pilot.press("l")
        table = app.query_one(TaskTable)
        await until(
            pilot,
            lambda: "cancel requested · sleep" in table.render_row("4").plain,
            what="the table's row",
        )

    run_app(scenario)


def test_task_moves_when_its_tree_parent_changes() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        tree = app.task_tree
        assert parent_of(tree, "5") == "2"
        assert tree.select_task("5")
        applied = app.updates_applied
        # WHEN conn-51234 becomes awaited by the dispatcher
        moved = wire_task(
            "5",
            "conn-51234",
            "handle",
            awaiting=awaiting("stream_read", call="StreamReader.read"),
            awaited_by=["3"],
            parent="2",
            age=4,
        )
        source.push(delta([moved]))
        await until(pilot, lambda: app.updates_applied > applied)
        # THEN it hangs under the dispatcher now, and only once
        assert parent_of(tree, "5") == "3"
        assert sum(1 for node in tree.root.children if node.data == "5") == 0
        assert tree.selected_task == "5"  # the cursor went with it

    run_app(scenario)


def test_arrow_keys_move_the_selection_and_left_collapses() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert app.selected == "1"
        await pilot.press("down")
        await until(pilot, lambda: app.selected == "2")
        await pilot.press("down")
        await until(pilot, lambda: app.selected == "5")
        # left on a leaf goes to its parent; left again collapses it
        await pilot.press("left")
        await until(pilot, lambda: app.selected == "2")
        await pilot.press("left")
        node = app.task_tree.node_for("2")
        assert node is not None
        assert not node.is_expanded
        await pilot.press("right")
        assert node.is_expanded

    run_app(scenario)


def test_detail_pane_shows_stack_source_and_jumps_to_awaited_task() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert app.jump_to("7")
        # THEN the stack with its source line arrives from the source
        await until(pilot, lambda: "7" in source.stack_requests, what="a stack request")
        await until(pilot, lambda: app.detail.stack_reply is not None)
        body = str(app.detail.query_one("#detail-body").render())
        assert "app/net.py:88" in body
        assert "await other" in body
        # WHEN the user picks "awaits fetch-8" in the links
        links = app.detail.query_one("#detail-links", OptionList)
        prompts = [str(links.get_option_at_index(i).prompt) for i in range(links.option_count)]
        assert "→ awaits fetch-8" in prompts
        assert "← awaited by fetch-8" in prompts
        links.focus()
        links.highlighted = prompts.index("→ awaits fetch-8")
        await pilot.press("enter")
        # THEN the selection jumps to fetch-8
        await until(pilot, lambda: app.selected == "8")
        assert app.task_tree.selected_task == "8"

    run_app(scenario)


def test_untrusted_names_are_shown_inert() -> None:
    tasks = service_tasks()
    tasks.append(wire_task("40", "\x1b[31mevil[/bold]\r", "[red]x", parent="1"))
    source = FakeSource(snapshot(tasks))

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        tree = app.task_tree
        plain = tree.render_label(tree.node_for("40"), tree.rich_style, tree.rich_style).plain  # type: ignore[arg-type]
        assert "\\x1b[31mevil[/bold]\\r" in plain
        assert "[red]x()" in plain
        assert "\x1b" not in plain

    run_app(scenario, source)


# --- views, filter, sort, finished -----------------------------------------------------------


def test_view_keys_switch_between_tree_table_groups_and_history() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.press("l")
        table = app.query_one("#table", TaskTable)
        assert app.view == "table"
        assert app.focused is table
        assert set(table.keys) == {task["id"] for task in service_tasks()}
        await pilot.press("g")
        groups = app.query_one("#groups", GroupTable)
        assert app.view == "groups"
        fetch = [group for group in groups.groups.values() if group.coro == "fetch"]
        assert fetch
        assert fetch[0].count == 2
        assert (
            "2 x fetch()"
            in groups.render_row(
                groups.keys[
                    groups.keys.index(
                        next(key for key, group in groups.groups.items() if group.coro == "fetch")
                    )
                ]
            ).plain
        )
        await pilot.press("h")
        history = app.query_one("#history", HistoryTable)
        assert app.view == "history"
        assert history.keys == ["34", "33"]  # newest first
        assert "ValueError('bad row')" in history.render_row("33").plain
        await pilot.press("t")
        assert app.view == "tree"
        assert app.focused is app.task_tree

    run_app(scenario)


def test_enter_on_a_group_lists_its_tasks_and_escape_shows_all() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.press("g")
        groups = app.query_one("#groups", GroupTable)
        key = next(key for key, group in groups.groups.items() if group.coro == "fetch")
        groups.select_key(key)
        await pilot.press("enter")
        table = app.query_one("#table", TaskTable)
        assert app.view == "table"
        assert sorted(table.keys) == ["7", "8"]
        await pilot.press("escape")
        assert len(table.keys) == len(service_tasks())

    run_app(scenario)


def test_slash_filters_by_text_and_escape_clears() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.press("slash")
        box = app.query_one("#filter", Input)
        assert box.display
        assert app.focused is box
        await pilot.press(*"fetch")
        await until(pilot, lambda: app.options.filter == "fetch", what="the filter")
        assert app.task_tree.task_ids == {"7", "8"}
        # space types into the box instead of pausing
        await pilot.press("space")
        assert not app.paused
        await pilot.press("backspace", "enter")
        assert app.focused is app.task_tree
        await pilot.press("escape")
        assert app.options.filter == ""
        assert len(app.task_tree.task_ids) == len(service_tasks())
        assert not box.display

    run_app(scenario)


def test_a_filter_draws_the_tasks_it_shows_not_lines_kept_from_before() -> None:
    # Textual numbers a tree's nodes from 0 again when it is cleared: a line kept by node id
    # from before a rebuild would draw another task (the rows of a filter looked stale).
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        def drawn() -> set[str]:
            return {str(line.path[-1].data) for line in app.task_tree._tree_lines}

        assert drawn() == app.task_tree.task_ids
        await pilot.press("slash", *"fetch", "enter")
        await until(pilot, lambda: app.options.filter == "fetch", what="the filter")
        assert app.task_tree.task_ids == {"7", "8"}
        assert drawn() == {"7", "8"}
        # AND the detail pane shows the task under the cursor, not one the filter hid
        await pilot.pause()
        assert app.main.selected == app.task_tree.selected_task in {"7", "8"}
        await pilot.press("escape")
        await until(pilot, lambda: app.options.filter == "", what="the filter cleared")
        assert drawn() == app.task_tree.task_ids == {task["id"] for task in service_tasks()}

    run_app(scenario)


def test_filter_keeps_ancestors_of_matches_as_context() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.press("slash", *"conn", "enter")
        await until(pilot, lambda: app.options.filter == "conn")
        assert app.task_tree.task_ids == {"1", "2", "5"}

    run_app(scenario)


def test_a_filter_puts_the_cursor_on_the_task_named_not_on_the_one_awaiting_it() -> None:
    # main awaits victim directly, so "task victim" is main's awaiting text: main matches the
    # filter too, and comes first. The cursor must still land on victim (c would end the
    # program otherwise), in the tree and in the table.
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        victim = wire_task("40", "victim", "victim", awaiting=awaiting("sleep", seconds_left=9))
        victim["awaited_by"] = ["41"]
        waiter = wire_task(
            "41",
            "waiter",
            "supervise",
            awaiting=awaiting("task", ["40"], object={"task": "victim"}),
        )
        applied = app.updates_applied
        source.push(delta([waiter, victim]))
        await until(pilot, lambda: app.updates_applied > applied)
        assert app.task_tree.select_task("41")
        await pilot.press("slash", *"victim", "enter")
        await until(pilot, lambda: app.options.filter == "victim", what="the filter")
        assert app.task_tree.task_ids == {"40", "41"}
        await until(pilot, lambda: app.task_tree.selected_task == "40", what="victim selected")
        assert app.main.selected == "40"
        # The table: the same filter typed anew lands on victim too.
        await pilot.press("escape", "l")
        await until(pilot, lambda: app.options.filter == "", what="the filter cleared")
        table = app.query_one(TaskTable)
        assert table.select_key("41")
        await pilot.press("slash", *"victim", "enter")
        await until(pilot, lambda: table.cursor_key == "40", what="victim's row under the cursor")

    run_app(scenario)


def test_s_cycles_sort_by_waited_name_and_state() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        tree = app.task_tree
        await pilot.press("s")
        assert app.options.sort == "waited"
        await pilot.press("s")
        assert app.options.sort == "name"
        main = tree.node_for("1")
        assert main is not None
        names = [str(child.label) for child in main.children]
        assert names == sorted(names, key=str.lower)
        await pilot.press("s")
        assert app.options.sort == "state"
        dispatcher = tree.node_for("3")
        assert dispatcher is not None
        assert [child.data for child in dispatcher.children] == ["33", "34"]  # failed first
        await pilot.press("s")
        assert app.options.sort == "age"

    run_app(scenario)


def test_sorted_by_state_a_task_that_fails_moves_among_its_siblings() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        tree = app.task_tree
        await pilot.press("s", "s", "s")
        assert app.options.sort == "state"
        applied = app.updates_applied
        source.push(delta([wire_task("36", "job-36", "process", parent="3", age=1)]))
        await until(pilot, lambda: app.updates_applied > applied)
        dispatcher = tree.node_for("3")
        assert dispatcher is not None
        assert [child.data for child in dispatcher.children] == ["36", "33", "34"]  # pending first
        assert tree.select_task("36")
        # WHEN the pending job fails
        applied = app.updates_applied
        failed = wire_task(
            "36", "job-36", "process", state="failed", parent="3", age=1, finished_ago=0.1
        )
        source.push(delta([failed]))
        await until(pilot, lambda: app.updates_applied > applied)
        # THEN it moves up among the failed, without a rebuild of the tree
        assert [child.data for child in dispatcher.children] == ["33", "36", "34"]
        assert tree.node_for("3") is dispatcher
        assert tree.selected_task == "36"  # the cursor went with it

    run_app(scenario)


def test_f_hides_and_shows_finished_tasks() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert {"33", "34"} <= app.task_tree.task_ids
        await pilot.press("f")
        assert not app.options.show_finished
        assert not {"33", "34"} & app.task_tree.task_ids
        await pilot.press("f")
        assert {"33", "34"} <= app.task_tree.task_ids

    run_app(scenario)


def test_finished_tasks_leave_the_live_view_after_a_while() -> None:
    clock = Clock()

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert "34" in app.task_tree.task_ids
        clock.now += 60
        app.main._tick()
        assert "34" not in app.task_tree.task_ids
        await pilot.press("h")
        assert "34" in app.query_one("#history", HistoryTable).keys

    run_app(scenario, clock=clock)


def test_space_pauses_and_resumes_live_updates() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.press("space")
        assert app.paused
        applied = app.updates_applied
        source.push(delta([wire_task("36", "job-36", "process", parent="3")]))
        source.push(delta([wire_task("37", "job-37", "process", parent="3")]))
        await until(pilot, lambda: bool(app.buffer), what="buffered updates")
        await pilot.pause(0.1)
        assert app.updates_applied == applied
        assert "36" not in app.task_tree.task_ids
        await pilot.press("space")
        assert not app.paused
        # both deltas were folded, none lost
        assert {"36", "37"} <= app.task_tree.task_ids

    run_app(scenario)


def test_question_mark_lists_every_key() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        listed = dict(app.screen.keys)
        for binding in app.main.BINDINGS:
            assert isinstance(binding, Binding)
            if binding.action == "next_worker":  # listed only for a parent and its workers
                assert binding.key not in listed
                continue
            assert (binding.key_display or binding.key) in listed
        assert "cancel the selected task (asks first)" in listed.values()
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)

    run_app(scenario)


def test_q_quits_with_status_zero() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.press("q")
        await pilot.pause()

    app = run_app(scenario)
    assert app.return_value == 0


def test_ctrl_c_quits_even_from_the_filter_box() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.press("slash")
        await pilot.press("ctrl+c")
        await pilot.pause()

    app = run_app(scenario)
    assert app.return_value == 0


def test_many_tasks_switch_to_the_grouped_view() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert app.view == "groups"
        assert app.auto_grouped
        # the tree, if forced, says why it is empty instead of adding the nodes
        await pilot.press("t")
        assert app.task_tree.overflow
        assert app.task_tree.task_ids == set()

    messages: list[object] = []
    run_app(scenario, messages=messages, tree_limit=5)


# --- cancelling ------------------------------------------------------------------------------


def test_c_asks_naming_the_task_and_y_cancels_it() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert app.jump_to("7")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CancelDialog))
        assert dialog_text(app) == "Cancel fetch-7 (fetch(), pending 41.0s)?"
        await pilot.press("y")
        await until(pilot, lambda: source.cancelled == ["7"], what="the cancel request")
        await until(pilot, lambda: app.detail.cancel_status.get("7") == "cancel requested…")
        # WHEN the next delta shows the task cancelled THEN the outcome is reported
        applied = app.updates_applied
        source.push(
            delta(
                [
                    wire_task(
                        "7", "fetch-7", "fetch", state="cancelled", parent="1", finished_ago=0.1
                    )
                ],
                cycles=[],
            )
        )
        await until(pilot, lambda: app.updates_applied > applied)
        assert app.cancels[0].results == {"7": "cancelled"}
        assert app.detail.cancel_status["7"] == "⊘ cancelled, as you asked"

    run_app(scenario)


def test_c_right_after_a_move_cancels_the_task_under_the_cursor() -> None:
    # The highlight message of `down` may still be queued when `c` is handled: the dialog
    # must name the task the cursor is on now, not the one it was on.
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert app.jump_to("7")
        await pilot.pause()
        # Move and ask in one go, before the highlight message is handled (as typed keys can).
        app.task_tree.action_cursor_down()
        app.main.action_cancel_task()
        await until(pilot, lambda: isinstance(app.screen, CancelDialog))
        under_cursor = app.task_tree.selected_task
        assert under_cursor is not None and under_cursor != "7"
        expected = app.model.tasks[under_cursor].name
        assert dialog_text(app).startswith(f"Cancel {expected} (")

    run_app(scenario)


def test_any_other_key_keeps_the_task_running() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert app.jump_to("4")
        for key in ("n", "escape", "enter", "c", "x"):
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, CancelDialog))
            await pilot.press(key)
            await until(pilot, lambda: not isinstance(app.screen, CancelDialog))
        await pilot.pause(0.1)
        assert source.cancelled == []
        assert app.cancels == []

    run_app(scenario)


async def cancel_and_wait_for_the_answer(
    app: TaskscopeApp, pilot: Pilot[Any], task_id: str
) -> None:
    """`c` on a task, `y` in the dialog, then the agent's answer to the cancel."""
    assert app.jump_to(task_id)
    await pilot.press("c")
    await until(pilot, lambda: isinstance(app.screen, CancelDialog))
    await pilot.press("y")
    await until(pilot, lambda: app.cancels and app.cancels[0].outcomes, what="the answer")


def test_a_task_that_ignores_cancellation_is_reported_still_running() -> None:
    clock = Clock()

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await cancel_and_wait_for_the_answer(app, pilot, "9")
        assert app.cancels[0].results == {}
        # WHEN the grace period passes and the task is still pending
        clock.now += 5
        app.main._tick()
        assert app.cancels[0].results == {"9": "still running"}
        assert "ignored" in app.detail.cancel_status["9"]

    run_app(scenario, clock=clock)


def test_a_cancel_the_agent_could_not_make_says_why_not_that_the_task_failed() -> None:
    # GIVEN an agent that answers a cancel with `failed` and why (a trio task with no cancel
    # scope of its own)
    why = "trio cancels through cancel scopes, and this task has none of its own"
    source = FakeSource()
    source.cancel_outcome, source.cancel_error = "failed", why

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        # WHEN the user cancels a task
        await cancel_and_wait_for_the_answer(app, pilot, "9")
        # THEN the pane and one notice say the cancel could not be made, and why; nothing
        # says that the task failed, and the task is not waited for
        assert app.detail.cancel_status["9"] == f"✗ could not cancel it: {why}"
        notices = [str(note.message) for note in app._notifications]
        assert len(notices) == 1 and notices[0].endswith(f": could not cancel it: {why}"), notices
        assert app.cancels[0].reported
        assert "failed" not in app.cancels[0].results.values()

    run_app(scenario, source)


def test_a_cancel_queued_behind_a_blocked_loop_waits_for_it_then_reports_cancelled() -> None:
    clock = Clock()

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        # GIVEN a loop blocked for 2 s, whose agent queues the cancel until the loop runs
        applied = app.updates_applied
        source.push(delta([], loops=[wire_loop(10, blocked_for=2.0)]))
        await until(pilot, lambda: app.updates_applied > applied, what="the delta")
        source.cancel_outcome = "queued"
        await cancel_and_wait_for_the_answer(app, pilot, "9")
        # THEN the pane says it waits for the loop, and nothing is concluded yet
        assert app.detail.cancel_status["9"] == "cancel waiting for its loop, which is blocked…"
        assert app.cancels[0].results == {}
        # WHEN the grace period passes with the loop still blocked THEN it still waits
        clock.now += 5
        app.main._tick()
        assert app.cancels[0].results == {}
        # WHEN the loop runs again and the next delta shows the task cancelled
        applied = app.updates_applied
        source.push(
            delta(
                [wire_task("9", "stubborn", "stubborn", state="cancelled", finished_ago=0.1)],
                loops=[wire_loop(10)],
            )
        )
        await until(pilot, lambda: app.updates_applied > applied, what="the delta")
        # THEN the outcome is reported as for any cancel
        assert app.cancels[0].results == {"9": "cancelled"}
        assert app.detail.cancel_status["9"] == "⊘ cancelled, as you asked"

    run_app(scenario, clock=clock)


def test_a_cancel_whose_process_exits_before_its_outcome_is_said_unseen() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        # GIVEN a cancel the agent took (cancelling a program's last task may end it)
        await cancel_and_wait_for_the_answer(app, pilot, "9")
        assert app.detail.cancel_status["9"] == "cancel requested…"
        # WHEN the process exits before an update shows the task's end
        source.end()
        await until(pilot, lambda: app.gone is not None, what="the end of the feed")
        # THEN the pane stops waiting and says the outcome was not seen
        assert app.cancels[0].results == {"9": "unseen"}
        assert app.detail.cancel_status["9"] == (
            "? the updates stopped before the cancel's outcome could be seen"
        )

    run_app(scenario)


def test_shift_c_cancels_the_subtree_after_naming_the_count() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert app.jump_to("2")
        await pilot.press("C")
        await until(pilot, lambda: isinstance(app.screen, CancelDialog))
        text = dialog_text(app)
        assert text.startswith("Cancel api-server and everything under it: 2 tasks")
        await pilot.press("y")
        await until(pilot, lambda: len(source.cancelled) == 2, what="two cancel requests")
        assert source.cancelled == ["5", "2"]  # innermost first

    run_app(scenario)


def test_cancel_is_disabled_for_a_finished_task() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert app.jump_to("33")
        assert app.main.check_action("cancel_task", ()) is None
        await pilot.press("c")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, CancelDialog)

    run_app(scenario)


# --- export and the end of the target --------------------------------------------------------


def test_e_exports_the_snapshot_as_json(tmp_path: Path) -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.press("e")
        await until(pilot, lambda: list(tmp_path.glob("taskscope-4242-*.json")), what="a file")

    source = FakeSource()
    run_app(scenario, source, export_dir=str(tmp_path))
    (path,) = tmp_path.glob("taskscope-4242-*.json")
    assert json.loads(path.read_text()) == source.latest


def test_y_copies_the_selected_task_as_text() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert app.task_tree.select_task("3")
        await pilot.press("y")
        text = app.clipboard
        assert text.splitlines()[0] == "task 3 dispatcher in process 4242: pending, dispatch()"
        assert "awaiting: Queue.get on jobs (0 items)" in text
        assert "awaited by: 1 (main)" in text
        assert "  dispatch  app/service.py:18" in text  # its stack: where dispatch() is parked
        assert "  main  app/service.py:40" in text  # where it was created
        # A finished task says how it ended.
        assert app.task_tree.select_task("33")
        await pilot.press("y")
        assert "exception: ValueError('bad row')" in app.clipboard

    run_app(scenario)


def test_target_exit_keeps_the_last_picture_and_says_so() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        source.end(AgentGone("process 4242 exited"))
        await until(pilot, lambda: app.gone is not None, what="the end of the feed")
        assert "process 4242 exited" in str(app.header.render())
        assert len(app.task_tree.task_ids) == len(service_tasks())
        assert app.main.check_action("cancel_task", ()) is None

    run_app(scenario)


def test_header_shows_process_facts_loop_state_and_data_age() -> None:
    clock = Clock()

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await until(pilot, lambda: "cpu_percent" in app.facts, what="process facts")
        clock.now += 3
        app.main._tick()
        await pilot.pause()  # the header follows the tick's ModelChanged
        text = str(app.header.render())
        for expected in (
            "pid 4242",
            "app.py --port 8080",
            "Python 3.12.1",
            "CPU 12%",
            "RSS 84 MB",
            "9 threads",
            "23 fds",
            "loop MainThread: running",
            "8 pending",
            "1 failed",
            "data 3.0 s old",
        ):
            assert expected in text

    run_app(scenario, clock=clock)


def test_blocked_loop_is_marked_in_the_header() -> None:
    source = FakeSource(snapshot(service_tasks(), blocked_for=2.5))

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert "⏸ BLOCKED for 2.5s" in str(app.header.render())

    run_app(scenario, source)


def test_two_loops_of_one_thread_are_told_apart_in_the_header() -> None:
    # GIVEN two loops of the main thread: one left unclosed, stopped; asyncio.run's, running
    body = snapshot(service_tasks())
    stopped = dict(body["loops"][0], id="L2", running=False, tasks=0)
    body["loops"].append(stopped)  # type: ignore[arg-type]
    source = FakeSource(body)

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        text = str(app.header.render())
        # THEN the second is named by its id, and each says its own state
        assert "loop MainThread: running" in text, text
        assert "loop MainThread (L2): not running" in text, text

    run_app(scenario, source)


def test_a_dead_process_is_called_exited_even_if_the_socket_said_otherwise() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await until(pilot, lambda: "command" in app.facts)
        source.info = {"pid": 4242, "alive": False}
        source.end(AgentGone("the agent of process 4242 closed the connection"))
        await until(pilot, lambda: app.gone is not None)
        assert app.gone == "process 4242 exited"
        # what was known about the process stays in the header
        app._read_facts()
        await pilot.pause(0.1)
        assert "app.py --port 8080" in str(app.header.render())

    run_app(scenario)


def test_the_detail_pane_lists_awaited_tasks_in_the_trees_order() -> None:
    # GIVEN main awaiting a TaskGroup whose children the agent listed in no particular order
    children = [
        ("10", "late", 1.0),
        ("11", "early", 30.0),
        ("12", "mid", 10.0),
        ("13", "first", 50),
    ]
    tasks = [
        wire_task(
            "1",
            "main",
            "main",
            awaiting=awaiting("taskgroup", [task_id for task_id, _, _ in children]),
            age=60,
        ),
        *(
            wire_task(task_id, name, "child", awaited_by=["1"], parent="1", age=age)
            for task_id, name, age in children
        ),
    ]
    source = FakeSource(snapshot(tasks, cycles=[]))

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert app.jump_to("1")
        links = app.detail.query_one("#detail-links", OptionList)
        await until(pilot, lambda: links.option_count == 4, what="the links")
        prompts = [str(links.get_option_at_index(i).prompt) for i in range(links.option_count)]
        # THEN they come as the tree lists main's children: oldest first
        node = app.task_tree.node_for("1")
        assert node is not None
        in_tree = [app.task_tree.model.tasks[str(child.data)].name for child in node.children]
        assert in_tree == ["first", "early", "mid", "late"]
        assert prompts == [f"→ awaits {name}" for name in in_tree]

    run_app(scenario, source)


def test_the_header_says_stopped_only_while_the_process_is_stopped() -> None:
    clock = Clock()

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        # GIVEN no data for 3 s from a process found stopped
        clock.now += 3.0
        source.info = {**source.info, "stopped": "signal"}
        app._read_facts()
        await until(pilot, lambda: "the process is stopped" in str(app.header.render()))
        assert "`kill -CONT 4242` resumes it" in str(app.header.render())
        # WHEN it runs again, though no data came yet (a long look at many tasks)
        source.info = {key: value for key, value in source.info.items() if key != "stopped"}
        app._read_facts()
        # THEN the header no longer says it is stopped
        await until(pilot, lambda: "the process is stopped" not in str(app.header.render()))
        assert "data 3.0 s old" in str(app.header.render())

    run_app(scenario, clock=clock)


def test_the_header_says_no_loop_runs_until_the_program_starts_one() -> None:
    # GIVEN a dashboard on a Python program that has not started asyncio yet
    body = snapshot([], cycles=[])
    body["loops"] = []
    source = FakeSource(body)

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        # THEN the header says why the tree is empty
        header = str(app.header.render())
        assert "no event loop runs in this process now: its tasks show here once one does" in (
            header
        ), header
        # WHEN the program starts its loop and a task
        source.push(delta([wire_task("1", "main", "main")], cycles=[], tasks=1))
        # THEN the loop's line takes its place
        await until(pilot, lambda: "loop MainThread" in str(app.header.render()))
        assert "no event loop runs" not in str(app.header.render())

    run_app(scenario, source)
