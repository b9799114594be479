"""Who holds each `asyncio.Lock`: asyncio does not record a lock's owner, so the agent notes it.

`Lock._locked` is an instance attribute that only the acquiring task sets True (in `acquire`,
on the fast path and after its waiter future resolved) and `release` sets False. While the
agent is installed, the Lock class carries a data descriptor `_locked` with a `__set__` and
no `__get__`: reads still find the instance's own `__dict__['_locked']` first (as fast as
without the agent), and each assignment stores the value there, as before, and notes the
task that made it True. Locks made before and after the agent behave the same, and removing
the class attribute on uninstall leaves every lock as asyncio made it. A lock taken before the
agent came has no note: a look then searches the tasks' stacks for the one in the body of an
`async with` on it (`held_in_stacks`) and notes it; one taken with `acquire()` leaves no trace
there, and its holder stays unknown.

It costs each acquire and each release a call of `__set__` (0.4-1.3 us per acquire+release
pair on 3.14-3.11, see benchmarks/lock_cost.py); $TASKSCOPE_LOCK_HOLDERS=0 turns it off (and
tracking off, `--no-track`, does too).

`Condition` uses a `Lock`, so its holder is the lock's. A `Semaphore` cannot be noted this
way: its `_value` is decremented by the releasing task on behalf of the task it wakes
(`_wake_up_next`), and given back by a cancelled waiter, so the task that changed it is not
the one that holds it. An exhausted one's holders are found by the stack search alone
(`semaphore_holders`).
"""

from __future__ import annotations

import gc
import os
import time
import weakref
from asyncio import locks
from collections.abc import Callable, Iterable
from types import CodeType, CoroutineType, GeneratorType, MethodType
from typing import Any

from taskscope.protocol import pieces

_current_task: Any = None  # asyncio.current_task, bound at install
#: id(lock) -> a weak reference to the task that took it (None: no task took it). Written on
#: the loops' threads, read on the agent's. No reference to the lock itself: an entry is
#: removed by the lock's release, and a lock made at the same address later removes any
#: entry left there by its own `__init__` (which assigns `_locked = False`), so an entry
#: found for a locked lock is that lock's.
_HOLDERS: dict[int, weakref.ref[Any] | None] = {}
#: What `prune` reads for a note taken out meanwhile.
_GONE: Any = object()
_ref = weakref.ref
#: What `async with lock:` leaves on the stack of the frame in its body: `lock.__aexit__`,
#: bound (3.11-3.13), or the function followed by the lock (3.14+: LOAD_SPECIAL pushes both).
_AEXIT = locks._ContextManagerMixin.__aexit__
_AENTER_CODE = locks._ContextManagerMixin.__aenter__.__code__
_CONDITION_WAIT_CODE = locks.Condition.wait.__code__
#: id(lock) -> when its holder was last looked for in vain (`time.monotonic()`): a lock taken
#: with `acquire()` leaves nothing on a stack, and a search walks every task.
_NOT_FOUND: dict[int, float] = {}
SEARCH_AGAIN_AFTER = 30.0


class _LockedSlot:
    """The `_locked` data descriptor put on `asyncio.Lock` while the agent runs (no
    `__get__`: the instance's `__dict__` answers reads)."""

    __slots__ = ()

    def __set__(self, lock: Any, value: Any) -> None:
        lock.__dict__["_locked"] = value
        try:
            if value:
                try:
                    task = _current_task()
                except RuntimeError:  # no running loop: a coroutine driven by hand
                    task = None
                _HOLDERS[id(lock)] = _ref(task) if task is not None else None
            else:
                _HOLDERS.pop(id(lock), None)
        except Exception:  # noting the holder never changes what the lock does
            pass

    def __delete__(self, lock: Any) -> None:
        del lock.__dict__["_locked"]
        _HOLDERS.pop(id(lock), None)


_SLOT = _LockedSlot()


def wanted() -> bool:
    """Whether to note holders: yes, unless $TASKSCOPE_LOCK_HOLDERS is 0/no/off/false (each
    acquire and release then costs what it did without the agent; holders are unknown)."""
    setting = os.environ.get("TASKSCOPE_LOCK_HOLDERS", "1").strip().lower()
    return setting not in ("0", "no", "off", "false")


