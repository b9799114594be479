"""The dashboard's cancel flow as a small state machine, apart from the screen (no Textual here).

A cancellation goes: asked (the question and its "this ends the program" warning are shown),
sent (the user said yes; the agent is asked for each task, innermost first), answered (the
agent said requested, already finished, no such task, or a request failed), then reported once
every task has a result: it took effect (cancelled, or finished otherwise) or it timed out (the
task still runs `grace` seconds after, because it caught CancelledError or is cleaning up).

The screen shows what `CancelFlow` returns: `Notice`s to pop up and per-task status lines for
the detail pane. Tests drive it with a `TaskModel` and a clock, without the app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from taskscope.model import TaskInfo, TaskModel
from taskscope.report import safe_text
from taskscope.words import coro_label

#: How long a cancelled task may keep running before we say it ignored the cancellation.
CANCEL_GRACE = 3.0

Stage = Literal["sent", "answered", "reported"]
Severity = Literal["information", "warning", "error"]

#: The agent's answers to one cancel request (anything else is "error: ...").
REQUESTED = "requested"
ALREADY_FINISHED = "already_finished"
NO_SUCH_TASK = "no_such_task"
#: The task's loop is blocked: the agent delivers the cancel when the loop runs again.
QUEUED = "queued"
#: What a task whose cancel was requested became, when it is not a finished state.
GONE = "gone"
STILL_RUNNING = "still running"
#: A trio task still running after its own cancel scope was cancelled: what trio does.
SCOPE_CANCELLED = "scope cancelled"
#: The updates stopped (the process exited, or the connection broke) before the outcome.
UNSEEN = "unseen"
#: A task the cancel was delivered to (the agent said `requested`: CancelledError is thrown
#: into it at its next step) that then ended done, or failed: it caught the CancelledError.
CAUGHT = "caught"
FAILED_WHILE_CANCELLED = "failed while cancelled"
#: The detail pane's line on how a cancel the user asked for came out, by result.
_OUTCOME_STATUS = {
    "cancelled": "⊘ cancelled, as you asked",
    "done": "✓ it returned before the cancel reached it",
    "failed": "✗ it failed before the cancel reached it",
    CAUGHT: "✓ it ended done, not cancelled: the CancelledError was caught (by its code, or "
    "by the anyio cancel scope it ran in)",
    FAILED_WHILE_CANCELLED: "✗ it raised another exception while being cancelled",
    GONE: "it ended, and left the history, before the outcome could be seen",
    STILL_RUNNING: "! still running after the cancel: it ignored the cancellation or is still "
    "cleaning up",
    SCOPE_CANCELLED: "⊘ its cancel scope was cancelled: trio runs the task on after that scope",
    UNSEEN: "? the updates stopped before the cancel's outcome could be seen",
}
#: What cancelling a trio task means (the agent cancels the task's own cancel scope, and
#: refuses when the task has none: only the agent, on the run's thread, can tell).
TRIO_CANCEL = (
    "trio: this cancels the task's own cancel scope, if it has one (and the tasks of the "
    "nurseries it opened); the task goes on after that scope. A task whose innermost scope "
    "is shared with other tasks has none: the agent then refuses, and says so"
)


@dataclass(frozen=True, slots=True)
class CancelQuestion:
    """What the user is asked before anything is sent: the stage "asked"."""

    root: str
    name: str
    ids: list[str]
    question: str
    detail: str
    warning: str


@dataclass(frozen=True, slots=True)
class Notice:
    """A notification for the user."""

    text: str
    title: str = ""
    severity: Severity = "information"
    #: Seconds on screen; None: the app's default.
    timeout: float | None = None


@dataclass(slots=True)
class CancelRequest:
    """One confirmed cancellation (a task, or a subtree) and what became of each task."""

    root: str
    name: str
    ids: list[str]
    #: The agent's answer per task id, once it answered them all.
    outcomes: dict[str, str] = field(default_factory=dict)
    #: What became of each task: cancelled, a finished state, gone, still running, an error.
    results: dict[str, str] = field(default_factory=dict)
    deadline: float = 0.0
    reported: bool = False

    @property
    def stage(self) -> Stage:
        if self.reported:
            return "reported"
        return "answered" if self.outcomes else "sent"


def ask(
    model: TaskModel,
    task: TaskInfo,
    *,
    subtree: bool,
    pid: int,
    state_words: Callable[[TaskInfo], str],
) -> CancelQuestion:
    """The question for cancelling `task` (and, for `subtree`, every unfinished task under it)."""
    name = safe_text(task.name, 40)
    what = f"{safe_text(coro_label(task.coro, task.request), 60)}, {state_words(task)}"
    if subtree:
        ids = [task_id for task_id in model.subtree(task.id) if not model.tasks[task_id].finished]
        count = len(ids)
        question = (
            f"Cancel {name} and everything under it: {count} "
            f"task{'s' if count != 1 else ''} ({what})?"
        )
        names = [safe_text(model.tasks[task_id].name, 30) for task_id in ids[1:9]]
        detail = ("also: " + ", ".join(names) + (" …" if count > 9 else "")) if names else ""
    else:
        ids = [task.id]
        question = f"Cancel {name} ({what})?"
        detail = ""
    if runs_on_trio(model, task):
        detail = f"{detail}\n{TRIO_CANCEL}" if detail else TRIO_CANCEL
    warning = ends_program(model, task, name, pid)
    return CancelQuestion(task.id, name, ids, question, detail, warning)


def refused(error: str | None) -> str:
    """The outcome of a cancel the agent could not make (its answer `failed`, with why), as
    `CancelFlow.answered` takes it: an error, never the task state "failed"."""
    return f"error: could not cancel it: {error or 'the agent gave no reason'}"


def _finished_result(state: str, outcome: str | None) -> str:
    """How a task the user asked to cancel came out, when it ended otherwise than cancelled:
    with the cancel delivered (`requested`), a task cannot end without the CancelledError
    thrown into it; with the cancel still waiting for a blocked loop (`queued`), it may have
    ended before the cancel reached it (the agent then delivers nothing)."""
    if outcome == REQUESTED:
        return CAUGHT if state == "done" else FAILED_WHILE_CANCELLED
    return state


def runs_on_trio(model: TaskModel, task: TaskInfo) -> bool:
    loop = model.loops.get(task.loop)
    return loop is not None and loop.type == "trio"


def ends_program(model: TaskModel, task: TaskInfo, name: str, pid: int) -> str:
    """A plain warning when cancelling `task` ends the program (or its thread's loop):
    it is the task `asyncio.run` drives, or every other task runs under it, or gather
    passes the cancel on to such a task. When gather passes it on to tasks that do not,
    the warning names them. "" otherwise."""
    reached = passes_cancel_to(model, task)
    through = ""
    if reached:
        names = ", then ".join(safe_text(other.name, 30) for other in reached[:3])
        through = f"gather passes its cancel on to {names}"
    for candidate in (task, *reached):
        for loop in model.loops.values():
            if loop.main_task != candidate.id:
                continue
            if loop.thread_name in (None, "MainThread"):
                ends = f"the program (process {pid})"
            else:
                ends = f"the event loop of thread {safe_text(loop.thread_name, 30)}"
            if candidate is task:
                return f"⚠ This ends {ends}: {name} is the main task, the one asyncio.run drives."
            main = safe_text(candidate.name, 30)
            return (
                f"⚠ This will likely end {ends}: {through}, and {main} is the main task, "
                "the one asyncio.run drives."
            )
    others = {other.id for other in model.pending()} - {task.id}
    if others and others <= set(model.subtree(task.id)):
        return (
            f"⚠ This will likely end the program (process {pid}): every other "
            f"task runs under {name}."
        )
    if reached:
        return f"⚠ {through[0].upper()}{through[1:]}: they get a CancelledError too."
    return ""


def passes_cancel_to(model: TaskModel, task: TaskInfo) -> list[TaskInfo]:
    """The tasks a cancel of `task` reaches besides, innermost first: the task awaiting it
    through a gather called without `return_exceptions=True` gets the CancelledError from
    the gather, and so on up."""
    reached: list[TaskInfo] = []
    current = task
    while True:
        waiter = next(
            (
                other
                for other in (model.tasks.get(waiter_id) for waiter_id in current.awaited_by)
                if other is not None and not other.finished and _gather_passes(other, current)
            ),
            None,
        )
        if waiter is None or waiter is task or waiter in reached:
            return reached
        reached.append(waiter)
        current = waiter


def _gather_passes(waiter: TaskInfo, child: TaskInfo) -> bool:
    awaiting = waiter.awaiting
    return (
        awaiting is not None
        and awaiting.kind == "gather"
        and awaiting.facts.get("return_exceptions") is False
        and child.id in awaiting.tasks
    )


@dataclass(slots=True)
class Progress:
    """What changed for the user after a step: status lines per task id, and notices."""

    status: dict[str, str] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)

    def merge(self, other: Progress) -> None:
        self.status.update(other.status)
        self.notices.extend(other.notices)


class CancelFlow:
    """Every cancellation of one dashboard session, from confirmation to report."""

    def __init__(self, grace: float = CANCEL_GRACE) -> None:
        self.grace = grace
        self.requests: list[CancelRequest] = []
        #: Whether the updates stopped (`updates_stopped`): no later one will show an outcome.
        self.stopped = False

    def confirmed(self, question: CancelQuestion) -> CancelRequest:
        """The user said yes: the request is to be sent (the stage "sent")."""
        request = CancelRequest(root=question.root, name=question.name, ids=list(question.ids))
        self.requests.append(request)
        return request

    def answered(
        self, request: CancelRequest, outcomes: dict[str, str], model: TaskModel, now: float
    ) -> Progress:
        """The agent answered every task of `request`: start the grace period."""
        progress = Progress()
        request.deadline = now + self.grace
        request.outcomes = outcomes
        for task_id, outcome in outcomes.items():
            if outcome == REQUESTED:
                progress.status[task_id] = "cancel requested…"
            elif outcome == QUEUED:
                progress.status[task_id] = "cancel waiting for its loop, which is blocked…"
            elif outcome == ALREADY_FINISHED:
                request.results[task_id] = "already finished"
            elif outcome == NO_SUCH_TASK:
                request.results[task_id] = GONE
            else:
                request.results[task_id] = outcome
        errors = [outcome for outcome in outcomes.values() if outcome.startswith("error")]
        if errors:
            progress.notices.append(
                Notice(
                    safe_text(f"{request.name}: {errors[0].removeprefix('error: ')}"),
                    title="Cancel failed",
                    severity="error",
                )
            )
        progress.merge(self.check(model, now))
        if self.stopped:  # answered after the last update: nothing will show the outcome
            progress.merge(self.updates_stopped(model))
        return progress

    def check(self, model: TaskModel, now: float) -> Progress:
        """Turn each answered cancellation into results from the model (cancelled, finished
        otherwise, gone, or still running after the grace period), and report the complete."""
        progress = Progress()
        for request in self.requests:
            if request.reported or not request.outcomes:
                continue
            for task_id in request.ids:
                if task_id in request.results:
                    continue
                task = model.tasks.get(task_id)
                if task is None:
                    request.results[task_id] = GONE
                elif task.state == "cancelled":
                    request.results[task_id] = "cancelled"
                elif task.finished:
                    request.results[task_id] = _finished_result(
                        task.state, request.outcomes.get(task_id)
                    )
                elif _loop_blocked(model, task):
                    # Nothing reaches a task while its loop is blocked: the grace period
                    # starts again once the loop runs.
                    request.deadline = max(request.deadline, now + self.grace)
                elif now >= request.deadline:
                    trio = runs_on_trio(model, task)
                    request.results[task_id] = SCOPE_CANCELLED if trio else STILL_RUNNING
            if len(request.results) == len(request.ids):
                progress.merge(self._report(request, model))
        return progress

    def updates_stopped(self, model: TaskModel) -> Progress:
        """The last update came (the process exited, the connection broke): a cancel whose
        outcome that update does not show is said unseen, rather than waited for forever (a
        cancel that ends the program's main task ends the process with it)."""
        self.stopped = True
        progress = Progress()
        for request in self.requests:
            if request.reported or not request.outcomes:
                continue  # not answered yet: said unseen once it is (`answered`)
            for task_id in request.ids:
                request.results.setdefault(task_id, UNSEEN)
            progress.merge(self._report(request, model, notify=False))
        return progress

    def _report(self, request: CancelRequest, model: TaskModel, notify: bool = True) -> Progress:
        request.reported = True
        progress = Progress()
        for task_id, result in request.results.items():
            if result.startswith("error: "):
                progress.status[task_id] = "✗ " + safe_text(result.removeprefix("error: "), 300)
            else:
                progress.status[task_id] = _OUTCOME_STATUS.get(result, result)
        if not notify:  # the feed's own notice says the updates stopped
            return progress
        if len(request.ids) == 1:
            result = request.results[request.root]
            if result.startswith("error: "):
                return progress  # said when answered ("Cancel failed")
            if result == STILL_RUNNING:
                notice = Notice(
                    f"{request.name} is still running {self.grace:.0f} s after the cancel: "
                    "it caught CancelledError and carried on, or is still cleaning up "
                    "(a TaskGroup waits for its tasks)",
                    title="Still running",
                    severity="warning",
                    timeout=8,
                )
            elif result == SCOPE_CANCELLED:
                notice = Notice(
                    f"{request.name}: its own cancel scope was cancelled; trio runs the task "
                    "on after that scope",
                    title="Cancelled",
                    timeout=6,
                )
            elif result == "cancelled":
                notice = Notice(f"{request.name}: cancelled", title="Cancelled", timeout=5)
            else:
                words = _OUTCOME_STATUS.get(result, result).lstrip("✓✗ ")
                notice = Notice(f"{request.name}: {words}", title="Not cancelled", timeout=6)
        else:
            tally: dict[str, int] = {}
            for result in request.results.values():
                tally[result] = tally.get(result, 0) + 1
            stubborn = [
                safe_text(model.tasks[task_id].name, 20)
                for task_id, result in request.results.items()
                if result == STILL_RUNNING and task_id in model.tasks
            ]
            text = ", ".join(f"{count} {result}" for result, count in sorted(tally.items()))
            if stubborn:
                text += f" ({', '.join(stubborn[:5])})"
            notice = Notice(
                f"{request.name} and its subtree: {text}",
                title="Cancelled",
                severity="warning" if stubborn else "information",
                timeout=8,
            )
        progress.notices.append(notice)
        return progress


def _loop_blocked(model: TaskModel, task: TaskInfo) -> bool:
    """Whether the loop `task` runs on was blocked at the model's last look."""
    loop = model.loops.get(task.loop)
    return loop is not None and loop.blocked_now
