"""Pilot tests of issue 12 in the dashboard: runtime figures as sortable columns, the detail
pane's figures, traceback and lock holders, against a fake source whose agent times steps.

GIVEN a dashboard on `fakes.timed_service()` (the scripted service with figures, `crunch`
eating the loop), WHEN the test presses keys or pushes deltas, THEN the screen shows it.
"""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import OptionList

from taskscope.protocol import WireAwaiting, WireDelta, WireTask
from taskscope.ui.app import TaskscopeApp
from taskscope.ui.history_table import HistoryTable
from taskscope.ui.process_header import TREND_SAMPLES, TrendLine
from taskscope.ui.stall_table import StallTable
from taskscope.ui.task_table import TaskTable
from tests.ui.fakes import (
    NOW,
    FakeSource,
    awaiting,
    delta,
    service_tasks,
    snapshot,
    timed,
    timed_loop,
    timed_service,
    wire_loop,
    wire_task,
)
from tests.ui.harness import run_app, screen_text, until


def detail_text(app: TaskscopeApp, part: str) -> str:
    return str(app.detail.query_one(f"#detail-{part}").render())


def link_prompts(app: TaskscopeApp) -> list[str]:
    links = app.detail.query_one("#detail-links", OptionList)
    return [str(links.get_option_at_index(i).prompt) for i in range(links.option_count)]


async def push_and_apply(
    app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource, update: WireDelta
) -> None:
    """Push `update` from the fake source and wait until the dashboard has applied it."""
    applied = app.updates_applied
    source.push(update)
    await until(pilot, lambda: app.updates_applied > applied, what="the update")


# --- sortable columns ------------------------------------------------------------------------


def test_s_sorts_the_list_by_busy_then_steps_then_waited_name_state_and_age() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.press("l")
        table = app.query_one(TaskTable)
        # THEN the list has BUSY and STEPS columns (in place of STATE: the marker says it)
        assert "BUSY" in table.header().plain and "STEPS" in table.header().plain
        assert "STATE" not in table.header().plain
        # WHEN s is pressed: sorted by busy time, the task eating the loop first
        await pilot.press("s")
        assert app.options.sort == "busy"
        assert table.keys[0] == "12"
        assert table.keys[1] == "3"  # the dispatcher: 90 ms
        row = table.render_row("12").plain
        assert "8.21 s" in row and "48,210" in row
        await until(pilot, lambda: "sorted by busy" in screen_text(app), what="the notice")
        # WHEN s again: by steps (the reporter ran more often than the dispatcher)
        await pilot.press("s")
        assert app.options.sort == "steps"
        assert table.keys[:3] == ["12", "4", "3"]
        # THEN waited, name, state, and back to age
        await pilot.press("s")
        assert app.options.sort == "waited"
        await pilot.press("s")
        assert app.options.sort == "name"
        await pilot.press("s", "s")
        assert app.options.sort == "age"

    run_app(scenario, FakeSource(timed_service()))


def test_the_busy_order_follows_each_update_in_the_list() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.press("l", "s")
        table = app.query_one(TaskTable)
        assert table.keys[0] == "12"
        # WHEN the reporter becomes the busiest task
        reporter = next(task for task in timed_service()["tasks"] if task["id"] == "4")
        update = delta([timed(reporter, steps=900, busy=20.0, longest=1.2)], tasks=11)
        await push_and_apply(app, pilot, source, update)
        # THEN it comes first
        assert table.keys[:2] == ["4", "12"]

    run_app(scenario, FakeSource(timed_service()))


def test_tree_sorted_by_busy_shows_the_busy_column_and_orders_siblings() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        tree = app.task_tree
        await pilot.press("s")
        main = tree.node_for("1")
        assert main is not None
        # THEN main's children come busiest first, crunch leading
        assert [child.data for child in main.children][:2] == ["12", "3"]
        crunch = tree.node_for("12")
        assert crunch is not None
        label = tree.render_label(crunch, tree.rich_style, tree.rich_style).plain
        assert "8.21 s" in label

    run_app(scenario, FakeSource(timed_service()))


def test_without_figures_the_sort_skips_busy_and_steps_and_the_list_keeps_state() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.press("l")
        table = app.query_one(TaskTable)
        assert "STATE" in table.header().plain and "BUSY" not in table.header().plain
        await pilot.press("s")
        assert app.options.sort == "waited"
        await pilot.press("s")
        assert app.options.sort == "name"

    run_app(scenario)


