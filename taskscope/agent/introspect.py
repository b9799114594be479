"""Builds snapshots of every task from the agent's thread: state, stack, awaits, awaited by.

Reads asyncio's objects while the loop runs on another thread. Every read is of a plain
attribute or a C-level method (the GIL keeps each one consistent); no application code runs.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import sys
import threading
import time
import weakref
from asyncio import queues, taskgroups
from collections.abc import Iterable
from types import (
    AsyncGeneratorType,
    CodeType,
    CoroutineType,
    FrameType,
    FunctionType,
    GeneratorType,
    MethodType,
)
from typing import Any

from taskscope.agent.awaiting import (
    AwaitContext,
    PlanStep,
    classify_planned,
    classify_unmoved,
    plan_cacheable,
    plan_chain,
)
from taskscope.agent.tracker import FinishedTask, Tracker, coro_name, pending_tasks, task_coro
from taskscope.protocol import (
    SNAPSHOT_SCHEMA,
    WireAwaiting,
    WireFrame,
    WireLoop,
    WireSnapshot,
    WireTask,
    materialize_body,
)

MAX_STACK_DEPTH = 200
#: The agent's thread gives the GIL to whoever waits for it (the host's loop) at least this
#: often while it builds a snapshot: `time.sleep(0)` between slices, the process-wide switch
#: interval (5 ms) being the host's to set, not ours.
SLICE_SECONDS = 0.001
MAX_RESOLVE_DEPTH = 50


def _asend_types() -> tuple[type, ...]:
    async def probe() -> Any:
        yield None

    # Creating asend() calls this thread's async generator hooks: a running loop would adopt
    # the probe and later schedule its finalisation as a task. Switch them off meanwhile.
    hooks = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(None, None)
    try:
        agen = probe()
        asend = agen.asend(None)
        athrow = agen.athrow(GeneratorExit)
        kinds = (type(asend), type(athrow))
        asend.close()
        athrow.close()
    finally:
        sys.set_asyncgen_hooks(*hooks)
    return kinds


_ASEND_TYPES = _asend_types()
_TASK_GROUP_DONE = taskgroups.TaskGroup._on_task_done
#: The pure-Python Task's wake-up is a bound method (the C Task's is a builtin method).
#: The done callback `run_until_complete` (so `asyncio.run`) puts on the task it drives.
_RUN_UNTIL_COMPLETE_CB = getattr(asyncio.base_events, "_run_until_complete_cb", None)
_PY_TASK_WAKEUP = getattr(getattr(asyncio.tasks, "_PyTask", None), "_Task__wakeup", None)
#: 3.13+: as_completed is a class; its done-callback is a bound method feeding `_done`.
_AS_COMPLETED_ITERATOR = getattr(asyncio.tasks, "_AsCompletedIterator", None)
_BUILTIN_METHOD: type[Any] = type([].append)


def _asend_generator(obj: Any) -> Any:
    """The async generator behind an `asend`/`athrow` awaitable: it exposes no attribute for
    it, but holds a reference the collector can list."""
    for referent in gc.get_referents(obj):
        if type(referent) is AsyncGeneratorType:
            return referent
    return None


def walk_frames(coro: Any) -> list[FrameType]:
    """The frames of a coroutine chain, outermost first: through nested coroutines, async
    generators (their `asend` hides the generator) and generator-based awaits."""
    return _chain(coro)[0]


def _chain(coro: Any) -> tuple[list[FrameType], list[Any], tuple[Any, ...]]:
    """Like `walk_frames`, also giving the coroutine (or generator) that runs each frame, and
    a key naming where the chain is suspended: id(code), f_lasti of every frame. Same key,
    same stack and same classification plan (the cache entry keeps the code objects alive,
    so their ids cannot be reused while it exists)."""
    frames: list[FrameType] = []
    owners: list[Any] = []
    key: list[Any] = []
    obj = coro
    # Fast path: native coroutines awaiting native coroutines, the common chain.
    while type(obj) is CoroutineType and len(frames) < MAX_STACK_DEPTH:
        frame = obj.cr_frame
        if frame is None:
            return frames, owners, tuple(key)
        frames.append(frame)
        owners.append(obj)
        key += (id(frame.f_code), frame.f_lasti)
        obj = obj.cr_await
    if obj is None:
        return frames, owners, tuple(key)
    for _ in range(MAX_STACK_DEPTH - len(frames)):
        kind = type(obj)
        if kind is CoroutineType:
            frame, nxt = obj.cr_frame, obj.cr_await
        elif obj is None:
            break
        elif kind is GeneratorType:
            frame, nxt = obj.gi_frame, obj.gi_yieldfrom
        elif kind is AsyncGeneratorType:
            frame, nxt = obj.ag_frame, obj.ag_await
        elif kind in _ASEND_TYPES:
            obj = _asend_generator(obj)
            continue
        else:
            frame = getattr(obj, "cr_frame", None)
            if frame is None:
                break
            nxt = getattr(obj, "cr_await", None)
        if frame is None:
            break
        frames.append(frame)
        owners.append(obj)
        key.append(id(frame.f_code))  # hashing a code object hashes its bytecode and consts
        key.append(frame.f_lasti)
        obj = nxt
    return frames, owners, tuple(key)


def line_at(code: CodeType, lasti: int) -> int | None:
    """The line a frame of `code` suspended at byte offset `lasti` reports as f_lineno."""
    if lasti < 0:
        return code.co_firstlineno
    for start, end, line in code.co_lines():
        if start <= lasti < end:
            return line
    return None


def _stack_entry(frames: list[FrameType], key: tuple[Any, ...]) -> StackEntry:
    """The wire stack and classification plan of a suspension point, cached by its key. The
    stack is shared by every task suspended there, in every snapshot. A tuple, as every
    sequence in the records the agent keeps (they never change): a list is one more object
    for the host's garbage collector to track, where a tuple of strings is dropped from its
    lists."""
    frame_cache = _FRAME_CACHE
    if len(frame_cache) > 100_000:
        frame_cache.clear()
    frame_records: list[WireFrame] = []
    for index, frame in enumerate(frames):
        # The line from the key's own f_lasti, not from the frame: it may have moved since.
        code = frame.f_code
        frame_key = (code, line_at(code, key[2 * index + 1]))
        entry = frame_cache.get(frame_key)
        if entry is None:
            entry = frame_cache[frame_key] = frame_record(*frame_key)
        frame_records.append(entry)
    stack = tuple(frame_records)
    plan = plan_chain(frames)
    codes = tuple(frame.f_code for frame in frames)
    first_code = codes[plan[0][0]] if plan else None
    result = (stack, plan, codes, plan_cacheable(plan), first_code)
    if len(_STACK_CACHE) > 50_000:
        _STACK_CACHE.clear()
    _STACK_CACHE[key] = result
    return result


def _task_frames(task: Any) -> list[FrameType]:
    return walk_frames(task_coro(task))


#: id(creation site) -> (site, its wire form): tasks made at one place share both.
_ORIGINS: dict[int, tuple[Any, tuple[WireFrame, ...]]] = {}


def _origin(site: tuple[tuple[CodeType, int], ...]) -> tuple[WireFrame, ...]:
    if not site:
        return _NONE
    known = _ORIGINS.get(id(site))
    if known is not None and known[0] is site:
        return known[1]
    frames = tuple(frame_record(code, line) for code, line in site)
    if len(_ORIGINS) > 10_000:
        _ORIGINS.clear()
    _ORIGINS[id(site)] = (site, frames)
    return frames


def frame_record(code: CodeType, line: int | None) -> WireFrame:
    return {"function": code.co_qualname, "file": code.co_filename, "line": line}


def _resolve_waiters(
    fut: Any, depth: int = 0, seen: set[int] | None = None, owners: list[Any] | None = None
) -> list[Any]:
    """The tasks that wait for `fut`: directly (their wake-up is one of its callbacks), as
    owner of a TaskGroup, or through futures chained on it (gather, shield, wait, wait_for).

    A TaskGroup's owner still in the body of its `async with` is not waiting yet; it is
    collected in `owners` (it will wait on leaving the block, as 3.14's call graph says)."""
    callbacks = getattr(fut, "_callbacks", None)
    if not callbacks or depth > MAX_RESOLVE_DEPTH:
        return []
    waiters: list[Any] = []
    for entry in callbacks:
        callback = entry[0] if type(entry) is tuple else entry
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
#: (code, line) -> frame record, shared by every task suspended at the same place.
_FRAME_CACHE: dict[tuple[CodeType, int | None], WireFrame] = {}
#: A suspension point: its wire stack, classification plan, the code objects its key names
#: by id (kept alive so that the ids stay theirs), whether tasks suspended there may be
#: cached (`plan_cacheable`) and the code of the plan's first step.
StackEntry = tuple[
    tuple[WireFrame, ...], tuple[PlanStep, ...], tuple[CodeType, ...], bool, CodeType | None
]
#: `_chain` key -> StackEntry: see `_stack_entry`.
_STACK_CACHE: dict[tuple[Any, ...], StackEntry] = {}
#: What the builder notes of each pending task for its next look lives in the task's
#: `TaskMeta` (`chain_*` and `rec_*` fields): only weak references to the host's objects.
#: Tracker -> the descriptions of its last snapshot (see `AwaitContext.last_memo`).
_DESCRIPTION_CACHE: weakref.WeakKeyDictionary[
    Tracker, tuple[dict[tuple[int, int], WireAwaiting], dict[float, WireAwaiting]]
] = weakref.WeakKeyDictionary()


class _ScratchLists:
    """The lists a look fills with 100,000 entries (the tasks, their records and metadata),
    kept from one look to the next. A list made afresh for each look is young for the host's
    garbage collector: every collection of the young generations during the look (the host's
    allocations set them off too) walks all its entries, tens of milliseconds each at 100,000
    tasks with the GIL held. A list kept is soon in the old generation, which those
    collections do not walk. Emptied after each look; one look at a time uses them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lists: tuple[list[Any], list[Any], list[Any]] = ([], [], [])

    def take(self) -> tuple[list[Any], list[Any], list[Any]]:
        if self._lock.acquire(blocking=False):
            return self._lists
        return ([], [], [])  # another look is under way: lists of its own

    def give_back(self, lists: tuple[list[Any], list[Any], list[Any]]) -> None:
        if lists is self._lists:
            self._lock.release()


_SCRATCH = _ScratchLists()


#: The empty list of every record that has nothing to list: shared, never mutated (records
#: get a new list when they have something).
_NONE: tuple[Any, ...] = ()


def find_cycles(edges: dict[int, list[int]]) -> list[list[int]]:
    """Strongly connected components of more than one task (Tarjan, iterative)."""
    index_of: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    cycles: list[list[int]] = []
    counter = 0
    for root in edges:
        if root in index_of:
            continue
        work: list[tuple[int, int]] = [(root, 0)]
        while work:
            node, child_index = work.pop()
            if child_index == 0:
                index_of[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = edges.get(node, ())
            recurse = False
            for position in range(child_index, len(children)):
                child = children[position]
                if child not in index_of:
                    work.append((node, position + 1))
                    work.append((child, 0))
                    recurse = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index_of[child])
            if recurse:
                continue
            if low[node] == index_of[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return sorted(cycles)


def _loop_record(tracker: Tracker, loop_info: tuple[Any, asyncio.AbstractEventLoop]) -> WireLoop:
    record, loop = loop_info
    thread_id = record.thread_id
    thread = threading._active.get(thread_id) if thread_id else None  # type: ignore[attr-defined]
    blocked_for = tracker.blocked_for(record, loop)
    blocking: list[WireFrame] = []
    if blocked_for is not None and thread_id is not None:
        frame = sys._current_frames().get(thread_id)
        chain: list[WireFrame] = []
        while frame is not None and len(chain) < MAX_STACK_DEPTH:
            chain.append(frame_record(frame.f_code, frame.f_lineno))
            frame = frame.f_back
        blocking = chain[::-1]
    return {
        "id": record.loop_id,
        "thread_id": thread_id,
        "thread_name": thread.name if thread is not None else None,
        "running": loop.is_running(),
        "closed": loop.is_closed(),
        "blocked_for": round(blocked_for, 3) if blocked_for is not None else None,
        "lag": round(record.lag, 4) if record.lag is not None else None,
        "blocking_stack": blocking,
        "type": type(loop).__qualname__,
        "tasks": 0,
    }


def finished_record(tracker: Tracker, finished: FinishedTask) -> WireTask:
    """A finished task's record. It never changes: made once and shared by every snapshot
    (whose readers never mutate records)."""
    cached: WireTask | None = finished.wire
    if cached is not None:
        return cached
    record: WireTask = {
        "id": str(finished.task_id),
        "loop": finished.loop_id,
        "name": finished.name,
        "state": finished.state,  # type: ignore[typeddict-item]
        "coro": finished.coro,
        "stack": _NONE,
        "awaiting": None,
        "awaited_by": _NONE,
        "parent": str(finished.parent_id) if finished.parent_id is not None else None,
        "created_at": finished.created_at,
        "finished_at": finished.finished_at,
    }
    if finished.summary is not None:
        if finished.state == "failed":
            record["exception"] = finished.summary
        else:
            record["result"] = finished.summary
    if finished.first_seen_at is not None:
        record["first_seen_at"] = finished.first_seen_at
    if finished.created_from:
        record["created_from"] = _origin(finished.created_from)
    finished.wire = record
    return record


class SnapshotBuilder:
    """Makes one consistent-enough picture of all tasks; one instance per snapshot."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def build(self, include_finished: bool = True) -> WireSnapshot:
        """A snapshot in schema 1, countdowns counted (what `taskscope dump` prints). Records
        and descriptions may be shared with other snapshots: treat them as read-only."""
        raw = self.build_raw(include_finished)
        return materialize_body(dict(raw), "tasks")  # type: ignore[return-value]

    def build_raw(self, include_finished: bool = True) -> WireSnapshot:
        """A snapshot as the agent keeps and sends it: countdowns as the loop-clock times they
        end at (see "Countdowns" in taskscope.protocol) and `loop_time`; the record of a task
        that did not change is the very object the last snapshot gave it."""
        lists = _SCRATCH.take()
        try:
            return self._build_raw(include_finished, *lists)
        finally:
            for scratch in lists:
                scratch.clear()  # they hold no task after the look
            _SCRATCH.give_back(lists)

    def _build_raw(
        self,
        include_finished: bool,
        tasks: list[Any],
        records: list[WireTask],
        part_metas: list[Any],
    ) -> WireSnapshot:
        tracker = self.tracker
        taken_at = time.time()
        loops = tracker.live_loops()
        pending_tasks(tracker, tasks)
        loop_ids = {id(loop): record.loop_id for record, loop in loops}
        ctx = AwaitContext(self._task_name, _task_frames)
        last_descriptions = _DESCRIPTION_CACHE.get(tracker)
        if last_descriptions is not None:
            ctx.last_memo, ctx.last_sleeps = last_descriptions
        current: set[int] = set()
        for _record, loop in loops:
            ctx.index_timers(loop)
            # current_task(loop) answers for a loop of another thread on every version (from
            # 3.14 by searching the threads' states, where `_current_tasks` stays empty).
            try:
                current_task = asyncio.current_task(loop)
            except Exception:
                current_task = None
            if current_task is not None:
                current.add(id(current_task))
        #: The metadata of each task waiting on another task, by number.
        waiter_metas: dict[int, Any] = {}
        #: For the tasks whose last record this look replaced, by number: whether what it was
        #: made of is the same, and the tasks it awaited, those awaiting it, whether in a
        #: cycle, and the record itself (a waiter whose record comes out the same gets it).
        replaced: dict[int, tuple[bool, Any, Any, Any, WireTask]] = {}
        edges: dict[int, list[int]] = {}
        counts: dict[int, int] = {}
        unwatched: list[Any] = []
        meta_of = tracker.ensure_meta
        metas = tracker._meta
        done_callback = tracker.done_callback
        stack_cache = _STACK_CACHE
        tracker_loop = None
        loop_id = ""
        #: loop id -> the task its `run_until_complete` (`asyncio.run`) waits for.
        main_tasks: dict[str, str] = {}
        run = 0
        weak = weakref.ref
        clock, give_way = time.perf_counter, time.sleep
        give_way_at = clock() + SLICE_SECONDS
        for count, task in enumerate(tasks):
            if not count & 63 and clock() >= give_way_at:
                # The host's loop thread may be waiting for the GIL: let it have it now
                # rather than at the interpreter's next switch (5 ms).
                give_way(0)
                give_way_at = clock() + SLICE_SECONDS
            meta = metas.get(id(task))
            if meta is None or meta() is not task:
                meta = meta_of(task)
            number = meta.task_id
            if not meta.watched:
                unwatched.append(task)
            wire = meta.wire
            if wire is None:
                wire = meta.wire = (
                    str(number),
                    str(meta.parent_id) if meta.parent_id is not None else None,
                    _origin(meta.created_from),
                    coro_name(task_coro(task)),
                    meta.seen_at if meta.created_at is None else None,
                )
            fut = getattr(task, "_fut_waiter", None)
            running = id(task) in current
            # A task still suspended on the very same future has not been stepped since the
            # last snapshot: same frames at the same places, same plan. Only what they wait
            # on is described again.
            fut_ref = meta.chain_fut if fut is not None else None
            if fut_ref is not None and fut_ref() is fut:
                stack, plan = meta.chain_stack, meta.chain_plan
                if running:
                    awaiting = None
                else:
                    self_ref = meta.chain_self
                    first_self = self_ref() if self_ref is not None else None
                    awaiting = classify_unmoved(ctx, plan, meta.chain_key, first_self, fut, task)
                    if awaiting is None:  # needs the frames after all
                        frames, owners, _key = _chain(task_coro(task))
                        awaiting = classify_planned(ctx, frames, owners, fut, task, plan)
            else:
                frames, owners, key = _chain(task_coro(task))
                cached = stack_cache.get(key)
                stack, plan, _codes, cacheable, first_code = (
                    cached if cached is not None else _stack_entry(frames, key)
                )
                meta.chain_fut = None
                if running:
                    awaiting = None
                elif fut is None or not cacheable:
                    awaiting = classify_planned(ctx, frames, owners, fut, task, plan)
                else:
                    # The `self` of the plan's first step, for `classify_unmoved` next time.
                    found: list[Any] | None = [] if plan and plan[0][3] is not None else None
                    awaiting = classify_planned(ctx, frames, owners, fut, task, plan, found)
                    try:
                        meta.chain_fut = weak(fut)
                    except TypeError:
                        pass
                    else:
                        meta.chain_stack, meta.chain_plan = stack, plan
                        meta.chain_self = meta.chain_key = None
                        if found and found[0] is not None:
                            try:
                                # No callback: CPython shares one such reference per object.
                                meta.chain_self = weak(found[0])
                            except TypeError:
                                pass
                            if first_code is not None:
                                meta.chain_key = (id(first_code), id(found[0]))
            task_loop = task.get_loop()
            if task_loop is not tracker_loop:
                if tracker_loop is not None:
                    counts[id(tracker_loop)] = counts.get(id(tracker_loop), 0) + run
                tracker_loop, run = task_loop, 0
                known = loop_ids.get(id(task_loop))
                if known is None:
                    loop_record = tracker.register_loop(task_loop)
                    loops.append((loop_record, task_loop))
                    known = loop_ids[id(task_loop)] = loop_record.loop_id
                loop_id = known
            run += 1  # tasks of `tracker_loop` in a row, added to `counts` when it changes
            name = task.get_name()
            created_at = meta.created_at
            # Who waits for this task: its done callbacks. Most tasks have only ours.
            waiter_numbers: list[int] | None = None
            callbacks = getattr(task, "_callbacks", None)
            if callbacks and (len(callbacks) > 1 or callbacks[0][0] is not done_callback):
                for entry in callbacks:
                    if (entry[0] if type(entry) is tuple else entry) is _RUN_UNTIL_COMPLETE_CB:
                        main_tasks[loop_id] = wire[0]
                owners_of: list[Any] = []
                waiters = _resolve_waiters(task, owners=owners_of)
                if waiters or owners_of:
                    waiter_numbers = []
                    for waiter in waiters:
                        waiter_meta = meta_of(waiter)
                        waiter_number = waiter_meta.task_id
                        if waiter_number not in waiter_numbers:
                            waiter_numbers.append(waiter_number)
                            edges.setdefault(waiter_number, []).append(number)
                            waiter_metas[waiter_number] = waiter_meta
                    for owner in owners_of:
                        owner_number = meta_of(owner).task_id
                        if owner_number not in waiter_numbers:
                            waiter_numbers.append(owner_number)
            # The record, as if this task waited on no task (most do not): the waiters among
            # them get theirs again below, once every edge is known. A task made of what it
            # was made of last time gets the same record, without anything being allocated:
            # at 100,000 tasks, allocations alone set off the host's garbage collector.
            record = meta.record
            same = (
                record is not None
                and meta.rec_stack is stack
                and (meta.rec_awaiting is awaiting or meta.rec_awaiting == awaiting)
                and meta.rec_wire is wire
                and meta.rec_loop is loop_id
                and meta.rec_running is running
                and meta.rec_created_at is created_at
                and meta.rec_name == name
            )
            if (
                not same
                or meta.rec_awaited is not None
                or meta.rec_cycled
                or meta.rec_waiters != waiter_numbers
            ):
                if record is not None:
                    replaced[number] = (
                        same,
                        meta.rec_awaited,
                        meta.rec_waiters,
                        meta.rec_cycled,
                        record,
                    )
                record = meta.record = _task_record(
                    wire, loop_id, name, stack, awaiting, running, created_at, None, waiter_numbers
                )
                meta.rec_wire, meta.rec_loop, meta.rec_name = wire, loop_id, name
                meta.rec_stack, meta.rec_awaiting, meta.rec_running = stack, awaiting, running
                meta.rec_created_at, meta.rec_awaited = created_at, None
                meta.rec_waiters, meta.rec_cycled = waiter_numbers, False
            meta.slot = len(records)
            records.append(record)
            part_metas.append(meta)
        if tracker_loop is not None:
            counts[id(tracker_loop)] = counts.get(id(tracker_loop), 0) + run
        _DESCRIPTION_CACHE[tracker] = (
            {key: entry[1] for key, entry in ctx.memo.items()},
            ctx.sleeps,
        )
        cycles = find_cycles(edges)
        in_cycle = {number for cycle in cycles for number in cycle}
        # The waiters: their records say which tasks they wait on, and whether in a cycle.
        for number, awaited in edges.items():
            meta = waiter_metas[number]
            slot = meta.slot
            if slot is None or slot >= len(part_metas) or part_metas[slot] is not meta:
                continue  # not pending in this look (created or finished meanwhile)
            cycled = number in in_cycle
            last = replaced.get(number)
            if (
                last is not None
                and last[0]
                and last[1] == awaited
                and last[2] == meta.rec_waiters
                and last[3] == cycled
            ):
                record = last[4]
            else:
                record = _task_record(
                    meta.rec_wire,
                    meta.rec_loop,
                    meta.rec_name,
                    meta.rec_stack,
                    meta.rec_awaiting,
                    meta.rec_running,
                    meta.rec_created_at,
                    awaited,
                    meta.rec_waiters,
                    cycled,
                )
            meta.record, meta.rec_awaited, meta.rec_cycled = record, awaited, cycled
            records[slot] = record
        if tracker.cancel_requests or tracker.cancel_marked:
            _mark_cancel_requests(tracker, records, part_metas)
        if unwatched:
            tracker.watch_existing(unwatched)
        loop_records: list[WireLoop] = []
        for info in loops:
            wire_loop = _loop_record(tracker, info)
            wire_loop["tasks"] = counts.get(id(info[1]), 0)
            wire_loop["main_task"] = main_tasks.get(wire_loop["id"])
            loop_records.append(wire_loop)
        if include_finished:
            pending_numbers = {meta.task_id for meta in part_metas}
            records.extend(
                finished_record(tracker, finished)
                for finished in tracker.finished_tasks()
                if finished.task_id not in pending_numbers
            )
        snapshot: WireSnapshot = {
            "schema": SNAPSHOT_SCHEMA,
            "pid": os.getpid(),
            "python": sys.version.split()[0],
            "taken_at": taken_at,
            "loops": loop_records,
            "tasks": records[:],  # `records` is the builder's, reused
            "cycles": [[str(number) for number in cycle] for cycle in cycles],
            "history_limit": tracker.history_limit,
            "loop_time": ctx.loop_time,
        }
        if tracker.history_since is not None:
            snapshot["history_since"] = tracker.history_since
        return snapshot

    def _task_name(self, task: Any) -> str:
        try:
            return str(task.get_name())
        except Exception:
            return f"#{self.tracker.id_of(task)}"


def _task_record(
    wire: Any,
    loop_id: str,
    name: str,
    stack: list[WireFrame],
    awaiting: Any,
    running: bool,
    created_at: float | None,
    awaited: list[int] | None,
    waiter_numbers: list[int] | None,
    cycled: bool = False,
) -> WireTask:
    # Descriptions may be shared between tasks: what is particular to a task goes into its
    # own copy.
    if awaiting is not None and awaited is not None:
        awaiting = awaiting.copy()
        awaiting["tasks"] = tuple([str(other) for other in awaited])
    record: WireTask = {
        "id": wire[0],
        "loop": loop_id,
        "name": name,
        "state": "pending",
        "coro": wire[3],
        "stack": stack,
        "awaiting": awaiting,
        "awaited_by": tuple([str(waiter) for waiter in waiter_numbers])
        if waiter_numbers
        else _NONE,
        "parent": wire[1],
        "created_at": created_at,
        "finished_at": None,
    }
    if running:
        record["running"] = True
    if wire[4] is not None:
        record["first_seen_at"] = wire[4]
    if wire[2]:
        record["created_from"] = wire[2]
    return record


def _mark_cancel_requests(tracker: Tracker, records: list[WireTask], metas: list[Any]) -> None:
    """Give the records of tasks whose cancel waits for their loop `cancel_requested_at`, and
    take it off again once the loop delivered it. Runs only while some cancel is outstanding
    or marked: a cancel is delivered at the loop's next turn, unless the loop is blocked."""
    requests = tracker.cancel_requests
    marked = tracker.cancel_marked
    slots = {meta.task_id: slot for slot, meta in enumerate(metas)}
    for number in list(requests.keys() | marked):
        slot = slots.get(number)
        requested_at = requests.get(number)
        if slot is None:  # finished, or gone
            requests.pop(number, None)
            marked.discard(number)
            continue
        record = records[slot]
        if record.get("cancel_requested_at") != requested_at:
            # The copy becomes the task's record: kept while the task stays as it is.
            record = record.copy()
            record.pop("cancel_requested_at", None)
            if requested_at is not None:
                origin = record.pop("created_from", None)
                record["cancel_requested_at"] = requested_at
                if origin is not None:  # last, as in every record
                    record["created_from"] = origin
            records[slot] = metas[slot].record = record
        if requested_at is None:
            marked.discard(number)
        else:
            marked.add(number)


def find_task(tracker: Tracker, task_number: int) -> Any:
    """The pending task with this id, or None."""
    for task in pending_tasks(tracker):
        meta = tracker.meta_of(task)
        if meta is not None and meta.task_id == task_number:
            return task
    return None


def in_await_cycle(task: Any) -> bool:
    """Whether cancelling `task` would come back to it through what it awaits (which makes
    asyncio's Task.cancel recurse until RecursionError)."""
    seen: set[int] = set()
    pending: list[Any] = [getattr(task, "_fut_waiter", None)]
    while pending:
        fut = pending.pop()
        if fut is None or id(fut) in seen:
            continue
        if fut is task:
            return True
        seen.add(id(fut))
        if isinstance(fut, asyncio.Task):
            pending.append(getattr(fut, "_fut_waiter", None))
        else:
            pending.extend(getattr(fut, "_children", None) or ())
    return False


def sys_frames_of(thread_id: int) -> FrameType | None:
    return sys._current_frames().get(thread_id)
