"""The cancel flow driven without the app: questions, the "this ends the program" warning, and
every way a request ends (took effect, finished otherwise, gone, failed, timed out)."""

from __future__ import annotations

import dataclasses

from taskscope.model import TaskInfo, TaskModel
from taskscope.ui.cancel_flow import CancelFlow, CancelQuestion, ask, ends_program
from tests.ui.fakes import NOW, awaiting, delta, service_tasks, snapshot, wire_loop, wire_task


def model_of() -> TaskModel:
    return TaskModel.from_snapshot(snapshot(service_tasks()))  # the UX sketch's service


def words(task: TaskInfo) -> str:
    return f"{task.state} (words)"


def question(model: TaskModel, task_id: str, *, subtree: bool = False) -> CancelQuestion:
    return ask(model, model.tasks[task_id], subtree=subtree, pid=4242, state_words=words)


def finish(model: TaskModel, task_id: str, state: str) -> None:
    """The next delta shows `task_id` ended in `state`."""
    task = model.tasks[task_id]
    record = wire_task(task_id, task.name, task.coro, state=state, finished_ago=0.1)
    model.apply_delta(delta([record]))


def test_a_question_names_the_task_and_its_state() -> None:
    asked = question(model_of(), "7")
    assert asked.question == "Cancel fetch-7 (fetch(), pending (words))?"
    assert asked.ids == ["7"]
    assert asked.detail == ""
    assert asked.warning == ""


def test_a_subtree_question_counts_the_unfinished_tasks_and_names_the_others() -> None:
    asked = question(model_of(), "2", subtree=True)
    assert asked.question.startswith("Cancel api-server and everything under it: 2 tasks")
    assert asked.ids == ["2", "5"]
    assert asked.detail == "also: conn-51234"


def test_the_main_task_warns_that_it_ends_the_program() -> None:
    model = model_of()
    warning = ends_program(model, model.tasks["1"], "main", 4242)
    assert warning == (
        "⚠ This ends the program (process 4242): main is the main task, the one asyncio.run drives."
    )


def test_the_main_task_of_another_thread_ends_that_loop_only() -> None:
    model = model_of()
    model.loops["L1"] = dataclasses.replace(model.loops["L1"], thread_name="worker-thread")
    assert "the event loop of thread worker-thread" in question(model, "1").warning


def test_a_task_every_other_runs_under_warns_it_likely_ends_the_program() -> None:
    tasks = [
        wire_task("1", "main", "main", awaiting=awaiting("task", ["2"])),
        wire_task("2", "app", "app", parent="1", awaited_by=["1"]),
        wire_task("3", "child", "child", parent="2"),
    ]
    model = TaskModel.from_snapshot(snapshot(tasks, cycles=[]))
    # asyncio.run's task unknown: whether every other task runs under it decides
    model.loops["L1"] = dataclasses.replace(model.loops["L1"], main_task=None)
    assert question(model, "1").warning.startswith("⚠ This will likely end the program")
    assert question(model, "3").warning == ""


def _gathering(returns: bool | None) -> TaskModel:
    """main (asyncio.run's) awaits `server` through gather; `server` awaits `worker-1` and
    `worker-2` through gather; `idle` runs beside them. `returns`: the gathers'
    `return_exceptions` (None: no pending child told the agent)."""
    facts: dict[str, object] = {"count": 2, "done": 0}
    if returns is not None:
        facts["return_exceptions"] = returns
    tasks = [
        wire_task("1", "main", "main", awaiting=awaiting("gather", ["2", "5"], object=facts)),
        wire_task("2", "server", "serve", awaiting=awaiting("gather", ["3", "4"], object=facts)),
        wire_task("3", "worker-1", "work", awaited_by=["2"]),
        wire_task("4", "worker-2", "work", awaited_by=["2"]),
        wire_task("5", "idle", "idle", awaited_by=["1"]),
    ]
    tasks[1]["awaited_by"] = ["1"]
    return TaskModel.from_snapshot(snapshot(tasks, cycles=[]))