# --- the detail pane -------------------------------------------------------------------------


def test_detail_pane_shows_steps_busy_longest_last_ran_and_waiting() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert app.jump_to("12")
        await until(pilot, lambda: "48,210" in detail_text(app, "summary"), what="the figures")
        summary = detail_text(app, "summary")
        assert "48,210 steps · busy 8.21 s · longest 310 ms" in summary
        assert "last ran 100ms ago · waiting 50ms" in summary

    run_app(scenario, FakeSource(timed_service()))


TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "app/parse.py", line 12, in parse\n'
    "    rows = [decode(line) for line in lines]\n"
    '  File "app/parse.py", line 30, in decode\n'
    "    raise ValueError('bad row')\n"
    "ValueError: bad row\n"
)


def with_a_traceback() -> tuple[list[WireTask], WireTask]:
    """The scripted service's tasks, and among them parse-33 (failed), carrying TRACEBACK."""
    tasks = service_tasks()
    failed = next(task for task in tasks if task["id"] == "33")
    failed["traceback"] = TRACEBACK  # type: ignore[typeddict-unknown-key]
    return tasks, failed


def test_a_failed_task_shows_its_traceback_bounded() -> None:
    tasks, _failed = with_a_traceback()
    long_one = wire_task(
        "40", "deep", "deep", state="failed", parent="1", age=2, finished_ago=1, exception="E()"
    )
    frames = "".join(
        f'  File "app/deep.py", line {n}, in deep\n    return deep(n - 1)\n' for n in range(400)
    )
    long_one["traceback"] = f"Traceback (most recent call last):\n{frames}RecursionError: x\n"  # type: ignore[typeddict-unknown-key]
    tasks.append(long_one)

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert app.jump_to("33")
        await until(pilot, lambda: "traceback" in detail_text(app, "body"), what="traceback")
        body = detail_text(app, "body")
        assert "raise ValueError('bad row')" in body
        assert "ValueError: bad row" in body
        assert 'File "app/parse.py", line 30, in decode' in body
        # AND a very long one keeps its last lines (where it was raised), and says so
        assert app.jump_to("40")
        await until(pilot, lambda: "RecursionError" in detail_text(app, "body"), what="it")
        body = detail_text(app, "body")
        assert "602 earlier lines" in body
        assert "line 399, in deep" in body and "line 10, in deep" not in body

    run_app(scenario, FakeSource(snapshot(tasks)))


def test_creation_chain_lists_every_frame() -> None:
    tasks = service_tasks()
    fetch = next(task for task in tasks if task["id"] == "7")
    fetch["created_from"] = [
        {"function": "main", "file": "app/service.py", "line": 40},
        {"function": "start_fetchers", "file": "app/net.py", "line": 12},
        {"function": "spawn", "file": "app/net.py", "line": 5},
    ]

    class NoSourceLines(FakeSource):
        def stack(self, task_id: str) -> Any:
            reply = super().stack(task_id)
            reply.pop("created_from", None)
            return reply

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert app.jump_to("7")
        await until(pilot, lambda: "spawn()" in detail_text(app, "body"), what="the chain")
        body = detail_text(app, "body")
        chain = body[body.index("created from") :]
        assert chain.index("main()") < chain.index("start_fetchers()") < chain.index("spawn()")
        assert "app/net.py:12" in chain

    run_app(scenario, NoSourceLines(snapshot(tasks)))


def transfer(task_id: str, name: str, waiting: WireAwaiting) -> WireTask:
    """One of the two transfers main gathers, 41 s old, waiting as told."""
    return wire_task(
        task_id, name, "transfer", awaiting=waiting, awaited_by=["1"], parent="1", age=41
    )


def lock_held_by(lock: str, holder: str) -> WireAwaiting:
    """Waiting to acquire `lock`, which task `holder` holds."""
    held = {"name": lock, "locked": True, "waiters": 1, "holders": [holder]}
    return awaiting("lock", call="Lock.acquire", object=held)


def deadlock() -> list[Any]:
    """transfer-a holds lock a and waits for b; transfer-b holds b and waits for a."""
    return [
        wire_task("1", "main", "main", awaiting=awaiting("gather", ["21", "22"]), age=60),
        transfer("21", "transfer-a", lock_held_by("b", "22")),
        transfer("22", "transfer-b", lock_held_by("a", "21")),
    ]


