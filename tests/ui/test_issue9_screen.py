"""Pilot tests of what a new user met on screen (issue 9), reading the rendered screen: the
two tree relations told apart, grouping by await site, asyncio's own tasks marked, the header
and footer at 140 columns, and finished children in a stable order.

GIVEN a dashboard on a scripted source (frozen clock), WHEN it shows the tasks, THEN the
screen text says what the issue asks for.
"""

from __future__ import annotations

import time
from typing import Any

from textual import events
from textual.pilot import Pilot

from taskscope.protocol import WireTask
from taskscope.relations import LEGEND
from taskscope.ui.app import TaskscopeApp
from taskscope.ui.cancel_dialog import CancelDialog
from taskscope.ui.source import AgentSource
from taskscope.ui.task_display import ASYNCIO_LEGEND, made_by_asyncio
from tests.ui.fakes import FakeSource, awaiting, delta, service_tasks, snapshot, wire_task
from tests.ui.harness import run_app, screen_text, until


def dialog(app: TaskscopeApp) -> CancelDialog:
    screen = app.screen
    assert isinstance(screen, CancelDialog)
    return screen


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
        # and a finished child, which nobody awaits any more, does not pass for a leak
        assert "├─ " in line_with(screen, "parse-33")
        # and the legend under the tree says which is which
        assert LEGEND in screen

    run_app(scenario)


def test_header_fits_140_columns_without_leaving_fds_alone() -> None:
    source = FakeSource()
    source.info["command"] = (
        "/usr/bin/python3 /work/main/taskscope/examples_data/demo_service.py --port 8080 -v"
    )
    source.info["rss"] = 1234 * 1024 * 1024
    source.info["threads"] = 123
    source.info["fds"] = 1024

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await until(pilot, lambda: "rss" in app.facts, what="the process facts")
        await pilot.pause()
        lines = screen_text(app).splitlines()
        # THEN the process line keeps every fact up to the fds, in one line of 140 cells
        assert lines[0].strip().startswith("taskscope · pid 4242 · ")
        assert lines[0].rstrip().endswith("· 123 threads · 1024 fds"), lines[0]
        assert "demo_service.py" in lines[0]
        # and the next line is the loop's, not the rest of the process line
        assert lines[1].strip().startswith("loop MainThread: running"), lines[1]

    run_app(scenario, source)


def test_space_pause_stays_in_the_footer_in_every_view() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        for key in ("g", "h", "l", "t"):
            await pilot.press(key)
            await pilot.pause()
            # THEN the footer (the last line) still offers space Pause
            assert "space Pause" in screen_text(app).splitlines()[-1], key

    run_app(scenario)


def test_finished_children_keep_the_cli_order_as_updates_arrive() -> None:
    def tree_children(app: TaskscopeApp, task_id: str) -> list[str]:
        node = app.task_tree.node_for(task_id)
        assert node is not None
        return [str(child.data) for child in node.children]

    def cli_children(app: TaskscopeApp, task_id: str) -> list[str]:
        return [task.id for task in app.model.children_map()[task_id]]

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        # WHEN two jobs start under the dispatcher, the later-numbered one created first
        early = wire_task("36", "job-36", "process", awaiting=awaiting("sleep"), parent="3", age=10)
        late = wire_task("35", "job-35", "process", awaiting=awaiting("sleep"), parent="3", age=0.5)
        applied = app.updates_applied
        source.push(delta([late, early]))
        await until(pilot, lambda: app.updates_applied > applied, what="the new jobs")
        # THEN they sit where `taskscope tree` puts them: pending first, by creation
        assert tree_children(app, "3") == cli_children(app, "3") == ["36", "35", "33", "34"]
        # WHEN the first of them finishes
        done = wire_task(
            "36",
            "job-36",
            "process",
            state="done",
            parent="3",
            age=10,
            finished_ago=0.1,
            result="'ok'",
        )
        applied = app.updates_applied
        source.push(delta([done]))
        await until(pilot, lambda: app.updates_applied > applied, what="the finish")
        # THEN it moves among the finished ones, in creation order, as the CLI lists them
        assert tree_children(app, "3") == cli_children(app, "3") == ["35", "36", "33", "34"]

    run_app(scenario)


def test_grouped_view_joins_workers_parked_at_one_line_whatever_they_await() -> None:
    def worker(task_id: str, job: str, line: int) -> WireTask:
        return wire_task(
            task_id,
            f"worker-{task_id}",
            "worker",
            awaiting=awaiting(
                "wait_for",
                [job],
                object={"awaitable": None},
                inner={"kind": "shield", "tasks": [], "object": {"task": job}},
                deadline_in=float(f"1.{task_id}"),
            ),
            awaited_by=["1"],
            parent="1",
            line=line,
        )

    tasks = [
        *service_tasks(),
        worker("41", "job-32", 84),
        worker("42", "job-33", 84),
        worker("43", "job-34", 84),
        worker("44", "job-35", 99),  # the same coroutine, parked at another line
    ]

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.press("g")
        await pilot.pause()
        screen = screen_text(app)
        # THEN the three workers at line 84 are one group, named by what they share
        assert "3 x worker()  awaiting wait_for shield task …  at service.py:84" in screen
        # and the one parked elsewhere is its own group, with its own words
        assert "1 x worker()  awaiting wait_for shield task job-35  at service.py:99" in screen
        assert "job-32" not in screen

    run_app(scenario, FakeSource(snapshot(tasks)))