def install() -> None:
    """Start noting lock holders (idempotent)."""
    global _current_task
    import asyncio

    _current_task = asyncio.current_task
    if locks.Lock.__dict__.get("_locked") is not _SLOT:
        type.__setattr__(locks.Lock, "_locked", _SLOT)


def uninstall() -> None:
    """Stop noting holders: `asyncio.Lock` is left with nothing of the agent's."""
    if locks.Lock.__dict__.get("_locked") is _SLOT:
        type.__delattr__(locks.Lock, "_locked")
    _HOLDERS.clear()
    _NOT_FOUND.clear()
    _SEMAPHORE_SEARCHES.clear()


def installed() -> bool:
    return locks.Lock.__dict__.get("_locked") is _SLOT


def lock_holder(lock: Any) -> tuple[Any, bool]:
    """(the task holding `lock`, whether the agent knows). (None, True): not locked, or the
    noted holder is gone; (None, False): locked before the agent could see by whom."""
    try:
        attrs = object.__getattribute__(lock, "__dict__")
        locked = attrs.get("_locked", False)
    except Exception:
        return None, False
    if not locked:
        return None, True
    if id(lock) not in _HOLDERS:
        return None, False
    task_ref = _HOLDERS.get(id(lock))
    if task_ref is None:
        return None, False
    return task_ref(), True


def prune(limit: int = 10_000) -> None:
    """Bound the notes (agent thread): past `limit`, forget those whose task is gone (a lock
    collected while held leaves one; so does a task that ended without releasing)."""
    if len(_HOLDERS) <= limit:
        return
    for keys in pieces(list(_HOLDERS)):  # giving the GIL to the loop (taskscope.protocol.slicing)
        for key in keys:
            task_ref = _HOLDERS.get(key, _GONE)
            if task_ref is not _GONE and (task_ref is None or task_ref() is None):
                _HOLDERS.pop(key, None)


def searched_lately(lock: Any) -> bool:
    """Whether `lock`'s holder was looked for in vain less than `SEARCH_AGAIN_AFTER` ago."""
    since = _NOT_FOUND.get(id(lock))
    return since is not None and time.monotonic() - since < SEARCH_AGAIN_AFTER


def held_in_stacks(tasks: Iterable[Any]) -> dict[int, list[Any]]:
    """id(object) -> the tasks whose coroutines are suspended in the body of an `async with`
    on it: a Lock (a Condition's lock, for a Condition), a Semaphore (a task once per permit
    it took this way).

    A generator's stack is among what `gc.get_referents` gives of it: the body of `async with
    lock:` keeps `lock.__aexit__` there. A frame suspended while it enters (awaiting
    `__aenter__`) has it too: the last one of that frame is the lock it waits for, not one it
    holds. A task whose coroutine runs at this moment is skipped (its stack is changing).
    Only frames whose code can enter a context manager are read (`_may_enter`)."""
    held: dict[int, list[Any]] = {}
    for piece in pieces(tasks, 64):  # giving the GIL to the loop (taskscope.protocol.slicing)
        for task in piece:
            try:
                for entered in _entered(task):
                    if isinstance(entered, locks.Condition):
                        entered = getattr(entered, "_lock", None)
                    if isinstance(entered, (locks.Lock, locks.Semaphore)):
                        held.setdefault(id(entered), []).append(task)
            except Exception:  # a task-like object of another kind: nothing found
                continue
    return held


#: code -> whether it has the instruction that starts a `with` (`async with` on 3.11-3.13;
#: either kind from 3.14, where both load their special methods alike): frames of other
#: code cannot be in the body of one, and are not read.
_MAY_ENTER: dict[CodeType, bool] = {}


def _may_enter(code: CodeType) -> bool:
    known = _MAY_ENTER.get(code)
    if known is None:
        import opcode  # what the search needs, imported when a search is first made

        starts = [opcode.opmap[name] for name in ("BEFORE_ASYNC_WITH", "LOAD_SPECIAL")
                  if name in opcode.opmap]  # fmt: skip
        operations = code.co_code[::2]  # 2 bytes a code unit: operation, argument
        known = any(start in operations for start in starts)
        if len(_MAY_ENTER) > 10_000:
            _MAY_ENTER.clear()
        _MAY_ENTER[code] = known
    return known