def test_detail_pane_names_the_lock_holder_and_jumps_to_it() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        assert app.jump_to("21")
        await until(pilot, lambda: "⚿ held by transfer-b" in link_prompts(app), what="holder")
        # WHEN Tab goes onto the links (the first one, the holder, under the cursor), Enter
        assert link_prompts(app)[0] == "⚿ held by transfer-b"
        await pilot.press("tab")
        await until(pilot, lambda: app.detail.query_one("#detail-links").has_focus, what="focus")
        await pilot.press("enter")
        await until(pilot, lambda: app.selected == "22", what="the jump to the holder")
        await until(pilot, lambda: "⚿ held by transfer-a" in link_prompts(app), what="its holder")

    run_app(scenario, FakeSource(snapshot(deadlock(), cycles=[])))


# --- the header's sparklines -----------------------------------------------------------------


def timed_delta(steps_per_s: float, busy_share: float, lag: float) -> Any:
    loop = timed_loop(wire_loop(11), steps_per_s=steps_per_s, busy_share=busy_share)
    loop["lag"] = lag
    return delta([], tasks=11, loops=[loop])


def test_header_draws_steps_busy_and_lag_over_successive_updates() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        trends = app.main.trends
        # WHEN five more updates come, the loop ever busier
        for step in range(1, 6):
            update = timed_delta(1000.0 * step, 0.1 * step, 0.001 * step)
            await push_and_apply(app, pilot, source, update)
        # THEN one sample per update and loop, drawn, with the latest figures beside them
        trend = trends.trends["L1"]
        assert list(trend.steps)[-5:] == [1000.0, 2000.0, 3000.0, 4000.0, 5000.0]
        assert len(trend.busy) == len(trend.lag) == app.updates_applied
        line = trends.query_one(TrendLine)
        assert line.sparks["steps"].data == list(trend.steps)
        await pilot.pause()
        text = screen_text(app)
        row = next(row for row in text.splitlines() if "steps/s" in row)
        assert "5.0k/s" in row and "50%" in row and "5.0 ms" in row and "▁" in row

    run_app(scenario, FakeSource(timed_service()))


def test_samples_are_bounded() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        trends = app.main.trends
        model = app.main.model
        for _ in range(TREND_SAMPLES + 30):
            trends.record(model)
        assert len(trends.trends["L1"].steps) == TREND_SAMPLES

    run_app(scenario, FakeSource(timed_service()))


def test_the_sparkline_line_fits_80_columns() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        for step in range(1, 4):
            await push_and_apply(app, pilot, source, timed_delta(1000.0 * step, 0.1 * step, 0.25))
        await pilot.pause()
        row = next(row for row in screen_text(app).splitlines() if "steps/s" in row)
        assert len(row) <= 80
        assert "3.0k/s" in row and "30%" in row and "250 ms" in row

    run_app(scenario, FakeSource(timed_service()), size=(80, 24))


def test_without_figures_the_header_draws_the_lag_alone() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await push_and_apply(app, pilot, source, delta([], tasks=10))
        await pilot.pause()
        text = screen_text(app)
        assert "steps/s" not in text and "busy" not in text
        row = next(row for row in text.splitlines() if row.startswith(" lag "))
        assert "▁" in row and "0.3 ms" in row

    run_app(scenario)


# --- the stalls view -------------------------------------------------------------------------

LIB = "/usr/lib/python3.12/asyncio"


def stall_history() -> list[dict[str, Any]]:
    """crunch blocked the loop 310 ms 30 s ago (in hash_rows, called from crunch); a callback
    is blocking it now, for 4.2 s."""
    loop_frames = [
        {"function": "run_forever", "file": f"{LIB}/base_events.py", "line": 641},
        {"function": "_run_once", "file": f"{LIB}/base_events.py", "line": 1987},
        {"function": "_run", "file": f"{LIB}/events.py", "line": 88},
    ]
    return [
        {
            "started_at": NOW - 30,
            "duration": 0.31,
            "task": "12",
            "task_name": "crunch",
            "callback": None,
            "stack": [
                *loop_frames,
                {"function": "crunch", "file": "app/crunch.py", "line": 21},
                {"function": "hash_rows", "file": "app/crunch.py", "line": 40},
                {"function": "dumps", "file": "/usr/lib/python3.12/json/__init__.py", "line": 231},
            ],
        },
        {
            "started_at": NOW - 4.2,
            "duration": 4.2,
            "task": None,
            "task_name": None,
            "callback": "Server._accept_connection",
            "stack": [*loop_frames, {"function": "accept", "file": "app/net.py", "line": 7}],
            "ongoing": True,
        },
    ]


