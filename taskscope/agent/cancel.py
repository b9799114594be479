"""Cancelling a task from the agent's thread: hand it to the task's loop, answer at once.

`Task.cancel()` on a task in an await cycle (A awaits B, B awaits A) recurses through the
cycle until RecursionError inside the host program; such a task is woken with a cancelled
future instead, which delivers the same CancelledError at its `await`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from taskscope.agent.introspect import find_task, in_await_cycle
from taskscope.agent.tracker import Tracker
from taskscope.protocol import CancelOutcome


def request_cancel(tracker: Tracker, task_id: str, message: str | None) -> CancelOutcome:
    number = int(task_id)
    task = find_task(tracker, number)
    if task is None:
        if any(finished.task_id == number for finished in tracker.finished_tasks()):
            return "already_finished"
        return "no_such_task"
    try:
        task.get_loop().call_soon_threadsafe(_cancel_on_loop, task, message)
    except RuntimeError:  # the loop was closed under us
        return "already_finished"
    return "requested"


def _cancel_on_loop(task: Any, message: str | None) -> None:
    """Runs on the task's loop thread; never lets an exception reach the loop."""
    try:
        if task.done():
            return
        if in_await_cycle(task):
            _cancel_in_cycle(task, message)
        else:
            task.cancel(message)
    except BaseException:
        pass


def _cancel_in_cycle(task: Any, message: str | None) -> None:
    waited = task._fut_waiter
    wakeup = None
    for entry in list(getattr(waited, "_callbacks", None) or ()):
        callback = entry[0] if type(entry) is tuple else entry
        if getattr(callback, "__self__", None) is task:
            wakeup = callback
            break
    if wakeup is None:
        return
    waited.remove_done_callback(wakeup)
    cancelled: asyncio.Future[Any] = task.get_loop().create_future()
    cancelled.cancel(message)
    task.get_loop().call_soon(wakeup, cancelled)