def test_after_a_filter_the_cursor_is_on_the_first_match_not_its_ancestor() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        # GIVEN the cursor on main, at the top
        assert app.task_tree.selected_task == "1"
        # WHEN the user filters for conn and presses Enter
        await pilot.press("slash", *"conn", "enter")
        await until(pilot, lambda: app.options.filter == "conn", what="the filter")
        await pilot.pause()
        # THEN main and api-server are shown above it as context, but the cursor is on the
        # match, and c asks about it
        assert {"1", "2", "5"} <= app.task_tree.task_ids
        assert app.task_tree.selected_task == "5"
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CancelDialog), what="the dialog")
        assert "Cancel conn-51234 (handle()" in dialog(app).question
        assert dialog(app).warning == ""

    run_app(scenario)


def test_cancelling_the_main_task_or_all_under_it_warns_that_the_program_ends() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        # WHEN c is pressed on main, the task asyncio.run drives (the loop says so)
        assert app.task_tree.select_task("1")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CancelDialog), what="the dialog")
        # THEN the dialog says plainly that this ends the program, above the question
        assert dialog(app).warning.startswith("⚠ This ends the program (process 4242): main ")
        assert "the main task, the one asyncio.run drives" in dialog(app).warning
        await pilot.pause()
        assert "⚠ This ends the program (process 4242)" in screen_text(app)
        await pilot.press("n")
        assert source.cancelled == []
        # WHEN c is pressed on a task that is not the main one and holds only part
        assert app.task_tree.select_task("2")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CancelDialog), what="the dialog")
        # THEN no warning
        assert dialog(app).warning == ""
        await pilot.press("n")

    run_app(scenario)


def test_a_task_whose_subtree_holds_every_other_task_warns_too() -> None:
    tasks = [
        wire_task(
            "1", "main", "main", awaiting=awaiting("task", ["2"], object={"task": "supervisor"})
        ),
        wire_task(
            "2",
            "supervisor",
            "supervise",
            awaiting=awaiting("taskgroup", ["3"], object={"size": 1}),
            awaited_by=["1"],
            parent="1",
        ),
        wire_task("3", "job", "job", awaiting=awaiting("sleep"), awaited_by=["2"], parent="2"),
    ]
    # GIVEN a loop that names no main task (run_forever) and one task holding all others
    first = snapshot(tasks, cycles=[])
    first["loops"][0]["main_task"] = None

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert app.task_tree.select_task("1")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CancelDialog), what="the dialog")
        assert dialog(app).warning.startswith("⚠ This will likely end the program")
        assert "every other task runs under main" in dialog(app).warning
        await pilot.press("n")
        assert app.task_tree.select_task("2")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CancelDialog), what="the dialog")
        assert dialog(app).warning == ""

    run_app(scenario, FakeSource(first))


def test_tasks_asyncio_made_for_itself_are_marked_on_a_real_server(start: Any) -> None:
    # GIVEN a real server that accepted a connection: asyncio ran tasks of its own for it
    target = start("asyncio_made.py").wait_ready()
    source = AgentSource(target.pid)

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], _source: Any) -> None:
        await until(
            pilot,
            lambda: any(made_by_asyncio(task) for task in app.model.tasks.values()),
            what="a task made by asyncio",
        )
        await pilot.pause()
        screen = screen_text(app)
        # THEN each task whose coroutine is asyncio's own is marked ⚙ on screen
        for task in app.model.tasks.values():
            if made_by_asyncio(task):
                assert "asyncio" in task.stack[0].file if task.stack else True
                assert f"⚙ {task.coro[:12]}" in line_with(screen, f" {task.name} ")
        # and the program's own stand out unmarked: its handler (which asyncio started), its
        # named tasks, even one running asyncio.sleep
        for name in ("client-1", "sleeper"):
            assert "⚙" not in line_with(screen, f" {name} ")
        handler = next(t for t in app.model.tasks.values() if t.coro == "handle_client")
        assert not made_by_asyncio(handler)
        assert "⚙" not in line_with(screen, "handle_client()")
        assert ASYNCIO_LEGEND in screen

    try:
        run_app(scenario, source, clock=time.time)  # type: ignore[arg-type]
    finally:
        source.close()


def test_a_key_during_a_large_update_is_answered_between_its_slices() -> None:
    def job(number: int, seconds_left: float | None) -> WireTask:
        return wire_task(
            str(number),
            f"job-{number}",
            "process",
            awaiting=awaiting("sleep", seconds_left=seconds_left),
            parent="1",
            age=100 - number / 100,
        )

    # Enough tasks for many slices: a key travels through a few widgets' queues (a turn of
    # the event loop each, as a slice is) before it is answered.
    many = [wire_task("1", "main", "main"), *(job(n, None) for n in range(2, 4002))]
    answered: list[int] = []

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        tree = app.task_tree
        original = tree.action_cursor_down
        tree.action_cursor_down = lambda: answered.append(len(app.main.views.slices)) or original()  # type: ignore[method-assign, func-returns-value]
        applied = app.updates_applied
        # WHEN an update changing 4,000 tasks arrives and a key lands right after it
        app.buffer.put_delta(delta([job(n, 1.0) for n in range(2, 4002)]))
        app.main._apply_in_slices()  # what FeedUpdated does: the first slice, the next one posted
        assert app.main.views.slices
        app.post_message(events.Key("down", None))
        await until(pilot, lambda: app.updates_applied > applied, what="the whole update")
        await until(pilot, lambda: answered, what="the key")
        # THEN the key was answered while slices of the update were still to come
        assert answered[0] > 0
        # and the update, once through, is all there
        assert "sleep, 1.0 s left" in screen_text(app)

    run_app(scenario, FakeSource(snapshot(many, cycles=[])))