def with_stalls(stalls: list[dict[str, Any]]) -> Any:
    shot = timed_service()
    shot["loops"] = [timed_loop(loop, stalls=stalls) for loop in shot["loops"]]
    return shot


def test_b_lists_stalls_newest_first_with_the_task_and_the_blocking_line() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.press("b")
        assert app.view == "stalls"
        table = app.query_one(StallTable)
        rows = [table.render_row(key).plain for key in table.keys]
        # THEN the ongoing stall first, marked, said by its callback
        assert rows[0].startswith("⏸") and "4.20 s" in rows[0]
        assert "Server._accept_conn…" in rows[0] and "accept()  net.py:7" in rows[0]
        # and the one that is over: how long, the task, the program's innermost line
        assert "310 ms" in rows[1] and "crunch" in rows[1]
        assert "hash_rows()  crunch.py:40" in rows[1]
        assert "30.0s" in rows[1]  # how long ago
        # and the detail pane shows the stall under the cursor
        await until(pilot, lambda: "still running" in detail_text(app, "summary"), what="it")
        # WHEN Enter on the crunch stall
        await pilot.press("down", "enter")
        await until(pilot, lambda: "crunch" in detail_text(app, "summary"), what="the stall")
        body = detail_text(app, "body")
        # THEN its whole sampled stack, the blocking line marked
        for function in ("run_forever()", "_run_once()", "crunch()", "dumps()"):
            assert function in body
        assert "(▶ the blocking line)" in body
        assert "▶ hash_rows()  app/crunch.py:40\n" in body
        assert "blocked the loop 310 ms" in detail_text(app, "summary")
        # AND the link goes to the task
        assert "→ the task crunch" in link_prompts(app)
        links = app.detail.query_one("#detail-links", OptionList)
        links.focus()
        links.highlighted = 0
        await pilot.press("enter")
        await until(pilot, lambda: app.selected == "12", what="the jump to crunch")
        assert app.view == "tree"
        assert "48,210 steps" in detail_text(app, "summary")

    run_app(scenario, FakeSource(with_stalls(stall_history())))


def test_a_new_stall_comes_first_and_the_cursor_stays_on_its_stall() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.press("b")
        table = app.query_one(StallTable)
        first = table.cursor_key
        stalls = stall_history()
        stalls[1]["ongoing"] = False
        stalls.append({**stalls[0], "started_at": NOW - 1, "duration": 0.5})
        update = delta([], tasks=11, loops=[timed_loop(wire_loop(11), stalls=stalls)])
        await push_and_apply(app, pilot, source, update)
        assert len(table.keys) == 3
        assert "500 ms" in table.render_row(table.keys[0]).plain
        assert table.cursor_key == first
        assert not table.render_row(first or "").plain.startswith("⏸")  # over now

    run_app(scenario, FakeSource(with_stalls(stall_history())))


def test_no_stall_says_none_longer_than_the_threshold() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.press("b")
        await pilot.pause()
        assert "no step longer than the 100 ms stall threshold" in screen_text(app)

    run_app(scenario, FakeSource(timed_service()))


def test_without_figures_the_stalls_view_says_there_is_no_history() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await pilot.press("b")
        await pilot.pause()
        assert "no stall history: this source does not time the loop's steps" in screen_text(app)
        await pilot.press("t")
        assert app.view == "tree"

    run_app(scenario)


# --- warnings --------------------------------------------------------------------------------


def tree_label(app: TaskscopeApp, task_id: str) -> str:
    tree = app.task_tree
    node = tree.node_for(task_id)
    assert node is not None, f"task {task_id} has no node"
    return tree.render_label(node, tree.rich_style, tree.rich_style).plain


