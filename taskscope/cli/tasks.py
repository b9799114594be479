"""Naming a task (`transfer-a`, `18`, `id:16`, `4243:16`) and the commands that act on one:
stack, cancel and detach."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from taskscope.cli.exits import EXIT_ERROR
from taskscope.cli.sources import open_source, remote_client, turn_time_steps
from taskscope.sources import Capability, Source

if TYPE_CHECKING:
    from taskscope.model import TaskInfo, TaskModel


class TaskNotFound(Exception):
    """No task answers to what the user typed; str() is the line to show."""


class AmbiguousTask(Exception):
    """Several tasks answer to what the user typed; str() lists them in one line."""


def _candidates(model: TaskModel, text: str) -> list[TaskInfo]:
    """The tasks `text` may name: `id:N` is the id alone; digits N are the id N and the task
    named `Task-N` (asyncio's default name, which is what the user sees first); anything else
    is a name, matched exactly (`Task-18` never stands for id 18)."""
    tasks = model.tasks
    if ":" in text.removeprefix("id:") and text.removeprefix("id:") in tasks:
        return [tasks[text.removeprefix("id:")]]  # a worker's task on its parent: `4243:16`
    if text.startswith("id:"):
        number = text[3:]
        return [tasks[number]] if number.isascii() and number.isdigit() and number in tasks else []
    found: dict[str, TaskInfo] = {}
    if text.isascii() and text.isdigit() and len(text) <= 20:
        by_id = tasks.get(str(int(text)))
        if by_id is not None:
            found[by_id.id] = by_id
        default_name = f"Task-{int(text)}"
        for task in tasks.values():
            if task.name in (default_name, text):
                found[task.id] = task
    else:
        for task in tasks.values():
            if task.name == text:
                found[task.id] = task
    return sorted(found.values(), key=lambda task: (task.finished, task.number))


def resolve_task(model: TaskModel, text: str, pid: int, command: str) -> TaskInfo:
    """The one task `text` names in the snapshot, else TaskNotFound or AmbiguousTask."""
    from taskscope.report import safe_text

    matches = _candidates(model, text)
    if len(matches) == 1:
        return matches[0]
    shown = safe_text(text, 40)
    if not matches:
        lowered = text.lower()
        # Names that contain it, and tasks running a coroutine of that name (`handle`, as
        # `ps` shows it in CORO): users type what they see.
        near = sorted(
            (
                task
                for task in model.tasks.values()
                if lowered in task.name.lower() or _coro_name(task.coro).lower() == lowered
            ),
            key=lambda task: (task.finished, task.number),
        )
        hint = f"; did you mean {_list_tasks(near)}?" if near else ""
        raise TaskNotFound(f"no task {shown} in process {pid}{hint} (see `taskscope ps {pid}`)")
    raise AmbiguousTask(
        f"{shown} may name {len(matches)} tasks in process {pid}: {_list_tasks(matches)}; "
        f"name one, e.g. `taskscope {command} {pid} {_id_text(matches[0].id)}`"
    )


def _coro_name(qualname: str) -> str:
    """`handle` of `Server.handle` or `main.<locals>.handle`."""
    return qualname.rsplit(".", 1)[-1]


def _id_text(task_id: str) -> str:
    """How the user names a task by id: `id:16`, or `4243:16` for a worker's task."""
    return task_id if ":" in task_id else f"id:{task_id}"


def _list_tasks(tasks: list[TaskInfo], limit: int = 6) -> str:
    from taskscope.report import safe_text

    items = [
        f"{_id_text(task.id)} {safe_text(task.name, 30)} ({task.coro}(), {task.state})"
        for task in tasks[:limit]
    ]
    if len(tasks) > limit:
        items.append(f"{len(tasks) - limit} more")
    return ", ".join(items)


def _resolve(source: Source, args: argparse.Namespace) -> TaskInfo:
    return _resolve_in(source, args)[1]


def _resolve_in(source: Source, args: argparse.Namespace) -> tuple[TaskModel, TaskInfo]:
    """The model of the process as it is now, and the task the command line names in it."""
    from taskscope.model import TaskModel

    model = TaskModel.from_snapshot(source.snapshot(include_finished=True))
    return model, resolve_task(model, args.task, args.pid, args.command)


def cmd_stack(args: argparse.Namespace) -> int:
    from taskscope.report import safe_text, stack_items

    source = open_source(args, needs=Capability.STACK_SOURCE)
    try:
        task = _resolve(source, args)
        reply = source.stack(task.id)
    finally:
        source.close()
    title = _task_title(task)
    if not reply.get("found"):
        print(f"taskscope: {title} has gone from process {args.pid}", file=sys.stderr)
        return EXIT_ERROR
    record = reply.get("record")
    if record is not None:
        outcome = record.get("exception") or record.get("result") or ""
        print(f"{title} finished: {record['state']} {safe_text(outcome)}".rstrip())
        _print_failure(record)
        _print_created_from(record.get("created_from"))
        return 0
    print(f"{title}, {task.state}, stack outermost first:")
    for frame in stack_items(reply["stack"], reply.get("left_out_at"), reply.get("left_out", 0)):
        if isinstance(frame, str):
            print(f"  {frame}")
            continue
        print(f"  {safe_text(frame['function'])}  {safe_text(frame['file'])}:{frame['line']}")
        line = frame.get("source")
        if line:
            print(f"      {safe_text(line)}")
    _print_created_from(reply.get("created_from"))
    return 0


def _print_created_from(frames: Sequence[Mapping[str, Any]] | None) -> None:
    """Where a task was created: its creation chain, innermost first."""
    from taskscope.report import safe_text

    if frames:
        print("created from:")
        for frame in frames:
            print(f"  {safe_text(frame['function'])}  {safe_text(frame['file'])}:{frame['line']}")


def _print_failure(record: Mapping[str, Any]) -> None:
    """A failed task's traceback and whether its exception was retrieved."""
    from taskscope.report import safe_text
    from taskscope.words import retrieval_words

    traceback = record.get("traceback")
    if traceback:
        for line in str(traceback).splitlines():
            print(f"  {safe_text(line)}")
    words = retrieval_words(record.get("exception_retrieved"))
    if words:
        print(words)


CANCEL_TEXT = {
    "requested": "cancel requested for {task}; `taskscope ps {pid}` shows the outcome",
    "already_finished": "{task} had already finished",
    "no_such_task": "{task} has gone from process {pid} (see `taskscope ps {pid}`)",
    "queued": "the loop of {task} is blocked: the cancel is delivered when it runs "
    "again; `taskscope ps {pid}` shows the outcome",
    "failed": "could not cancel {task}: {error}",
}


def cmd_cancel(args: argparse.Namespace) -> int:

    from taskscope.report import safe_text
    from taskscope.ui.cancel_flow import ends_program

    source = open_source(args, needs=Capability.CANCEL)
    try:
        model, task = _resolve_in(source, args)
        result = source.cancel(task.id, args.message)
    finally:
        source.close()
    outcome = result.outcome
    error = result.error or "the agent did not say why"
    title = _task_title(task)
    # On another host, the `ps` to run names it: `taskscope ps ssh://HOST PID`.
    where = args.pid if args.remote is None else f"{args.remote} {args.pid}"
    text = CANCEL_TEXT.get(outcome, outcome).format(task=title, pid=where, error=error)
    if outcome in ("no_such_task", "failed"):
        print(f"taskscope: {text}", file=sys.stderr)
        return EXIT_ERROR
    print(text)
    if outcome in ("requested", "queued"):
        # What the dashboard asks before it cancels, said once it is done: a gather that
        # passes the cancel on, up to the task asyncio.run drives, ends the program.
        warning = ends_program(model, task, safe_text(task.name, 40), args.pid)
        if warning:
            print(warning)
    return 0


def cmd_time_steps(args: argparse.Namespace) -> int:
    """`taskscope time-steps PID [--off]`: turn the agent's step timing on or off."""
    from taskscope.sources import NoAgent

    if args.off:
        args.no_inject = True  # no agent, no timing: nothing is loaded to turn it off
    try:
        source = open_source(args, needs=Capability.PUSH)  # the live agent, loaded if needed
    except NoAgent:
        if not args.off or args.remote is not None:
            raise
        print(f"process {args.pid} has no taskscope agent: its steps are not timed")
        return 0
    try:
        turn_time_steps(source, args, on=not args.off)
    finally:
        source.close()
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    args.no_inject = True  # no agent: NoAgent says so, nothing is loaded to be unloaded
    if args.remote is not None:
        return _detach_remote(args)
    # The process named alone, even a parent of workers (each is detached on its own).
    source = open_source(args, needs=Capability.DETACH, one_process=True)
    try:
        source.detach()  # ClientError when its socket stays: "... did not stop"
    finally:
        source.close()
    print(f"agent stopped in process {args.pid}: its hooks are undone and its socket is gone")
    return 0


def _detach_remote(args: argparse.Namespace) -> int:
    """Detach over ssh: the agent hangs up after answering, which ends the bridge and ssh."""
    client = remote_client(args)
    with client:
        client.detach()
        if not client.wait_hangup(args.timeout):
            print(
                f"taskscope: the agent of process {args.pid} on {args.remote} did not stop",
                file=sys.stderr,
            )
            return EXIT_ERROR
    print(f"agent stopped in process {args.pid} on {args.remote}: its hooks are undone")
    return 0


def _task_title(task: TaskInfo) -> str:
    """`task 7 Task-7 (GET /report (RequestResponseCycle.run_asgi))`: a task, said in full."""
    from taskscope.report import safe_text
    from taskscope.words import coro_label

    runs = safe_text(coro_label(task.coro, task.request))
    return f"task {task.id} {safe_text(task.name)} ({runs})"