def test_a_child_whose_gather_passes_the_cancel_up_to_the_main_task_warns_it_ends_the_program() -> (
    None
):
    model = _gathering(returns=False)
    assert question(model, "3").warning == (
        "⚠ This will likely end the program (process 4242): gather passes its cancel on to "
        "server, then main, and main is the main task, the one asyncio.run drives."
    )


def test_a_gather_that_passes_the_cancel_to_a_task_that_is_not_the_main_one_names_it() -> None:
    model = _gathering(returns=False)
    model.loops["L1"] = dataclasses.replace(model.loops["L1"], main_task=None)
    # (main is then no longer known for asyncio.run's; idle does not run under worker-1)
    assert question(model, "3").warning == (
        "⚠ Gather passes its cancel on to server, then main: they get a CancelledError too."
    )


def test_a_gather_with_return_exceptions_or_unknown_passes_nothing_on() -> None:
    for returns in (True, None):
        model = _gathering(returns=returns)
        assert question(model, "3").warning == "", returns
        assert question(model, "1").warning.startswith("⚠ This ends the program")


def test_requested_then_cancelled_is_reported_as_taking_effect() -> None:
    model, flow = model_of(), CancelFlow(grace=3.0)
    request = flow.confirmed(question(model, "7"))
    assert request.stage == "sent"
    progress = flow.answered(request, {"7": "requested"}, model, NOW)
    assert request.stage == "answered"
    assert progress.status == {"7": "cancel requested…"}
    assert progress.notices == []
    # WHEN the next update shows it cancelled THEN the report says so, once
    finish(model, "7", "cancelled")
    progress = flow.check(model, NOW + 0.5)
    assert request.stage == "reported"
    assert request.results == {"7": "cancelled"}
    assert progress.status == {"7": "⊘ cancelled, as you asked"}
    assert [(n.title, n.text) for n in progress.notices] == [("Cancelled", "fetch-7: cancelled")]
    assert flow.check(model, NOW + 1).notices == []


def test_a_cancel_answered_after_the_updates_stopped_is_said_unseen_too() -> None:
    model, flow = model_of(), CancelFlow(grace=3.0)
    request = flow.confirmed(question(model, "7"))
    # WHEN the updates stop while the request is on its way (the process exited)
    assert flow.updates_stopped(model).status == {}
    # THEN its answer, when it comes, is reported at once: no update will show the outcome
    progress = flow.answered(request, {"7": "requested"}, model, NOW)
    assert request.stage == "reported"
    assert progress.status == {
        "7": "? the updates stopped before the cancel's outcome could be seen"
    }
    assert progress.notices == []
    # and one whose last update showed it cancelled is reported as such
    other = flow.confirmed(question(model, "8"))
    finish(model, "8", "cancelled")
    assert flow.answered(other, {"8": "requested"}, model, NOW).status == {
        "8": "⊘ cancelled, as you asked"
    }


def test_a_task_that_caught_the_delivered_cancel_is_said_not_cancelled() -> None:
    model, flow = model_of(), CancelFlow(grace=3.0)
    request = flow.confirmed(question(model, "7"))
    # GIVEN a cancel the agent delivered (CancelledError is thrown into the task)
    flow.answered(request, {"7": "requested"}, model, NOW)
    # WHEN the next update shows it done (a web server's request task catches it, returns)
    finish(model, "7", "done")
    progress = flow.check(model, NOW + 0.5)
    # THEN the pane and the notice say it was not cancelled, and why, not a bare state
    caught = (
        "it ended done, not cancelled: the CancelledError was caught (by its code, or by the "
        "anyio cancel scope it ran in)"
    )
    assert progress.status == {"7": f"✓ {caught}"}
    assert [(n.title, n.text) for n in progress.notices] == [
        ("Not cancelled", f"fetch-7: {caught}")
    ]
    # AND one that failed instead raised another exception while being cancelled
    other = flow.confirmed(question(model, "8"))
    flow.answered(other, {"8": "requested"}, model, NOW)
    finish(model, "8", "failed")
    assert flow.check(model, NOW + 0.5).status == {
        "8": "✗ it raised another exception while being cancelled"
    }