def test_a_deadlock_is_marked_counted_filtered_and_said_in_the_detail_pane() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        # THEN after the first look both tasks carry the warning marker, and main does not
        await until(pilot, lambda: app.main.warnings.texts, what="the first look")
        await pilot.pause()
        assert "⚠" in tree_label(app, "21") and "⚠" in tree_label(app, "22")
        assert "⚠" not in tree_label(app, "1")
        # and the header counts and names them
        text = screen_text(app)
        assert "⚠ 1 warning: lock deadlock (transfer-a, transfer-b)" in text
        # and the detail pane says it in words
        assert app.jump_to("21")
        await until(pilot, lambda: "lock deadlock" in detail_text(app, "summary"), what="it")
        assert "⚠ lock deadlock (below)" in detail_text(app, "summary")
        assert "⚠ lock deadlock: transfer-a" in detail_text(app, "body")
        # WHEN ! filters to the tasks with warnings, in the list
        await pilot.press("l", "exclamation_mark")
        table = app.query_one(TaskTable)
        assert sorted(table.keys) == ["21", "22"]
        assert all(table.render_row(key).plain.startswith("⚠") for key in table.keys)
        await until(pilot, lambda: "only tasks with warnings" in screen_text(app), what="notice")
        # and ! again shows all
        await pilot.press("exclamation_mark")
        assert "1" in table.keys
        # and in the grouped view the group of both transfers says so
        await pilot.press("g")
        await pilot.pause()
        assert "⚠ 2 with warnings" in screen_text(app)

    run_app(scenario, FakeSource(snapshot(deadlock(), cycles=[])))


def test_a_failure_nobody_retrieved_is_marked_in_the_history_too() -> None:
    tasks, failed = with_a_traceback()
    failed["exception_retrieved"] = False  # type: ignore[typeddict-unknown-key]

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await until(pilot, lambda: app.main.warnings.texts, what="the first look")
        await pilot.press("h")
        table = app.query_one(HistoryTable)
        assert table.render_row("33").plain.startswith("⚠")
        assert not table.render_row("34").plain.startswith("⚠")
        assert app.jump_to("33")
        await until(pilot, lambda: "nobody awaited it" in detail_text(app, "body"), what="it")
        assert "⚠ exception never retrieved (below)" in detail_text(app, "summary")
        assert "ValueError: bad row" in detail_text(app, "body")

    run_app(scenario, FakeSource(snapshot(tasks, cycles=[])))


def test_warnings_follow_the_updates() -> None:
    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        await until(pilot, lambda: app.main.warnings.texts, what="the first look")
        # WHEN transfer-b gives its lock up and waits on a sleep: no deadlock any more
        freed = [
            transfer("21", "transfer-a", awaiting("sleep", seconds_left=1.0)),
            transfer("22", "transfer-b", lock_held_by("a", "21")),
        ]
        source.push(delta(freed, cycles=[], tasks=3))
        # THEN within a look or two the markers and the count go
        await until(pilot, lambda: not app.main.warnings.texts, within=20, what="no warning")
        await pilot.pause()
        assert "⚠" not in tree_label(app, "21") and "warning" not in screen_text(app)

    run_app(scenario, FakeSource(snapshot(deadlock(), cycles=[])), tick_seconds=0.2)


def test_locks_of_one_name_are_lettered_and_a_filter_by_letter_finds_one() -> None:
    # GIVEN worker(a, b) and worker(b, a): each waits on the lock it calls `lock_b`
    def waits_on(object_id: str, holder: str) -> WireAwaiting:
        waiting = lock_held_by("lock_b", holder)
        waiting["object"].update(id=object_id, type="Lock")  # type: ignore[typeddict-item]
        return waiting

    tasks = [
        wire_task("1", "main", "main", awaiting=awaiting("gather", ["21", "22"]), age=60),
        transfer("21", "transfer-a", waits_on("0xb", "22")),
        transfer("22", "transfer-b", waits_on("0xa", "21")),
    ]

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        # THEN each row names its lock by the letter the warning uses
        await until(pilot, lambda: app.main.warnings.texts, what="the first look")
        assert "on lock_b (Lock B, locked" in tree_label(app, "21")
        assert "on lock_b (Lock A, locked" in tree_label(app, "22")
        assert app.jump_to("21")
        said = "transfer-a holds Lock A and waits for Lock B"
        await until(pilot, lambda: said in detail_text(app, "body"), what="the warning")
        # WHEN the user filters by the letter the row shows, and cancels what it finds
        await pilot.press("slash", *"Lock B", "enter")
        await until(pilot, lambda: app.task_tree.task_ids == {"1", "21"}, what="the filter")
        assert app.selected == "21"
        await pilot.press("c")
        await pilot.pause()
        await pilot.press("y")
        # THEN the task waiting on Lock B is the one cancelled
        await until(pilot, lambda: source.cancelled == ["21"], what="the cancel")

    run_app(scenario, FakeSource(snapshot(tasks, cycles=[])))