def _entered(task: Any) -> list[Any]:
    """The `_ContextManagerMixin` objects (Lock, Condition, Semaphore) whose `async with` body
    the task's coroutine chain is in, outermost first."""
    entered: list[Any] = []
    coro = task.get_coro()
    for _depth in range(200):
        if type(coro) is CoroutineType:
            if coro.cr_running:
                return []
            awaited, code = coro.cr_await, coro.cr_code
        elif type(coro) is GeneratorType:  # a generator-based coroutine (`yield from`)
            if coro.gi_running:
                return []
            awaited, code = coro.gi_yieldfrom, coro.gi_code
        else:
            break
        if code is _CONDITION_WAIT_CODE:
            # `Condition.wait` released its lock (and takes it back before it returns).
            waited = [item for item in gc.get_referents(coro) if isinstance(item, locks.Condition)]
            entered = [item for item in entered if not any(item is cond for cond in waited)]
        elif _may_enter(code):
            in_frame: list[Any] = []
            referents = gc.get_referents(coro)
            for index, item in enumerate(referents):
                if type(item) is MethodType and item.__func__ is _AEXIT:
                    in_frame.append(item.__self__)
                elif item is _AEXIT and index + 1 < len(referents):
                    in_frame.append(referents[index + 1])
            if in_frame and getattr(awaited, "cr_code", None) is _AENTER_CODE:
                in_frame.pop()  # the one it waits to enter
            entered.extend(
                item for item in in_frame if isinstance(item, locks._ContextManagerMixin)
            )
        coro = awaited
    return entered


#: id(semaphore) -> (a weak reference to it, when its holders were searched for, weak
#: references to the tasks found): between two searches a look checks those tasks alone.
_SEMAPHORE_SEARCHES: dict[int, tuple[weakref.ref[Any], float, list[weakref.ref[Any]]]] = {}
SEARCH_SEMAPHORE_AGAIN_AFTER = 10.0


def semaphore_holders(semaphore: Any, search: Callable[[], list[Any]]) -> list[Any]:
    """The tasks in the body of an `async with` on `semaphore` (a task once per permit taken
    that way): `search()` (every task's stack) at most every `SEARCH_SEMAPHORE_AGAIN_AFTER`
    seconds, and at the looks between, those of the last search that are still in it. A task
    that entered since is found by the next search; until then it is among the permits no
    stack shows (`holders_more`, `holders_partial`)."""
    now = time.monotonic()
    entry = _SEMAPHORE_SEARCHES.get(id(semaphore))
    if (
        entry is not None
        and entry[0]() is semaphore
        and now - entry[1] < SEARCH_SEMAPHORE_AGAIN_AFTER
    ):
        found: list[Any] = []
        for task_ref in entry[2]:
            task = task_ref()
            if task is not None and not task.done():
                try:
                    inside = _entered(task)
                except Exception:
                    continue
                found.extend(task for item in inside if item is semaphore)
        return found
    found = search()
    if len(_SEMAPHORE_SEARCHES) > 100:
        for key, (semaphore_ref, _at, _tasks) in list(_SEMAPHORE_SEARCHES.items()):
            if semaphore_ref() is None:
                del _SEMAPHORE_SEARCHES[key]
    unique = {id(task): task for task in found}.values()
    _SEMAPHORE_SEARCHES[id(semaphore)] = (_ref(semaphore), now, [_ref(task) for task in unique])
    return found


def note_found_holder(lock: Any, task: Any | None) -> None:
    """Note what a search of the stacks found: `task` holds `lock` (unless a holder was noted
    meanwhile: the lock changed hands since), or, with None, that none was found."""
    if task is None:
        if len(_NOT_FOUND) > 1000:
            _NOT_FOUND.clear()
        _NOT_FOUND[id(lock)] = time.monotonic()
    else:
        _NOT_FOUND.pop(id(lock), None)
        _HOLDERS.setdefault(id(lock), _ref(task))
