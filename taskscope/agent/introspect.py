"""Builds snapshots of every task from the agent's thread: state, stack, awaits, awaited by.

Reads asyncio's objects while the loop runs on another thread. Every read is of a plain
attribute or a C-level method (the GIL keeps each one consistent); no application code runs.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import (
    FrameType,
    MethodType,
)
from typing import Any

from taskscope.agent.awaiting import (
    SLEEP_HANDLER,
    AwaitContext,
    add_library_handlers,
    classify_planned,
    classify_unmoved,
    memo_key,
)
from taskscope.agent.chains import (
    _NONE,
    _STACK_CACHE,
    MAX_STACK_DEPTH,
    StackEntry,
    _origin,
    _stack_entry,
    _task_frames,
    frame_record,
    lazy_chain,
    stack_gap,
)
from taskscope.agent.cycles import find_cycles
from taskscope.agent.loops import LoopRecord
from taskscope.agent.reach import ReachState, reach_step
from taskscope.agent.steps import StepFigures
from taskscope.agent.tracker import (
    PASS_THROUGH,
    FinishedTask,
    FutureNote,
    TaskMeta,
    TaskWire,
    Tracker,
    pending_tasks,
    task_coro,
    task_coro_name,
)
from taskscope.agent.trio_runs import add_trio_runs
from taskscope.agent.waiters import TASK_GROUP_DONE, _resolve_waiters
from taskscope.agent.web_requests import request_of
from taskscope.protocol import (
    SNAPSHOT_SCHEMA,
    TASK_ROW_KEYS,
    WireAwaiting,
    WireFrame,
    WireLoop,
    WireSnapshot,
    WireTask,
    clear_sliced,
    give_way,
    give_way_due,
    materialize_body,
    pieces,
    sliced,
    start_slicing,
)

#: The done callback `run_until_complete` (so `asyncio.run`) puts on the task it drives.
_RUN_UNTIL_COMPLETE_CB = getattr(asyncio.base_events, "_run_until_complete_cb", None)


#: What the builder notes of each pending task for its next look lives in the task's
#: `TaskMeta` (`chain_*` and `rec_*` fields): only weak references to the host's objects.
#: Tracker -> the descriptions of its last snapshot (see `AwaitContext.last_memo`).
_DESCRIPTION_CACHE: weakref.WeakKeyDictionary[
    Tracker, tuple[dict[int, WireAwaiting], dict[float, WireAwaiting]]
] = weakref.WeakKeyDictionary()
#: Tracker -> an emptied map of sleeps (`AwaitContext.sleeps`) for its next look: the one its
#: last look but one made, kept so that it is old for the collector (see `_HandedOutLists`).
_SPARE_SLEEPS: weakref.WeakKeyDictionary[Tracker, dict[float, WireAwaiting]] = (
    weakref.WeakKeyDictionary()
)


#: The pending tasks of a look, their records and their metadata.
_Lists = tuple[list["asyncio.Task[Any]"], list[WireTask], list[TaskMeta]]


class _ScratchLists:
    """The lists a look fills with 100,000 entries (the tasks, their records and metadata),
    kept from one look to the next. A list made afresh for each look is young for the host's
    garbage collector: every collection of the young generations during the look (the host's
    allocations set them off too) walks all its entries, tens of milliseconds each at 100,000
    tasks with the GIL held. A list kept is soon in the old generation, which those
    collections do not walk. Emptied after each look; one look at a time uses them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lists: _Lists = ([], [], [])

    def take(self) -> _Lists:
        if self._lock.acquire(blocking=False):
            return self._lists
        return ([], [], [])  # another look is under way: lists of its own

    def give_back(self, lists: _Lists) -> None:
        if lists is self._lists:
            self._lock.release()


_SCRATCH = _ScratchLists()


class _HandedOutLists:
    """The snapshot's own list of records (`tasks`), which leaves the look: the server hands it
    to its clients, subscriptions and the flight recorder keep it until the next look. Made
    afresh, it is young for the collector, like the look's own lists were (see
    `_ScratchLists`): every young collection during the encoding and the next look walks its
    100,000 entries, milliseconds each with the GIL held. A few are kept and one is
    filled again once nobody else holds it, which its reference count tells: a holder of the
    snapshot holds its list. A list still held is left alone, and a new one made."""

    SPARE = 2  # the snapshot being handed out, and the one before it, still compared with

    def __init__(self) -> None:
        self._lists: list[list[WireTask]] = []
        self._lock = threading.Lock()
        self._lists.append([])
        #: The count of a kept list that only this pool holds, measured through the very call
        #: `filled_with` makes (what the interpreter counts for an argument varies by version).
        self._unheld = self._count(0)
        self._lists.clear()

    def _count(self, index: int) -> int:
        return sys.getrefcount(self._lists[index])

    def filled_with(self, records: list[WireTask]) -> list[WireTask]:
        """A list holding `records`' entries, kept and old where one is free."""
        if not self._lock.acquire(blocking=False):
            return records[:]
        try:
            for index in range(len(self._lists)):
                if self._count(index) == self._unheld:
                    kept = self._lists[index]
                    clear_sliced(kept)  # the records of two looks ago
                    kept.extend(records)
                    return kept
            made = records[:]
            if len(self._lists) < self.SPARE:
                self._lists.append(made)
            else:  # every kept list is still held: keep the newest instead of the oldest
                self._lists.pop(0)
                self._lists.append(made)
            return made
        finally:
            self._lock.release()