def test_a_task_that_ended_while_its_cancel_waited_for_a_blocked_loop_returned_first() -> None:
    model, flow = model_of(), CancelFlow(grace=3.0)
    request = flow.confirmed(question(model, "7"))
    # GIVEN a cancel waiting for the task's blocked loop (nothing delivered yet)
    flow.answered(request, {"7": "queued"}, model, NOW)
    # WHEN the next update shows it done: it ended before the cancel reached it
    finish(model, "7", "done")
    progress = flow.check(model, NOW + 0.5)
    assert progress.status == {"7": "✓ it returned before the cancel reached it"}
    assert [(n.title, n.text) for n in progress.notices] == [
        ("Not cancelled", "fetch-7: it returned before the cancel reached it")
    ]


def test_a_task_still_running_after_the_grace_period_timed_out() -> None:
    model, flow = model_of(), CancelFlow(grace=3.0)
    request = flow.confirmed(question(model, "9"))
    flow.answered(request, {"9": "requested"}, model, NOW)
    assert flow.check(model, NOW + 2.9).notices == []
    progress = flow.check(model, NOW + 3.0)
    assert request.results == {"9": "still running"}
    assert "ignored the cancellation" in progress.status["9"]
    (notice,) = progress.notices
    assert (notice.title, notice.severity) == ("Still running", "warning")
    assert notice.text.startswith("stubborn is still running 3 s after the cancel")


def test_answers_that_end_a_request_at_once() -> None:
    model, flow = model_of(), CancelFlow()
    request = flow.confirmed(question(model, "2", subtree=True))
    progress = flow.answered(request, {"5": "already_finished", "2": "no_such_task"}, model, NOW)
    assert request.results == {"5": "already finished", "2": "gone"}
    assert request.stage == "reported"
    (notice,) = progress.notices
    assert notice.text == "api-server and its subtree: 1 already finished, 1 gone"
    assert notice.severity == "information"


def test_a_failed_request_says_so_and_is_reported() -> None:
    model, flow = model_of(), CancelFlow()
    request = flow.confirmed(question(model, "7"))
    progress = flow.answered(request, {"7": "error: the agent is busy"}, model, NOW)
    (failed,) = progress.notices  # one notice, not a second one on its report
    assert (failed.title, failed.severity, failed.text) == (
        "Cancel failed",
        "error",
        "fetch-7: the agent is busy",
    )
    assert request.stage == "reported"
    assert progress.status == {"7": "✗ the agent is busy"}


def test_a_subtree_names_the_tasks_that_ignored_it() -> None:
    flow = CancelFlow(grace=1.0)
    tasks = [*service_tasks(), wire_task("10", "child-of-stubborn", "child", parent="9")]
    model = TaskModel.from_snapshot(snapshot(tasks))
    request = flow.confirmed(question(model, "9", subtree=True))
    assert request.ids == ["9", "10"]
    flow.answered(request, {"10": "requested", "9": "requested"}, model, NOW)
    finish(model, "10", "cancelled")
    progress = flow.check(model, NOW + 1.0)
    (notice,) = progress.notices
    assert notice.text == "stubborn and its subtree: 1 cancelled, 1 still running (stubborn)"
    assert notice.severity == "warning"


def test_a_task_that_vanished_or_finished_otherwise() -> None:
    model, flow = model_of(), CancelFlow()
    request = flow.confirmed(question(model, "1", subtree=True))
    answers = dict.fromkeys(request.ids, "requested")
    flow.answered(request, answers, model, NOW)
    model.apply_delta(delta([], removed=["5"]))
    finish(model, "3", "done")
    flow.check(model, NOW + 0.1)
    assert request.results == {"5": "gone", "3": "caught"}
    assert request.stage == "answered"


def test_a_loop_fact_drives_the_warning_not_the_task_name() -> None:
    model = TaskModel.from_snapshot(
        {**snapshot(service_tasks()), "loops": [wire_loop(10, main_task="3")]}
    )
    assert "dispatcher is the main task" in question(model, "3").warning
    assert "main task" not in question(model, "1").warning
