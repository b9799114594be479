"""Cancelling a task from the agent's thread: hand it to the task's loop, report what happened.

`Task.cancel()` passes the cancel on to what the task awaits (a task, a gather's children...).
When that chain reaches an await cycle (A awaits B, B awaits A), the cancel goes round the
cycle until RecursionError inside the host program, leaving counters raised and nothing
cancelled. Such a task is woken with a cancelled future instead, which delivers the same
CancelledError at its `await` and touches nothing it awaits.

A task of an anyio task group is cancelled through its own cancel scope, as its TaskHandle's
`cancel()` does: to anyio, a `Task.cancel()` from outside is the cancellation of the whole
group (every sibling is cancelled, and the group exits). It then ends as `done`.

The outcome comes back through a callback run on the loop's thread: `requested` once the
cancel was delivered, `failed` with the error's type when it could not be.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from taskscope.agent.introspect import find_task
from taskscope.agent.tracker import Tracker, pass_through_package
from taskscope.agent.trio_runs import request_trio_cancel
from taskscope.protocol import CancelOutcome

#: Called on the task's loop thread with the outcome and, for `failed`, the error's name.
CancelDone = Callable[[CancelOutcome, str | None], Any]


def request_cancel(
    tracker: Tracker, task_id: str, message: str | None, done: CancelDone
) -> CancelOutcome | None:
    """The outcome, when known at once; else None, and `done` will be called from the loop."""
    number = int(task_id)
    task = find_task(tracker, number)
    if task is None:
        if any(finished.task_id == number for finished in tracker.finished_tasks()):
            return "already_finished"
        return request_trio_cancel(tracker, number, message, done)  # a trio task, or none
    tracker.cancel_requests[number] = time.time()
    try:
        task.get_loop().call_soon_threadsafe(_cancel_on_loop, task, message, done, tracker, number)
    except RuntimeError:  # the loop was closed under us
        tracker.cancel_requests.pop(number, None)
        return "already_finished"
    return None


def _cancel_on_loop(
    task: Any,
    message: str | None,
    done: CancelDone | None = None,
    tracker: Tracker | None = None,
    number: int = 0,
) -> None:
    """Runs on the task's loop thread; never lets an exception reach the loop."""
    if tracker is not None:  # delivered: snapshots stop saying "cancel requested"
        tracker.cancel_requests.pop(number, None)
    outcome: CancelOutcome = "requested"
    error: str | None = None
    try:
        if task.done():
            outcome = "already_finished"
        elif cancel_reaches_cycle(task):
            if not _wake_cancelled(task, message):
                outcome, error = "failed", "the task waits on nothing the agent can wake"
        elif (handle := anyio_handle(task)) is not None:
            handle.cancel()
        elif not task.cancel(message):
            outcome = "already_finished"
    except BaseException as exception:
        outcome, error = "failed", type(exception).__name__
    if done is None:
        return
    try:
        done(outcome, error)
    except BaseException:
        pass


def anyio_handle(task: Any) -> Any:
    """The anyio TaskHandle that runs the task's coroutine in its `_run_coro` (its `self`
    there), when it has a `cancel()`; else None. Reads the suspended wrapper's locals (on
    3.11-3.12 that gives its frame a dict of them, for a task about to end)."""
    coro = getattr(task, "_coro", None)
    code = getattr(coro, "cr_code", None)
    if code is None or pass_through_package(code) != "anyio" or code.co_name != "_run_coro":
        return None
    frame = getattr(coro, "cr_frame", None)
    handle = frame.f_locals.get("self") if frame is not None else None
    return handle if callable(getattr(type(handle), "cancel", None)) else None


def cancel_reaches_cycle(task: Any) -> bool:
    """Whether `task.cancel()` would pass through an await cycle: what it awaits, followed
    the way Task.cancel follows it (a task's `_fut_waiter`, a gather's children), comes back
    to something already on the way."""
    on_path: set[int] = set()
    finished: set[int] = set()
    # Depth first, without recursion: (future, whether its successors were pushed).
    stack: list[tuple[Any, bool]] = [(task, False)]
    while stack:
        fut, expanded = stack.pop()
        key = id(fut)
        if expanded:
            on_path.discard(key)
            finished.add(key)
            continue
        if key in on_path:
            return True
        if key in finished:
            continue
        on_path.add(key)
        stack.append((fut, True))
        for successor in _cancel_successors(fut):
            if id(successor) in on_path:
                return True
            if id(successor) not in finished:
                stack.append((successor, False))
    return False


def _cancel_successors(fut: Any) -> list[Any]:
    if isinstance(fut, asyncio.Task):
        waiter = getattr(fut, "_fut_waiter", None)
        return [waiter] if waiter is not None and not waiter.done() else []
    children = getattr(fut, "_children", None)
    if fut.done() or not children:
        return []
    return [child for child in children if not child.done()]


def _wake_cancelled(task: Any, message: str | None) -> bool:
    """Resume `task` with a cancelled future in place of what it awaits."""
    waited = task._fut_waiter
    wakeup = None
    for entry in list(getattr(waited, "_callbacks", None) or ()):
        callback = entry[0] if type(entry) is tuple else entry
        if getattr(callback, "__self__", None) is task:
            wakeup = callback
            break
    if wakeup is None:
        return False
    waited.remove_done_callback(wakeup)
    cancelled: asyncio.Future[Any] = task.get_loop().create_future()
    cancelled.cancel(message)
    task.get_loop().call_soon(wakeup, cancelled)
    return True
