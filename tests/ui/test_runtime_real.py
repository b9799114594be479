"""The dashboard's runtime figures under Pilot on a real program (tests/targets/runtime.py
with its steps timed): "which task eats my loop" is answered by the list sorted by busy, the
header draws the loop's figures over successive updates, and the detail pane has the task's
steps and busy time. Also, on real programs: tasks older than the agent in natural name
order, a header with more loops than it has rows for, what cancelling a trio task does, and
where a trio task was spawned and how finished trio tasks ended (a failed one's traceback)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from taskscope.ui.app import TaskscopeApp
from taskscope.ui.cancel_dialog import CancelDialog
from taskscope.ui.source import AgentSource
from taskscope.ui.task_table import TaskTable
from tests.helpers import notes, wait_for
from tests.ui.harness import SIZE, screen_text, until


def test_the_list_sorted_by_busy_puts_the_cpu_burner_first(start: Any) -> None:
    # GIVEN a program whose `burner` burns 3 ms of CPU in each step, the others only wait
    target = start("runtime.py", "0.3", env={"TASKSCOPE_TIME_STEPS": "1"}).wait_ready()
    app = TaskscopeApp(AgentSource(target.pid), clock=time.time, interval=0.2)

    def busy_of(name: str) -> float:
        task = next((t for t in app.main.model.tasks.values() if t.name == name), None)
        return (task.busy_s or 0.0) if task is not None else 0.0

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.updates_applied >= 1, what="the first snapshot")
            await until(pilot, lambda: busy_of("burner") > 0.05, within=20, what="busy time")
            # WHEN the list is sorted by busy time
            await pilot.press("l", "s")
            assert app.options.sort == "busy"
            table = app.query_one(TaskTable)
            # THEN the burner comes first, with its figures in the row
            first = app.main.model.tasks[table.keys[0]]
            assert first.name == "burner"
            row = table.render_row(first.id).plain
            assert f"{first.steps:,}" in row
            # AND the header draws the loop's steps per second over the updates
            await until(
                pilot,
                lambda: len(next(iter(app.main.trends.trends.values())).steps) >= 3,
                what="three samples",
            )
            await pilot.pause()
            assert any(
                "steps/s" in line and "/s " in line for line in screen_text(app).splitlines()
            )
            # AND the detail pane has its steps and busy time
            app.jump_to(first.id)
            await until(
                pilot,
                lambda: "steps · busy" in str(app.detail.query_one("#detail-summary").render()),
                what="the figures in the detail pane",
            )
            app.exit()

    asyncio.run(main())


def test_tasks_older_than_the_agent_are_listed_by_name_in_natural_order(start: Any) -> None:
    # GIVEN a program whose twelve workers were made, in a scrambled order, before the agent
    # came: the agent saw no creation time, so "oldest first" cannot tell them apart
    target = start("older_than_agent.py", agent=False).wait_ready()
    app = TaskscopeApp(AgentSource(target.pid), clock=time.time, interval=0.2)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.updates_applied >= 1, what="the first snapshot")
            # WHEN the list is shown, in its default order
            await pilot.press("l")
            assert app.options.sort == "age"
            table = app.query_one(TaskTable)
            await until(pilot, lambda: len(table.keys) >= 13, what="the workers listed")
            names = [app.main.model.tasks[key].name for key in table.keys]
            workers = [name for name in names if name.startswith("worker-")]
            # THEN they come in their names' natural order (worker-2 before worker-10), not
            # in the order the agent happened to meet them
            assert workers == [f"worker-{n}" for n in range(1, 13)], names
            app.exit()

    asyncio.run(main())


def test_with_many_loops_the_header_keeps_its_status_line_and_shows_the_blocked_one(
    start: Any,
) -> None:
    # GIVEN a program with ten event loops, more than the header has rows for
    target = start("many_loops.py").wait_ready()
    app = TaskscopeApp(AgentSource(target.pid), clock=time.time, interval=0.2)

    def header() -> str:
        return "\n".join(screen_text(app).splitlines()[:6])

    def all_loops_accounted_for(text: str) -> bool:
        # As many loop lines as fit (the process line may take two rows, as its CPU figure
        # grows), and the others summed up: ten in all.
        summary = re.search(r"\+ (\d+) more loops?: ", text)
        shown = len(re.findall(r"^ ?loop ", text, re.MULTILINE))
        return summary is not None and shown + int(summary.group(1)) == 10

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: len(app.main.model.loops) == 10, what="the ten loops")
            # THEN the loops that do not fit are summed up in one line, and the status line
            # (how old the data is) is still there
            # (not "all running": on a loaded machine a step may wait past the stall threshold)
            await until(pilot, lambda: all_loops_accounted_for(header()), what="the summary")
            assert "data " in header() and "s old" in header()
            assert "loop MainThread: running" in header()
            # AND pausing still says so
            await pilot.press("space")
            await until(pilot, lambda: "PAUSED" in header(), what="the paused mark")
            await pilot.press("space")
            # WHEN the ninth loop blocks, THEN it is among the loops shown, first
            target.file(f"block-{target.pid}").write_text("4")
            await until(
                pilot,
                lambda: "loop side-7: ⏸ BLOCKED for" in header(),
                within=10,
                what="the blocked loop in the header",
            )
            lines = header().splitlines()
            assert "side-7" in lines[1], lines
            assert all_loops_accounted_for("\n".join(lines)), lines
            app.exit()

    asyncio.run(main())


def test_cancelling_a_trio_task_says_what_trio_does(start: Any) -> None:
    # GIVEN a trio program where `guarded` waits inside a cancel scope of its own
    pytest.importorskip("trio", reason="this test needs trio (pip install trio)")
    target = start("trio_app.py").wait_ready()
    app = TaskscopeApp(AgentSource(target.pid), clock=time.time, interval=0.2)

    def guarded_id() -> str | None:
        return next((t.id for t in app.main.model.tasks.values() if t.name == "guarded"), None)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: guarded_id() is not None, what="the trio tasks")
            task_id = guarded_id()
            assert task_id is not None and app.jump_to(task_id)
            # WHEN the user asks to cancel it, THEN the question says what a cancel does there
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, CancelDialog), what="the dialog")
            dialog = app.screen
            assert isinstance(dialog, CancelDialog)
            assert dialog.question.startswith("Cancel guarded (guarded()")
            assert dialog.detail.startswith(
                "trio: this cancels the task's own cancel scope, if it has one"
            )
            await pilot.press("y")
            # THEN the scope is cancelled in the program, and the task goes on after it
            await until(pilot, lambda: "guarded went on" in notes(target), within=10, what="it")
            # AND once the grace is over the pane says so, not that it ignored the cancel
            await until(
                pilot,
                lambda: "scope cancelled" in app.cancels[0].results.values(),
                within=15,
                what="the outcome",
            )
            status = app.detail.cancel_status[task_id]
            assert status.startswith("⊘ its cancel scope was cancelled"), status
            app.exit()

    asyncio.run(main())


def test_a_trio_task_shows_where_it_was_spawned_and_finished_ones_how_they_ended(
    start: Any,
) -> None:
    # GIVEN a trio program with the agent, whose run it instrumented, and a parent task that
    # spawned children (tests/targets/trio_family.py)
    pytest.importorskip("trio", reason="this test needs trio (pip install trio)")
    from tests.test_trio_creators import line_of, spawn_round

    target = start("trio_family.py").wait_ready()
    wait_for(lambda: "instrument on" in notes(target), what="the agent's instrument")
    spawn_round(target, 1)
    app = TaskscopeApp(AgentSource(target.pid), clock=time.time, interval=0.2)

    def task_named(name: str) -> Any:
        return next((t for t in app.main.model.tasks.values() if t.name == name), None)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: task_named("raiser-1") is not None, what="the tasks")
            # THEN the dashboard knows the finished ones and how they ended
            raiser = task_named("raiser-1")
            assert raiser.state == "failed" and raiser.exception == "ValueError('boom')"

            def pane() -> str:
                return str(app.detail.query_one("#detail-body").render())

            # AND the failed one's pane has its traceback, chained exception included
            assert app.jump_to(raiser.id)
            await until(pilot, lambda: "traceback" in pane(), what="the traceback")
            body = pane()
            assert body.count('trio_family.py", line ') == 4, body
            for function in ("raiser", "check_setting", "lookup_setting"):
                assert f", in {function}\n" in body, body
            assert "KeyError: 'boom'\n" in body and "direct cause" in body, body
            assert "ValueError: boom\n" in body, body
            # WHEN the user goes to a child still running
            lingerer = task_named("lingerer-1")
            assert app.jump_to(lingerer.id)
            # THEN its pane says where it was created: the parent's start_soon line
            spawned_at = f"trio_family.py:{line_of('(lingerer,')}"
            await until(pilot, lambda: "created from" in pane(), what="the creation site")
            created = pane().split("created from")[1]
            assert "parent" in created and spawned_at in created, created
            app.exit()

    asyncio.run(main())