#: Tracker -> its pool, which goes with it (an agent detached keeps no records).
_HANDED_OUT: weakref.WeakKeyDictionary[Tracker, _HandedOutLists] = weakref.WeakKeyDictionary()


def _handed_out(tracker: Tracker) -> _HandedOutLists:
    pool = _HANDED_OUT.get(tracker)
    if pool is None:
        pool = _HANDED_OUT.setdefault(tracker, _HandedOutLists())
    return pool


def _loop_record(tracker: Tracker, loop_info: LiveLoop) -> WireLoop:
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
    wire: WireLoop = {
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
    timer = tracker.steps
    if timer is not None and timer.installed:
        wire.update(timer.loop_figures(record, loop))  # type: ignore[typeddict-item]
    return wire


def finished_record(tracker: Tracker, finished: FinishedTask) -> WireTask:
    """A finished task's record. Made once and shared by every snapshot (whose readers never
    mutate records); a failed task's is made again when whether its exception was retrieved
    changes (someone awaits it later, or it is collected: then it stays as it is)."""
    cached: WireTask | None = finished.wire
    failure = finished.failure
    if failure is None:
        if cached is not None:
            return cached
    else:
        retrieved = failure.retrieved()
        if cached is not None and cached.get("exception_retrieved") == retrieved:
            return cached
        finished.wire = None
        record = _finished_record(finished)
        if finished.traceback is not None:
            record["traceback"] = finished.traceback
        if retrieved is not None:
            record["exception_retrieved"] = retrieved
        _created_from_last(record)
        finished.wire = record
        return record
    record = _finished_record(finished)
    finished.wire = record
    return record


def _created_from_last(record: WireTask) -> None:
    """`created_from` goes last in a record (see WireTask)."""
    origin = record.pop("created_from", None)
    if origin is not None:
        record["created_from"] = origin


def _finished_record(finished: FinishedTask) -> WireTask:
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
    if finished.request is not None:
        record["request"] = finished.request
    if finished.created_from:
        record["created_from"] = _origin(finished.created_from)
    return record


class SnapshotBuilder:
    """Makes one consistent-enough picture of all tasks; one instance per snapshot.

    A look goes in named steps: `_read_registry` (the live loops, their pending tasks, the
    task each loop runs now, its timers), then for each task `_stack_and_awaiting` (the chain
    walk and classification), `_waiters_of` (who awaits it: the edges of the await graph) and
    `_pending_record`; then `_add_awaited_tasks` (the records of the tasks that await tasks,
    once every edge is known), `_mark_cancel_requests`, the await cycles (`find_cycles`),
    the loops' records and the finished tasks' records."""

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
        start_slicing()
        try:
            return self._build_raw(include_finished, *lists)
        finally:
            for piece in pieces(lists[2]):
                for meta in piece:
                    meta.slot = None  # an int object per task, were it kept between looks
            for scratch in lists:
                clear_sliced(scratch)  # they hold no task after the look
            _SCRATCH.give_back(lists)

    def _build_raw(
        self,
        include_finished: bool,
        tasks: list[asyncio.Task[Any]],
        records: list[WireTask],
        metas: list[TaskMeta],
    ) -> WireSnapshot:
        tracker = self.tracker
        taken_at = time.time()
        loops, running, ctx = self._read_registry(tasks)
        graph = _AwaitGraph()
        counts, main_tasks = self._look_at_tasks(
            tasks, loops, running, ctx, graph, records, metas, taken_at
        )
        replaced_descriptions = _DESCRIPTION_CACHE.get(tracker)
        _DESCRIPTION_CACHE[tracker] = (
            {key: entry[1] for key, entry in sliced(ctx.memo.items())},
            ctx.sleeps,
        )
        _add_awaited_tasks(graph, records, metas)
        # The objects the look described are no longer held: the reach step counts who holds them.
        ctx.memo.clear()
        ctx.self_frame = ctx.self_obj = None
        _mark_reach(tracker, tasks, records, metas, time.time() - taken_at)
        if tracker.cancel_requests or tracker.cancel_marked:
            _mark_cancel_requests(tracker, records, metas)
        cycles = find_cycles(graph.edges)
        loop_records: list[WireLoop] = []
        for info in loops:
            wire_loop = _loop_record(tracker, info)
            wire_loop["tasks"] = counts.get(id(info[1]), 0)
            wire_loop["main_task"] = main_tasks.get(wire_loop["id"])
            loop_records.append(wire_loop)
        add_trio_runs(tracker, loop_records, records, ctx)  # trio's runs and tasks, if imported
        if include_finished:
            pending_numbers = {meta.task_id for piece in pieces(metas) for meta in piece}
            records.extend(
                finished_record(tracker, finished)
                for finished in sliced(tracker.finished_tasks(), 16)
                if finished.task_id not in pending_numbers
            )
        snapshot: WireSnapshot = {
            "schema": SNAPSHOT_SCHEMA,
            "pid": os.getpid(),
            "python": sys.version.split()[0],
            "taken_at": taken_at,
            "loops": loop_records,
            "tasks": _handed_out(tracker).filled_with(records),  # `records` is reused
            "cycles": [[str(number) for number in cycle] for cycle in cycles],
            "history_limit": tracker.history_limit,
            "loop_time": ctx.loop_time,
        }
        if tracker.history_since is not None:
            snapshot["history_since"] = tracker.history_since
        # Freed here in slices rather than in one go when the look returns: up to a key made
        # for the look per task, and the records it replaced.
        for scratch in (ctx.timers, ctx.timeouts, ctx.names, graph.replaced, graph.edges):
            clear_sliced(scratch)
        if replaced_descriptions is not None and replaced_descriptions[1] is not ctx.sleeps:
            # A look under way at once may still ask it (`get` only) for a description.
            spare_sleeps = replaced_descriptions[1]
            clear_sliced(spare_sleeps)
            _SPARE_SLEEPS[tracker] = spare_sleeps
        return snapshot

    def _read_registry(
        self, tasks: list[asyncio.Task[Any]]
    ) -> tuple[list[LiveLoop], set[int], AwaitContext]:
        """Step 1: the live loops and their pending tasks (into `tasks`), the ids of the tasks
        the loops run at this moment, and a classification context with every loop's timers
        indexed and the last look's descriptions to share."""
        tracker = self.tracker
        loops = tracker.live_loops()
        pending_tasks(tracker, tasks)
        if add_library_handlers():  # anyio was imported since: plan its waits again
            _STACK_CACHE.clear()
        ctx = AwaitContext(self._task_name, _task_frames, self._task_id)
        ctx.pending_tasks = tasks
        last_descriptions = _DESCRIPTION_CACHE.get(tracker)
        if last_descriptions is not None:
            ctx.last_memo, ctx.last_sleeps = last_descriptions
        spare_sleeps = _SPARE_SLEEPS.pop(tracker, None)  # one look takes it
        if spare_sleeps is not None and not spare_sleeps:
            ctx.sleeps = spare_sleeps
        running: set[int] = set()
        for _record, loop in loops:
            ctx.index_timers(loop)
            # current_task(loop) answers for a loop of another thread on every version (from
            # 3.14 by searching the threads' states, where `_current_tasks` stays empty).
            try:
                current_task = asyncio.current_task(loop)
            except Exception:
                current_task = None
            if current_task is not None:
                running.add(id(current_task))
        return loops, running, ctx

    def _look_at_tasks(
        self,
        tasks: list[asyncio.Task[Any]],
        loops: list[LiveLoop],
        running: set[int],
        ctx: AwaitContext,
        graph: _AwaitGraph,
        records: list[WireTask],
        metas: list[TaskMeta],
        taken_at: float,
    ) -> tuple[dict[int, int], dict[str, str]]:
        """Steps 2 to 4 for every pending task: its record, as if it awaited no task (most do
        not), into `records`, its metadata at the same place in `metas`, and who awaits it
        into `graph`. Gives the GIL away every `SLICE_SECONDS`. Returns the number of tasks
        per loop (by id(loop)) and, by loop id, the task its `run_until_complete` (so
        `asyncio.run`) waits for. `taken_at` (the look's time) becomes the `waiting_seen_at`
        of every task this look finds suspended on a future it was not on at the last one."""
        tracker = self.tracker
        known_metas = tracker.task_metas()
        ensure_meta = tracker.ensure_meta
        done_callback = tracker.done_callback
        loop_ids = {id(loop): record.loop_id for record, loop in loops}
        counts: dict[int, int] = {}
        main_tasks: dict[str, str] = {}
        unwatched: list[asyncio.Task[Any]] = []
        stack_and_awaiting, pending_record = _stack_and_awaiting, _pending_record
        replaced = graph.replaced
        timer = tracker.steps
        wall_offset = timer.wall_offset if timer is not None and timer.timed else None
        task_loop: asyncio.AbstractEventLoop | None = None
        loop_id = ""
        run = 0  # tasks of `task_loop` in a row, added to `counts` when it changes
        timers, sleeps, memo, timeouts = ctx.timers, ctx.sleeps, ctx.memo, ctx.timeouts
        last_sleeps = ctx.last_sleeps
        sleep_handler = SLEEP_HANDLER
        clock = time.perf_counter
        give_way_at = give_way_due()
        for count, task in enumerate(tasks):
            if not count & 63 and clock() >= give_way_at:
                # The host's loop thread may be waiting for the GIL: let it have it now
                # rather than at the interpreter's next switch (5 ms).
                give_way()
                give_way_at = give_way_due()
            meta = known_metas.get(id(task))
            if meta is None or meta() is not task:
                meta = ensure_meta(task)
            this_loop = task.get_loop()
            if this_loop is not task_loop:
                if task_loop is not None:
                    counts[id(task_loop)] = counts.get(id(task_loop), 0) + run
                task_loop, run = this_loop, 0
                known = loop_ids.get(id(this_loop))
                if known is None:
                    loop_record = tracker.register_loop(this_loop)
                    tracker.request_adoption(loop_record, this_loop)
                    loops.append((loop_record, this_loop))
                    known = loop_ids[id(this_loop)] = loop_record.loop_id
                loop_id = known
            run += 1
            # Who waits for this task: its done callbacks. Most tasks have only ours.
            waiters: list[int] | None = None
            callbacks = getattr(task, "_callbacks", None)  # a task-like object may have none
            if callbacks and (len(callbacks) > 1 or callbacks[0][0] is not done_callback):
                group = _group_of_child(callbacks, done_callback)
                if group is not None:
                    waiters = self._group_child_waiters(group, task, meta.task_id, graph)
                else:
                    if _driven_by_run_until_complete(callbacks):
                        last = meta.record
                        main_tasks[loop_id] = last["id"] if last is not None else str(meta.task_id)
                    waiters = self._waiters_of(task, meta.task_id, graph)
            fut_ref = meta.chain_fut
            if (
                fut_ref is not None
                and meta.rec_awaited is None
                and meta.timing is None
                and meta.watched
                and not meta.rec_running
                and meta.rec_loop is loop_id
                and meta.rec_created_at is meta.created_at
                and (waiters is None if meta.rec_waiters is None else meta.rec_waiters == waiters)
            ):
                # The common case: a task still suspended on the very future it was at the
                # last look, awaiting no task. Its record is the last one again when its
                # description comes out as the very same object (a sleep's by its end time,
                # a shared object's by its memo key: no frame read) and its name is the same;
                # nothing allocated for it, no call made (what `_stack_and_awaiting`,
                # `classify_unmoved` and `_pending_record` would find, the long way).
                fut = getattr(task, "_fut_waiter", None)
                record = meta.record
                if (
                    fut is not None
                    and (  # `_on_noted_future`, inlined: this runs for every task
                        timers.get(id(fut)) is fut_ref
                        if type(fut_ref) is float
                        else fut_ref() is fut  # type: ignore[operator]
                    )
                    and record is not None
                    and id(task) not in running
                    and (not timeouts or id(task) not in timeouts)
                ):
                    entry: StackEntry = meta.chain_entry  # type: ignore[assignment]
                    plan = entry.plan
                    last_awaiting = meta.rec_awaiting
                    awaiting = None
                    if not plan or last_awaiting is None:
                        pass
                    elif plan[0][1] is sleep_handler:
                        # A sleep noted by its timer's end: the note is that end (checked
                        # above), or its future is noted and the timers are asked.
                        when = fut_ref if type(fut_ref) is float else timers.get(id(fut))
                        if when is not None:
                            awaiting = sleeps.get(when)
                            if awaiting is None:  # as `_sleep_of` finds it
                                awaiting = last_sleeps.get(when)
                                if awaiting is not None:
                                    sleeps[when] = awaiting
                    elif plan[0][3] is not None and entry.first_code is not None:
                        self_ref = meta.chain_self
                        first_self = self_ref() if self_ref is not None else None
                        if first_self is not None:
                            hit = memo.get(memo_key(entry.first_code, first_self))
                            if hit is not None and hit[0] is first_self:
                                awaiting = hit[1]
                    if awaiting is not None and awaiting is last_awaiting:
                        name = task.get_name()
                        if name is meta.rec_name or name == meta.rec_name:
                            meta.slot = len(records)
                            records.append(record)
                            metas.append(meta)
                            continue
            # The long way takes 10-60 us a task at a first look: 64 of them would hold the
            # GIL for milliseconds between two of the checks above.
            if clock() >= give_way_at:
                give_way()
                give_way_at = give_way_due()
            if not meta.watched:
                unwatched.append(task)
            is_running = id(task) in running
            last_fut, last_record = meta.chain_fut, meta.record
            if last_record is None and meta.seen_at is not None and meta.seen_at > taken_at:
                # Met during this look (its metadata made a moment ago): its age counts from
                # the look, as its wait does, so that no wait comes out longer than its age.
                meta.seen_at = taken_at
            stack, awaiting = stack_and_awaiting(ctx, meta, task, is_running)
            # Since when it has been seen suspended where it is: from the last record while it
            # stays on the very same future (`_stack_and_awaiting` keeps its note), from this
            # look on a new one; not said of a wait whose future cannot be told apart.
            seen_at: float | None = None
            if is_running or meta.chain_fut is None:
                pass
            elif meta.chain_fut is last_fut and last_record is not None:
                seen_at = last_record.get("waiting_seen_at")
            else:
                seen_at = taken_at
            meta.slot = len(records)
            records.append(
                pending_record(
                    meta,
                    task,
                    loop_id,
                    task.get_name(),
                    stack,
                    awaiting,
                    is_running,
                    waiters,
                    replaced,
                    wall_offset,
                    seen_at,
                )
            )
            metas.append(meta)
        if task_loop is not None:
            counts[id(task_loop)] = counts.get(id(task_loop), 0) + run
        if unwatched:
            tracker.watch_existing(unwatched)
        return counts, main_tasks

    def _waiters_of(
        self, task: asyncio.Task[Any], number: int, graph: _AwaitGraph
    ) -> list[int] | None:
        """Step 3: the ids of the tasks that await `task` (or own its TaskGroup), each
        added to `graph` as an edge waiter -> task (an owner not waiting yet is no edge)."""
        owners: list[asyncio.Task[Any]] = []
        # The agent's own done callback holds no waiter: not looked into.
        waiters = _resolve_waiters(task, owners=owners, ignore=self.tracker.done_callback)
        if not waiters and not owners:
            return None
        meta_of = self.tracker.ensure_meta
        numbers: list[int] = []
        for waiter in waiters:
            waiter_meta = meta_of(waiter)
            waiter_number = waiter_meta.task_id
            if waiter_number not in numbers:
                numbers.append(waiter_number)
                graph.edges.setdefault(waiter_number, []).append(number)
                graph.waiter_metas[waiter_number] = waiter_meta
        for owner in owners:
            owner_number = meta_of(owner).task_id
            if owner_number not in numbers:
                numbers.append(owner_number)
        return numbers

    def _group_child_waiters(
        self, group: Any, task: asyncio.Task[Any], number: int, graph: _AwaitGraph
    ) -> list[int] | None:
        """`_waiters_of` for a task whose only callbacks are the agent's and its TaskGroup's:
        the same for every child of the group in one look (its owner, awaiting the group or
        not yet), found once per group. The list of ids is shared by the children's records'
        notes (never mutated)."""
        hit = graph.groups.get(id(group))
        if hit is None or hit[0] is not group:  # the group is held: its id stays its own
            numbers = self._waiters_of(task, number, graph)
            waiter_number = None
            if numbers is not None and len(numbers) == 1 and numbers[0] in graph.edges:
                edge_list = graph.edges[numbers[0]]
                if edge_list and edge_list[-1] == number:
                    waiter_number = numbers[0]
            graph.groups[id(group)] = (group, numbers, waiter_number)
            return numbers
        numbers, waiter_number = hit[1], hit[2]
        if waiter_number is not None:
            graph.edges[waiter_number].append(number)
        return numbers

    def _task_id(self, task: asyncio.Task[Any]) -> str:
        return str(self.tracker.id_of(task))

    def _task_name(self, task: asyncio.Task[Any]) -> str:
        try:
            return str(task.get_name())
        except Exception:
            return f"#{self.tracker.id_of(task)}"


#: A live loop as `Tracker.live_loops` gives it: its record and the loop itself.
LiveLoop = tuple[LoopRecord, asyncio.AbstractEventLoop]


#: A task's last record, replaced in this look, and what it was made of: whether the look
#: found the task made of the same (`_pending_record`), the ids of the tasks it awaited and of
#: those awaiting it, the record. A plain tuple: one is made per task that moved, and a named
#: tuple costs a Python-level call to make.
_Replaced = tuple[bool, list[int] | None, list[int] | None, WireTask]


class _AwaitGraph:
    """Who awaits whom in one look, found task by task (`SnapshotBuilder._waiters_of`)."""

    __slots__ = ("edges", "groups", "replaced", "waiter_metas")

    def __init__(self) -> None:
        #: waiter id -> the ids of the tasks it awaits.
        self.edges: dict[int, list[int]] = {}
        #: waiter id -> its metadata.
        self.waiter_metas: dict[int, TaskMeta] = {}
        #: For the tasks whose last record this look replaced, by id: what `_add_awaited_tasks`
        #: needs to give a waiter its last record again when it comes out the same.
        self.replaced: dict[int, _Replaced] = {}
        #: id(TaskGroup) -> the group, the ids of who awaits (or owns) its children, and the
        #: owner's id when it awaits them (an edge per child): see `_group_child_waiters`.
        self.groups: dict[int, tuple[Any, list[int] | None, int | None]] = {}


def _task_wire(meta: TaskMeta, task: asyncio.Task[Any]) -> TaskWire:
    """What never changes in a pending task's record, for its first record (later ones take
    it from the one before: `_wire_of`)."""
    return (
        str(meta.task_id),
        _parent_text(meta.parent_id) if meta.parent_id is not None else None,
        _origin(meta.created_from),
        task_coro_name(task),
        meta.seen_at if meta.created_at is None else None,
        request_of(task_coro(task)),
    )


#: Parent id -> its text, shared by the records of its children (kept for every live task:
#: one string per parent rather than per child).
_PARENT_TEXTS: dict[int, str] = {}


def _parent_text(parent_id: int) -> str:
    text = _PARENT_TEXTS.get(parent_id)
    if text is None:
        if len(_PARENT_TEXTS) > 10_000:
            _PARENT_TEXTS.clear()
        text = _PARENT_TEXTS[parent_id] = str(parent_id)
    return text


def _wire_of(record: WireTask) -> TaskWire:
    """What never changes in a pending task's record, read back from its last record: kept
    once per task, in the record, rather than also in a tuple of its own."""
    origin: Any = record.get("created_from", _NONE)  # a tuple, as the builder made it
    return (
        record["id"],
        record["parent"],
        origin,
        record["coro"],
        record.get("first_seen_at"),
        record.get("request"),
    )


def _on_noted_future(note: FutureNote, fut: Any, timers: Mapping[int, float]) -> bool:
    """Whether `fut` is the future a task was noted suspended on (`TaskMeta.chain_fut`). A
    sleep's future is noted by its timer's end, the very float object the loop's heap holds
    in its TimerHandle (`AwaitContext.index_timers`): the timer of another future made at
    the same address, once the first was freed, holds a float of its own (a sleep's end is
    computed at each call), and the note keeps its float alive, so none other can take its
    address. No weak reference to the future, one object per sleeping task fewer for the
    host's collector to track, and 64-80 bytes. Any other future: a weak reference."""
    if type(note) is float:
        return timers.get(id(fut)) is note
    return note() is fut  # type: ignore[operator]


def _stack_and_awaiting(
    ctx: AwaitContext, meta: TaskMeta, task: asyncio.Task[Any], running: bool
) -> tuple[tuple[WireFrame, ...], WireAwaiting | None]:
    """Step 2, the chain walk and classification: a task's wire stack and what it awaits
    (None while it runs). A task still suspended on the very same future as at the last look
    has not been stepped since: same frames at the same places, same plan (noted in
    `meta.chain_*`); only what they wait on is described again, from the memo when it can."""
    fut = getattr(task, "_fut_waiter", None)
    fut_ref = meta.chain_fut if fut is not None else None
    if fut_ref is not None and _on_noted_future(fut_ref, fut, ctx.timers):
        noted: StackEntry = meta.chain_entry  # type: ignore[assignment]
        plan = noted.plan
        if running:
            return noted.stack, None
        awaiting = None
        if noted.cacheable:
            self_ref = meta.chain_self
            first_self = self_ref() if self_ref is not None else None
            awaiting = classify_unmoved(ctx, plan, noted.first_code, first_self, fut, task)
        if awaiting is None:  # needs the frames after all
            frames, owners, _key = lazy_chain(task_coro(task))
            awaiting = classify_planned(ctx, frames, owners, fut, task, plan)
        return noted.stack, awaiting
    frames, owners, key = lazy_chain(task_coro(task))
    cached = _STACK_CACHE.get(key)
    entry = cached if cached is not None else _stack_entry(frames, owners, key)
    stack, plan = entry.stack, entry.plan
    meta.chain_fut = None
    if running:
        return stack, None
    if fut is None:
        return stack, classify_planned(ctx, frames, owners, fut, task, plan)
    # The `self` of the plan's first step, for `classify_unmoved` next time. A chain that
    # must be described afresh at every look (`plan_cacheable`: wait_for's) is noted all the
    # same, with no `self`: its note tells the next look that it has not moved (its stack,
    # and since when it waits there), and with no `self` no look takes its description
    # from the memo.
    found: list[Any] | None = [] if entry.cacheable and plan and plan[0][3] is not None else None
    # Read before the description: a sleep's end found by it (uvloop's, a sleep begun since
    # the heap was read) is a float made anew at each look, which proves nothing.
    heap_when = ctx.timers.get(id(fut)) if plan and plan[0][1] is SLEEP_HANDLER else None
    awaiting = classify_planned(ctx, frames, owners, fut, task, plan, found)
    if type(heap_when) is float:
        meta.chain_fut = heap_when  # see `_on_noted_future`
    else:
        try:
            meta.chain_fut = weakref.ref(fut)
        except TypeError:
            return stack, awaiting
    meta.chain_entry = entry
    meta.chain_self = None
    if found and found[0] is not None:
        try:
            # No callback: CPython shares one such reference per object.
            meta.chain_self = weakref.ref(found[0])
        except TypeError:
            pass
    return stack, awaiting


def _group_of_child(callbacks: Sequence[Any], done_callback: object) -> Any:
    """The TaskGroup of a task whose done callbacks are the agent's and then its group's
    only (a group's child, the usual case), else None."""
    if len(callbacks) != 2:
        return None
    ours, theirs = callbacks[0], callbacks[1]
    if type(ours) is not tuple or ours[0] is not done_callback or type(theirs) is not tuple:
        return None
    callback = theirs[0]
    if type(callback) is MethodType and callback.__func__ is TASK_GROUP_DONE:
        return callback.__self__
    return None


def _driven_by_run_until_complete(
    callbacks: Sequence[tuple[Callable[..., object], object]],
) -> bool:
    """Whether a task's done callbacks include the one `run_until_complete` (so
    `asyncio.run`) puts on the task it drives: the loop's main task."""
    for entry in callbacks:
        if (entry[0] if type(entry) is tuple else entry) is _RUN_UNTIL_COMPLETE_CB:
            return True
    return False


def _pending_record(
    meta: TaskMeta,
    task: asyncio.Task[Any],
    loop_id: str,
    name: str,
    stack: tuple[WireFrame, ...],
    awaiting: WireAwaiting | None,
    running: bool,
    waiters: list[int] | None,
    replaced: dict[int, _Replaced],
    wall_offset: float | None,
    waiting_seen_at: float | None,
) -> WireTask:
    """Step 4: a pending task's record, as if it awaited no task (the waiters among them get
    theirs again in `_add_awaited_tasks`, once every edge is known). A task made of what it
    was made of last time gets the same record, without anything being allocated: at 100,000
    tasks, allocations alone set off the host's garbage collector."""
    record = meta.record
    created_at = meta.created_at
    same = (
        record is not None
        and meta.rec_stack is stack
        and (meta.rec_awaiting is awaiting or meta.rec_awaiting == awaiting)
        and meta.rec_loop is loop_id
        and meta.rec_running is running
        and meta.rec_created_at is created_at
        and meta.rec_name == name
        and record.get("waiting_seen_at") is waiting_seen_at
    )
    timing = meta.timing
    steps = 0
    if timing is not None:
        steps = timing.steps
        same = same and timing.rec_steps == steps
    renamed = (
        # A wrapper's name kept from a look that could not see through it (it was running):
        # the coroutine it runs is named once it can be (`task_coro_name`).
        record is not None
        and record["coro"] in PASS_THROUGH
        and task_coro_name(task) != record["coro"]
    )
    if renamed:
        same = False
    if record is not None and same and meta.rec_awaited is None and meta.rec_waiters == waiters:
        return record
    if record is not None:
        replaced[meta.task_id] = (same, meta.rec_awaited, meta.rec_waiters, record)
    if record is not None and meta.rec_created_at is created_at and not renamed:
        wire = _wire_of(record)
        request = wire[5]
        if request is not None and "route" not in request and meta.rec_stack is not stack:
            # Read at its first record, maybe before the application matched a route: once
            # the task has moved elsewhere (the middleware's wait done, in its endpoint), it
            # may have; suspended where it was (a new future at the same place: a streaming
            # response's next chunk), it has not.
            again = request_of(task_coro(task))
            if again is not None and "route" in again:
                wire = (*wire[:5], again)
    else:  # a first record, or a creation noted since (`Tracker.note_creation`)
        wire = _task_wire(meta, task)
    record = meta.record = _task_record(
        wire, loop_id, name, stack, awaiting, running, created_at, waiters, waiting_seen_at
    )
    if timing is not None:
        if steps and wall_offset is not None:
            _add_step_figures(record, timing, steps, running, wall_offset)
        timing.rec_steps = steps
    meta.rec_loop, meta.rec_name = loop_id, name
    meta.rec_stack, meta.rec_awaiting, meta.rec_running = stack, awaiting, running
    meta.rec_created_at, meta.rec_awaited, meta.rec_waiters = created_at, None, waiters
    return record


def _add_step_figures(
    record: WireTask, timing: StepFigures, steps: int, running: bool, wall_offset: float
) -> None:
    """A task's runtime figures (taskscope.agent.steps), before `created_from` (kept last).
    The loop thread may be timing another step meanwhile: the figures are those of `steps`
    steps, or of one more."""
    origin = record.pop("created_from", None)
    record["steps"] = steps
    record["busy_s"] = round(timing.busy, 6)
    record["longest_step_s"] = round(timing.longest, 6)
    record["last_ran_at"] = round(timing.last_ran + wall_offset, 6)
    if not running:
        record["waiting_since"] = round(timing.last_end + wall_offset, 6)
    if origin is not None:
        record["created_from"] = origin


def _add_awaited_tasks(graph: _AwaitGraph, records: list[WireTask], metas: list[TaskMeta]) -> None:
    """Step 5: the records of the tasks that await tasks say which (in their description's
    `tasks`), now that every edge is known; a waiter whose record comes out as it was last
    time gets that very record again."""
    for number, awaited in sliced(graph.edges.items()):
        # By task number (the order they were made, or for tasks older than the agent the
        # order its first look met them), not the order this look met them: the same list
        # from one look to the next.
        awaited.sort()
        meta = graph.waiter_metas[number]
        slot = meta.slot
        if slot is None or slot >= len(metas) or metas[slot] is not meta:
            continue  # not pending in this look (created or finished meanwhile)
        last = graph.replaced.get(number)
        if (
            last is not None
            and last[0]  # made of the same
            and last[1] == awaited
            and last[2] == meta.rec_waiters
        ):
            record = last[3]
        else:
            record = _with_awaited(records[slot], awaited)
        meta.record, meta.rec_awaited = record, awaited
        records[slot] = record


def _with_awaited(record: WireTask, awaited: list[int]) -> WireTask:
    """A copy of a pending task's record whose description lists the tasks it awaits
    (descriptions may be shared between tasks: what is particular to one goes into its own
    copy)."""
    awaiting = record["awaiting"]
    if awaiting is None:
        return record
    awaiting = awaiting.copy()
    awaiting["tasks"] = tuple([str(other) for other in awaited])
    result = record.copy()
    result["awaiting"] = awaiting
    return result


#: The keys a pending task's record may have, in the order `WireTask` declares them.
_PENDING_KEYS = (*TASK_ROW_KEYS, "waiting_seen_at", "running", "first_seen_at", "created_from")


class _RecordKeys:
    """An object whose attributes are `_PENDING_KEYS`: its `__dict__` is a dictionary whose
    keys CPython shares between its copies (a "split table"), each copy carrying its values
    only. A record made as a copy of it takes about 130 bytes less than one made by a dict
    display, which has its own table of keys: a record is kept per live task between looks.
    The copies are ordinary dictionaries in every way; a version of Python that shares no
    keys makes them as large as before, nothing else."""


_RECORD_KEYS = _RecordKeys()
for _key in _PENDING_KEYS:
    setattr(_RECORD_KEYS, _key, None)
_new_record: Callable[[], dict[str, Any]] = _RECORD_KEYS.__dict__.copy


def _task_record(
    wire: TaskWire,
    loop_id: str,
    name: str,
    stack: tuple[WireFrame, ...],
    awaiting: WireAwaiting | None,
    running: bool,
    created_at: float | None,
    waiters: list[int] | None,
    waiting_seen_at: float | None,
) -> WireTask:
    """A pending task's record, its keys in the order `WireTask` declares them (a copy of
    `_RecordKeys`'s, without the keys it has no value for)."""
    record: Any = _new_record()
    record["id"] = wire[0]
    record["loop"] = loop_id
    record["name"] = name
    record["state"] = "pending"
    record["coro"] = wire[3]
    record["stack"] = stack
    record["awaiting"] = awaiting
    record["awaited_by"] = tuple([str(waiter) for waiter in waiters]) if waiters else _NONE
    record["parent"] = wire[1]
    record["created_at"] = created_at
    if running:
        record["running"] = True
    else:
        del record["running"]
    if wire[4] is not None:
        record["first_seen_at"] = wire[4]
    else:
        del record["first_seen_at"]
    if waiting_seen_at is not None:
        record["waiting_seen_at"] = waiting_seen_at
    else:
        del record["waiting_seen_at"]
    if wire[5] is not None:  # a key of its own (other records stay as small), before the last
        del record["created_from"]
        record["request"] = wire[5]
    if len(stack) >= MAX_STACK_DEPTH:  # a recursion's, maybe too deep to send whole
        gap = stack_gap(stack)
        if gap is not None:
            record.pop("created_from", None)
            record["stack_left_out"] = gap
    if wire[2]:
        record["created_from"] = wire[2]
    elif "created_from" in record:
        del record["created_from"]
    return record  # type: ignore[no-any-return]


def _mark_cancel_requests(tracker: Tracker, records: list[WireTask], metas: list[TaskMeta]) -> None:
    """Step 6: give the records of tasks whose cancel waits for their loop
    `cancel_requested_at`, and take it off again once the loop delivered it. Runs only while
    some cancel is outstanding or marked: a cancel is delivered at the loop's next turn,
    unless the loop is blocked."""
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


#: Tracker -> what the reach step found in its last looks (see taskscope.agent.reach).
_REACH_STATES: weakref.WeakKeyDictionary[Tracker, ReachState] = weakref.WeakKeyDictionary()


def _mark_reach(
    tracker: Tracker,
    tasks: list[asyncio.Task[Any]],
    records: list[WireTask],
    metas: list[TaskMeta],
    look_seconds: float,
) -> None:
    """Step 5b: the records of the tasks nothing references (`unreferenced`) or whose
    future nothing else can reach (`never_woken` in their description's object): see
    taskscope.agent.reach."""
    state = _REACH_STATES.get(tracker)
    if state is None:
        state = _REACH_STATES[tracker] = ReachState()
    try:
        reach_step(state, tasks, records, metas, look_seconds)
    except Exception:
        # These facts are extras: a look never fails for them (an object of an unexpected
        # shape in the program); the next scan starts afresh.
        _REACH_STATES.pop(tracker, None)


def find_task(tracker: Tracker, task_number: int) -> asyncio.Task[Any] | None:
    """The pending task with this id, or None."""
    for task in pending_tasks(tracker):
        meta = tracker.meta_of(task)
        if meta is not None and meta.task_id == task_number:
            return task
    return None


def sys_frames_of(thread_id: int) -> FrameType | None:
    return sys._current_frames().get(thread_id)
