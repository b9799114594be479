"""Who awaits a future: the tasks whose wake-up is among its callbacks, the owner of a
TaskGroup, and the tasks behind futures chained on it (gather, shield, wait, wait_for, queues).

Looks inside callbacks of known types only: attributes of anything else could run
application code.
"""

from __future__ import annotations

import asyncio
import functools
from asyncio import queues, taskgroups
from collections.abc import Iterable
from types import CodeType, FunctionType, MethodType
from typing import Any

MAX_RESOLVE_DEPTH = 50

_TASK_GROUP_DONE = taskgroups.TaskGroup._on_task_done
#: The done callback a TaskGroup puts on each of its tasks (a bound method of the group).
TASK_GROUP_DONE = _TASK_GROUP_DONE
#: The pure-Python Task's wake-up is a bound method (the C Task's is a builtin method).
_PY_TASK_WAKEUP = getattr(getattr(asyncio.tasks, "_PyTask", None), "_Task__wakeup", None)
#: 3.13+: as_completed is a class; its done-callback is a bound method feeding `_done`.
_AS_COMPLETED_ITERATOR = getattr(asyncio.tasks, "_AsCompletedIterator", None)
_BUILTIN_METHOD: type[Any] = type([].append)


def _resolve_waiters(
    fut: Any,
    depth: int = 0,
    seen: set[int] | None = None,
    owners: list[Any] | None = None,
    ignore: object = None,
) -> list[Any]:
    """The tasks that wait for `fut`: directly (their wake-up is one of its callbacks), as
    owner of a TaskGroup, or through futures chained on it (gather, shield, wait, wait_for).

    A TaskGroup's owner still in the body of its `async with` is not waiting yet; it is
    collected in `owners` (it will wait on leaving the block, as 3.14's call graph says).
    `ignore`: a callback known to be no waiter's (the agent's own), not looked into."""
    callbacks = getattr(fut, "_callbacks", None)
    if not callbacks or depth > MAX_RESOLVE_DEPTH:
        return []
    waiters: list[Any] = []
    for entry in callbacks:
        callback = entry[0] if type(entry) is tuple else entry
        if callback is ignore:
            continue
        # Only look inside callables of known types: attributes of anything else could run
        # application code (__getattr__, properties).
        kind = type(callback)
        values: Iterable[Any]
        if kind is _BUILTIN_METHOD:
            owner = callback.__self__
            if issubclass(type(owner), asyncio.Task):
                waiters.append(owner)  # the C task's wake-up method
            continue
        if kind is MethodType:
            owner, func = callback.__self__, callback.__func__
            if func is _TASK_GROUP_DONE:
                parent = getattr(owner, "_parent_task", None)
                on_completed = getattr(owner, "_on_completed_fut", None)
                if (
                    parent is not None
                    and on_completed is not None
                    and (getattr(parent, "_fut_waiter", None) is on_completed)
                ):
                    waiters.append(parent)
                elif parent is not None and owners is not None:
                    owners.append(parent)
                continue
            if func is _PY_TASK_WAKEUP:
                waiters.append(owner)
                continue
            if _AS_COMPLETED_ITERATOR is not None and type(owner) is _AS_COMPLETED_ITERATOR:
                values = (getattr(owner, "_done", None),)
            else:
                continue
        elif kind is functools.partial:
            values = callback.args
        elif kind is FunctionType:
            if callback.__code__ in _BACKWARD_CODES:
                continue
            if callback.__code__ is anyio_task_done:
                _anyio_group_owner(callback, waiters, owners)
                continue
            cells: list[Any] = []
            for cell in callback.__closure__ or ():
                try:
                    cells.append(cell.cell_contents)
                except ValueError:
                    pass
            values = cells
        else:
            continue
        for value in values:
            if value is fut:
                continue
            value_type = type(value)
            if issubclass(value_type, asyncio.Future) and not issubclass(value_type, asyncio.Task):
                seen = seen if seen is not None else {id(fut)}
                if id(value) not in seen:
                    seen.add(id(value))
                    waiters.extend(_resolve_waiters(value, depth + 1, seen))
            elif issubclass(value_type, queues.Queue):
                for getter in list(getattr(value, "_getters", ()) or ()):
                    waiters.extend(_resolve_waiters(getter, depth + 1, seen))
    return waiters


def _backward_codes() -> frozenset[CodeType]:
    from asyncio import tasks

    codes = set()
    shield_code = tasks.shield.__code__
    for const in shield_code.co_consts:
        if isinstance(const, CodeType) and const.co_name == "_outer_done_callback":
            codes.add(const)
    return frozenset(codes)


_BACKWARD_CODES = _backward_codes()

#: The done callback anyio's task group (asyncio backend) puts on each of its tasks, a
#: closure over the group (`TaskGroup._spawn.<locals>.task_done`); set by
#: `awaiting.add_library_handlers` once anyio is imported.
anyio_task_done: CodeType | None = None


def _anyio_group_owner(
    callback: FunctionType, waiters: list[Any], owners: list[Any] | None
) -> None:
    """The task that runs an anyio task group (its cancel scope's host task): a waiter of
    the group's tasks once it waits in the group's `__aexit__` (on `_on_completed_fut`), an
    owner before. Reads plain attributes of anyio's objects only."""
    try:
        position = callback.__code__.co_freevars.index("self")
        group = (callback.__closure__ or ())[position].cell_contents
    except (ValueError, IndexError):
        return
    host = getattr(getattr(group, "cancel_scope", None), "_host_task", None)
    if not isinstance(host, asyncio.Task):
        return
    on_completed = getattr(group, "_on_completed_fut", None)
    if on_completed is not None and getattr(host, "_fut_waiter", None) is on_completed:
        waiters.append(host)
    elif owners is not None:
        owners.append(host)
