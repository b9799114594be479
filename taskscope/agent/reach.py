"""What can still reach a waiting task and what it waits on: the facts behind the
`unreferenced` and `never_woken` warnings, found by counting references in a small cluster.

A task waiting on a bare future, an Event, a Queue, a Lock, a Condition or a Semaphore makes,
with what it waits on, a small cluster of objects: the task, its coroutine chain (coroutines,
their frames, the awaitable at the end), the future it waits on (`_fut_waiter`), the wakeup
callback the future holds, the primitive whose `self` its frames hold and that primitive's
waiter deques, and the other tasks waiting on that primitive, with theirs. Every reference
from one member to another is listed by `gc.get_referents` of the members (what the garbage
collector itself follows); a member whose reference count (`sys.getrefcount`) is higher than
the references the cluster and the agent's look hold is held from outside. From the members
held from outside, follow the cluster's own references:

- a task none of them reaches is `unreferenced`: only asyncio's weak registry and its own wait
  keep it, and the collector may destroy it mid-run ("Task was destroyed but it is pending!");
- a task whose future none of them reaches without passing through a waiting task is
  `never_woken`: no other task, callback, timer or file can set it (a blocked task's frames
  are no way in: they cannot run).

It costs O(cluster) per task, never a walk over the heap (`gc.get_referrers`). A cluster
larger than `MAX_CLUSTER` objects, or a primitive with more than `MAX_WAITERS` waiters, is
left unjudged. The loop's thread may run between two counts: a cluster whose counts or
futures moved while it was judged is left unjudged too. Only positives are reported, so an
unknown reference (held by the agent, by a C extension) can only hide a warning, never make
a false one.

The cost is kept small and bounded. The waiting tasks are scanned for candidates once every
`SCAN_PERIOD` seconds (the looks between only keep the marks of the tasks found); what a
scan judges is kept per task, a positive until the task's wait changes (nothing can reach
it, so nothing can change it), a negative for `RECHECK` seconds; a scan spends at most
`BUDGET` seconds judging, or `BUDGET_SHARE` of its look's time when that is more (a few
hundred small clusters): tasks not judged yet are judged by the next scans. Tasks crowding
on one object (more than `MAX_WAITERS`) are left unjudged at once, all of them.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import weakref
from collections.abc import Sequence
from types import AsyncGeneratorType, CoroutineType, FrameType, GeneratorType, MethodType
from typing import Any, Final

from taskscope.agent.chains import _ASEND_TYPES, _asend_generator, walk_frames
from taskscope.agent.tracker import _ASYNCIO_DIR, task_coro
from taskscope.protocol import countdown_parts, pieces, sliced

#: Kinds of `awaiting` descriptions whose future may be one nothing else can reach.
REACH_KINDS: Final = frozenset(
    {"future", "event", "queue_get", "queue_put", "queue_join", "lock", "condition", "semaphore"}
)
MAX_CLUSTER: Final = 256
MAX_WAITERS: Final = 32
MAX_CHAIN: Final = 64
MAX_LOCALS: Final = 64
#: Seconds before a task found reachable is judged again.
RECHECK: Final = 30.0
#: Seconds between two scans of the waiting tasks for candidates to judge; the looks between
#: only keep the marks of the tasks found.
SCAN_PERIOD: Final = 2.0
#: Seconds a look may spend here at least; and the share of the look's own time, if more.
BUDGET: Final = 0.005
BUDGET_SHARE: Final = 0.1

_FUTURE_TYPES: Final[tuple[type, ...]] = tuple(
    {asyncio.Future, getattr(asyncio.futures, "_PyFuture", asyncio.Future)}
)
_TASK_TYPES: Final[tuple[type, ...]] = tuple(
    {asyncio.Task, getattr(asyncio.tasks, "_PyTask", asyncio.Task)}
)
_PRIMITIVES: Final = (
    asyncio.Event,
    asyncio.Queue,
    asyncio.Lock,
    asyncio.Condition,
    asyncio.Semaphore,
)
#: Where the primitives keep the futures of their waiters.
_WAITER_ATTRIBUTES: Final = ("_waiters", "_getters", "_putters")


class Verdict:
    """A positive verdict of a look about one task (`unreferenced` or `never_woken`), kept for
    the next looks while the task waits on `future` (a weak reference: the verdict is told
    only while that very future is the one it waits on)."""

    __slots__ = ("checked_at", "future", "made_by_await", "never_woken", "unreferenced")

    def __init__(
        self,
        future: weakref.ref[Any],
        unreferenced: bool,
        never_woken: bool,
        checked_at: float,
        made_by_await: bool = False,
    ) -> None:
        self.future = future
        self.unreferenced = unreferenced
        self.never_woken = never_woken
        self.checked_at = checked_at
        #: Of a task never woken: its wait is an await expression that made what it waits on
        #: (`made_by_its_await`), so it ends when cancelled, as it was written to.
        self.made_by_await = made_by_await


#: A negative verdict (nothing found) is one int: id() of the future the task waited on, and
#: below `_CLEARED_BITS` when it was judged (monotonic clock, in 1/`_CLEARED_TICKS` s,
#: modulo): no object the host's garbage collector tracks (a `Verdict` holds a weak reference:
#: 0.74 tracked objects a task in the benchmark's program, which the first look promoted and
#: which set off a full collection), and 40 bytes where a `Verdict` took 64. The future's id
#: may be another's by the next look, once the first is freed: then the task is not judged
#: again before `RECHECK` seconds, as when its references change while it waits on the same
#: future; a negative verdict tells nothing, so a warning comes late, never a false one.
Cleared = int
_CLEARED_BITS: Final = 32
_CLEARED_TICKS: Final = 16
_CLEARED_MASK: Final = (1 << _CLEARED_BITS) - 1


def _cleared(future: Any, at: float) -> Cleared:
    return id(future) << _CLEARED_BITS | (int(at * _CLEARED_TICKS) & _CLEARED_MASK)


class ReachState:
    """The verdicts of the looks of one tracker, by task id."""

    __slots__ = ("cancelling", "looks", "marked", "scanned_at", "verdicts")

    def __init__(self) -> None:
        #: Task id -> its verdict: a positive one, or a negative one as `Cleared`.
        self.verdicts: dict[int, Verdict | Cleared] = {}
        #: The tasks whose records say a verdict, by task id: their metadata.
        self.marked: dict[int, Any] = {}
        #: The tasks counted as cancelled that go on, by task id: since when (Unix time).
        self.cancelling: dict[int, float] = {}
        #: When the last scan of the candidates was (monotonic clock).
        self.scanned_at: float | None = None
        self.looks = 0


class _Cluster:
    """The members of one cluster and what judging them needs: which are waiting tasks, and
    each waiting task's future."""

    __slots__ = ("futures", "index", "members", "primitives", "task_slots", "tasks")

    def __init__(self) -> None:
        #: First, an object nothing else references: its count is what the judging code's own
        #: references add to each member's (versions differ: 3.14 borrows where 3.13 counts).
        self.members: list[Any] = [object()]
        #: id(member) -> its position in `members`.
        self.index: dict[int, int] = {}
        #: positions of the waiting tasks, and of each one's future.
        self.tasks: list[int] = []
        self.futures: list[int] = []
        #: positions of the tasks the caller's list holds once more (the look's own list).
        self.task_slots: set[int] = set()
        #: positions of the primitives whose waiters are in the cluster.
        self.primitives: list[int] = []

    def add(self, obj: Any) -> bool:
        """Adds `obj`; False when the cluster is too large."""
        if id(obj) in self.index:
            return True
        if len(self.members) >= MAX_CLUSTER:
            return False
        self.index[id(obj)] = len(self.members)
        self.members.append(obj)
        return True


def _waiting_future(task: Any) -> Any:
    future = getattr(task, "_fut_waiter", None)
    if future is None or type(future) not in _FUTURE_TYPES or future.done():
        return None
    return future


def _chain_members(cluster: _Cluster, task: Any) -> list[Any] | None:
    """Adds a waiting task's coroutine chain (coroutines, generators, their frame objects,
    the awaitable at its end) to the cluster; returns the primitives its frames hold, or
    None when the cluster overflows."""
    primitives: list[Any] = []
    get_coro = getattr(task, "get_coro", None)
    obj = get_coro() if get_coro is not None else None
    for _ in range(MAX_CHAIN):
        if obj is None:
            break
        if not cluster.add(obj):
            return None
        kind = type(obj)
        if kind is CoroutineType:
            nxt = obj.cr_await
        elif kind is GeneratorType:
            nxt = obj.gi_yieldfrom
        elif kind is AsyncGeneratorType:
            nxt = obj.ag_await
        elif kind in _ASEND_TYPES:
            nxt = _asend_generator(obj)
        else:
            # The awaitable at the end (a FutureIter, a future itself): no chain beyond.
            break
        for referent in gc.get_referents(obj):
            kind = type(referent)
            if kind is FrameType or (kind is dict and len(referent) <= MAX_LOCALS):
                # Its frame object, and the dict of its locals that reading `f_locals` left
                # on the frame (3.11, 3.12): the coroutine's own.
                if not cluster.add(referent):
                    return None
            elif kind is MethodType:
                # `async with` keeps the bound `__aexit__` on the frame's stack.
                if not cluster.add(referent):
                    return None
                if isinstance(referent.__self__, _PRIMITIVES):
                    primitives.append(referent.__self__)
            elif isinstance(referent, _PRIMITIVES):
                primitives.append(referent)
        obj = nxt
    return primitives


def _future_members(cluster: _Cluster, future: Any) -> bool:
    """Adds the containers a future keeps its callbacks (and, from 3.14, its awaiting tasks)
    in, and the callbacks bound to a task, to the cluster."""
    for referent in gc.get_referents(future):
        kind = type(referent)
        if kind is list or kind is tuple or kind is set:
            if not cluster.add(referent):
                return False
            for item in gc.get_referents(referent):
                if type(item) is tuple:
                    if not cluster.add(item):
                        return False
                    item_refs = gc.get_referents(item)
                else:
                    item_refs = [item]
                for callback in item_refs:
                    if _bound_to_task(callback) and not cluster.add(callback):
                        return False
        elif _bound_to_task(referent) and not cluster.add(referent):
            return False
    return True


def _bound_to_task(callback: Any) -> bool:
    return isinstance(getattr(callback, "__self__", None), _TASK_TYPES)


def _build_cluster(first: Any, held_by_look: set[int]) -> _Cluster | None:
    """The cluster of a waiting task: itself, and through the primitives its frames hold,
    every task waiting on them. None when it is too large or not of the shape judged here."""
    cluster = _Cluster()
    pending = [first]
    seen_primitives: set[int] = set()
    while pending:
        task = pending.pop()
        if id(task) in cluster.index:
            continue
        future = _waiting_future(task)
        if future is None:
            return None  # a waiter on the primitive that is not waiting on a bare future
        cluster.add(task)
        position = cluster.index[id(task)]
        cluster.tasks.append(position)
        if id(task) in held_by_look:
            cluster.task_slots.add(position)
        if not cluster.add(future):
            return None
        cluster.futures.append(cluster.index[id(future)])
        if not _future_members(cluster, future):
            return None
        primitives = _chain_members(cluster, task)
        if primitives is None:
            return None
        for primitive in primitives:
            if id(primitive) in seen_primitives:
                continue
            seen_primitives.add(id(primitive))
            if not cluster.add(primitive):
                return None
            cluster.primitives.append(cluster.index[id(primitive)])
            for attributes in gc.get_referents(primitive):
                # Its instance dict, when there is one (the agent's lock notes make one):
                # the primitive's own, as its waiter deques are.
                if type(attributes) is dict and not cluster.add(attributes):
                    return None
            for attribute in _WAITER_ATTRIBUTES:
                waiters = getattr(primitive, attribute, None)
                if waiters is None:
                    continue
                if len(waiters) > MAX_WAITERS or not cluster.add(waiters):
                    return None
                for waiter_future in list(waiters):
                    if type(waiter_future) not in _FUTURE_TYPES or waiter_future.done():
                        continue
                    for referent in gc.get_referents(waiter_future):
                        owner = getattr(referent, "__self__", None)
                        if (
                            isinstance(owner, _TASK_TYPES)
                            and getattr(owner, "_fut_waiter", None) is waiter_future
                        ):
                            pending.append(owner)
                        elif type(referent) in (list, tuple):
                            pending.extend(
                                callback.__self__
                                for entry in gc.get_referents(referent)
                                for callback in (
                                    gc.get_referents(entry) if type(entry) is tuple else [entry]
                                )
                                if isinstance(getattr(callback, "__self__", None), _TASK_TYPES)
                                and getattr(callback.__self__, "_fut_waiter", None) is waiter_future
                            )
    return cluster


def _judge(cluster: _Cluster) -> tuple[list[bool], list[bool]] | None:
    """For each waiting task of the cluster (in `cluster.tasks` order): whether nothing
    outside reaches it, and whether nothing outside reaches its future but through a waiting
    task. None when the counts moved meanwhile (the loop's thread ran) or do not add up."""
    members = cluster.members
    index = cluster.index
    getrefcount = sys.getrefcount
    before = [getrefcount(member) for member in members]
    edges: list[list[int]] = []
    inside = [0] * len(members)
    find = index.get
    get_referents = gc.get_referents
    for member in members:
        # Every member is alive (held by `members`): an id found is that member's.
        targets = [
            target for target in map(find, map(id, get_referents(member))) if target is not None
        ]
        for target in targets:
            inside[target] += 1
        edges.append(targets)
    member = None
    after = [getrefcount(member) for member in members]
    if before != after:
        return None
    task_positions = set(cluster.tasks)
    held: list[int] = []
    own = after[0]  # the first member, referenced by `members` alone
    for position, count in enumerate(after):
        outside = count - own - inside[position]
        if position in cluster.task_slots:
            outside -= 1  # the look's list of tasks
        if outside < 0:
            return None  # a reference counted twice: do not trust this cluster
        if outside:
            held.append(position)
    if len(cluster.primitives) == 1 and cluster.primitives[0] in held:
        # The one primitive is held from outside: through its deques it reaches every
        # waiter's future, and through their wakeups every waiting task (the usual case).
        nothing = [False] * len(cluster.tasks)
        return nothing, nothing[:]
    reached = _reachable(edges, held, through=set())
    # Weak references keep nothing alive (so not the tasks), but a registry of them (a
    # WeakValueDictionary, a WeakSet: references with a callback) can still hand out the
    # future or the primitive to whoever would set it.
    weakly_held = [
        position
        for position, member in enumerate(members)
        if position and position not in task_positions and _in_weak_registry(member)
    ]
    reached_not_via_tasks = _reachable(
        edges,
        [p for p in held if p not in task_positions] + weakly_held,
        through=task_positions,
    )
    unreferenced = [position not in reached for position in cluster.tasks]
    never_woken = [position not in reached_not_via_tasks for position in cluster.futures]
    for task_position, future_position in zip(cluster.tasks, cluster.futures, strict=True):
        task = members[task_position]
        if getattr(task, "_fut_waiter", None) is not members[future_position]:
            return None  # it moved meanwhile
    return unreferenced, never_woken


def _in_weak_registry(obj: Any) -> bool:
    """Whether a weak reference with a callback (what weak containers make) points to `obj`.
    A plain reference without one is shared by everyone who makes one, the agent included:
    not counted."""
    try:
        if not weakref.getweakrefcount(obj):
            return False
        return any(
            type(reference) is not weakref.ref or reference.__callback__ is not None
            for reference in weakref.getweakrefs(obj)
        )
    except TypeError:
        return False


def _reachable(edges: list[list[int]], starts: list[int], through: set[int]) -> set[int]:
    """Positions reachable from `starts` along `edges`, not going on from those in
    `through` (reached, but no way further)."""
    seen = set(starts)
    pending = [p for p in starts if p not in through]
    while pending:
        current = pending.pop()
        for target in edges[current]:
            if target not in seen:
                seen.add(target)
                if target not in through:
                    pending.append(target)
    return seen


def judge_tasks(
    state: ReachState,
    tasks: Sequence[Any],
    metas: Sequence[Any],
    candidates: Sequence[int],
    look_seconds: float,
    now: float | None = None,
    objects: Sequence[Any] | None = None,
) -> dict[int, tuple[bool, bool]]:
    """(unreferenced, never_woken) by position in `tasks`, for the positions in
    `candidates` (waiting in one of `REACH_KINDS`, with no deadline); positives only.
    `tasks` is the look's own list (it holds each task once); `metas` their metadata;
    `objects`, when given, what each candidate's description names as the object it waits
    on (its `id` fact): a cluster left unjudged (too large) is not built again for the
    other tasks waiting on the same object."""
    clock = time.perf_counter
    started = clock()
    deadline = started + max(BUDGET, look_seconds * BUDGET_SHARE)
    at = time.monotonic() if now is None else now
    verdicts = state.verdicts
    ticks, recheck_ticks = int(at * _CLEARED_TICKS), RECHECK * _CLEARED_TICKS
    state.looks += 1
    found: dict[int, tuple[bool, bool]] = {}
    position_of: dict[int, int] | None = None
    held_by_look: set[int] | None = None
    unjudged_objects: set[Any] = set()
    # A judgment takes 10-35 us: the clock is read every 8 candidates, not 64.
    for count, position in sliced(enumerate(candidates), 8):
        waited_on = objects[count] if objects is not None else None
        task = tasks[position]
        number = metas[position].task_id
        future = getattr(task, "_fut_waiter", None)
        verdict = verdicts.get(number)
        if verdict is not None and future is not None:
            if type(verdict) is int:
                # A negative one about this very future, younger than RECHECK: no judging.
                if (
                    verdict >> _CLEARED_BITS == id(future)
                    and (ticks - verdict) & _CLEARED_MASK < recheck_ticks
                ):
                    continue
            elif isinstance(verdict, Verdict) and verdict.future() is future:
                found[position] = (verdict.unreferenced, verdict.never_woken)
                continue
        if waited_on is not None and waited_on in unjudged_objects:
            _remember(verdicts, number, future, False, False, at)
            continue
        if clock() > deadline:
            continue  # the next looks will get to it
        if held_by_look is None:
            held_by_look = {id(each) for each in sliced(tasks)}
            position_of = {id(each): index for index, each in sliced(enumerate(tasks))}
        assert position_of is not None
        cluster = _build_cluster(task, held_by_look)
        if cluster is None:
            _remember(verdicts, number, future, False, False, at)
            if waited_on is not None:
                unjudged_objects.add(waited_on)
            continue
        task = future = verdict = None  # no reference of ours left but the cluster's
        judged = _judge(cluster)
        members = cluster.members
        if judged is None:
            del cluster, members
            continue  # moved meanwhile: judged again at the next look
        for unreferenced, never_woken, task_position, future_position in zip(
            judged[0], judged[1], cluster.tasks, cluster.futures, strict=True
        ):
            member = members[task_position]
            other = position_of.get(id(member))
            if other is None:
                continue  # a task created after the look's list was read
            _remember(
                verdicts,
                metas[other].task_id,
                members[future_position],
                unreferenced,
                never_woken,
                at,
                never_woken and made_by_its_await(member),
            )
            if unreferenced or never_woken:
                found[other] = (unreferenced, never_woken)
        del cluster, members, member
    if len(verdicts) > 2 * len(candidates) + 1024:
        alive = {metas[position].task_id for position in sliced(candidates)}
        for number in [number for number in sliced(verdicts) if number not in alive]:
            del verdicts[number]
    return found


def _remember(
    verdicts: dict[int, Verdict | Cleared],
    number: int,
    future: Any,
    unreferenced: bool,
    never_woken: bool,
    at: float,
    made_by_await: bool = False,
) -> None:
    if future is None:
        return
    if not (unreferenced or never_woken):
        verdicts[number] = _cleared(future, at)
        return
    try:
        reference = weakref.ref(future)
    except TypeError:
        return
    verdicts[number] = Verdict(reference, unreferenced, never_woken, at, made_by_await)


#: The await expressions that make the very object they wait on, so that nothing else was
#: ever given a way to end the wait but a cancel: the usual ways to wait until cancelled
#: ("run forever"), `await asyncio.Future()`, `await loop.create_future()`, `await
#: asyncio.Event().wait()`. Each as the names of its last calls (calls without arguments on
#: names, each on the result of the one before): whatever made the loop, the future is new.
WAITS_UNTIL_CANCELLED: Final = frozenset({("Future",), ("create_future",), ("Event", "wait")})
#: Instructions that stand between a call's parts and its await without meaning anything here.
_FILLERS: Final = frozenset({"CACHE", "EXTENDED_ARG", "NOP", "PRECALL", "PUSH_NULL"})
_LOADS_BY_NAME: Final = frozenset({"LOAD_ATTR", "LOAD_METHOD", "LOAD_GLOBAL", "LOAD_NAME"})
#: (code, offset) -> the calls `_await_calls` found there: a few entries, code kept alive.
_AWAIT_CALLS: dict[tuple[Any, int], tuple[str, ...]] = {}


def made_by_its_await(task: Any) -> bool:
    """Whether the innermost frame of the task outside asyncio waits in one of
    `WAITS_UNTIL_CANCELLED`: a task found never woken that waits as it was written to.
    Read on a task the look found suspended; False when anything is not as expected."""
    try:
        frames = walk_frames(task_coro(task))
        for frame in reversed(frames):
            code = frame.f_code
            if not code.co_filename.startswith(_ASYNCIO_DIR):
                calls = _await_calls(code, frame.f_lasti)
                return any(calls[-len(way) :] == way for way in WAITS_UNTIL_CANCELLED)
    except Exception:
        pass
    return False


def _await_calls(code: Any, offset: int) -> tuple[str, ...]:
    """The names of the calls without arguments, each on the result of the one before,
    whose result the await at `offset` (where its frame is suspended) waits on:
    `asyncio.get_running_loop().create_future()` ("get_running_loop", "create_future"),
    `self.stop.wait()` ("wait",); () when it awaits something else."""
    key = (code, offset)
    if key in _AWAIT_CALLS:
        return _AWAIT_CALLS[key]
    import dis  # only for the rare task found never woken

    instructions = [each for each in dis.get_instructions(code) if each.opname not in _FILLERS]
    start = None
    for index, instruction in enumerate(instructions):
        if instruction.offset > offset:
            break
        if instruction.opname == "GET_AWAITABLE":
            start = index
    names: list[str] = []
    index = (start if start is not None else 0) - 1
    while start is not None and index >= 1:
        call, load = instructions[index], instructions[index - 1]
        if call.opname != "CALL" or call.arg != 0 or load.opname not in _LOADS_BY_NAME:
            break
        names.insert(0, str(load.argval))
        if load.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            break  # the first name of the expression
        index -= 2
        if index < 1 or instructions[index].opname != "CALL":
            break  # the method of something not made here (`self.stop.wait()`)
    found = tuple(names)
    if len(_AWAIT_CALLS) > 256:
        _AWAIT_CALLS.clear()
    _AWAIT_CALLS[key] = found
    return found


def reach_step(
    state: ReachState,
    tasks: Sequence[Any],
    records: list[Any],
    metas: Sequence[Any],
    look_seconds: float,
    now: float | None = None,
) -> None:
    """The look's step: every `SCAN_PERIOD` seconds, judge the tasks waiting in one of
    `REACH_KINDS` with no deadline (within the budget, verdicts kept) and note the tasks
    cancelled that go on (`Task.cancelling()` above 0: they caught the CancelledError); at
    every look, give the records of the tasks found so their facts (`unreferenced` and
    `cancelling_since` on the record, `never_woken` in its description's `object`), and take
    them off a task that moved or ended. A record that already says what it should stays the
    same object. `tasks`, `records` and `metas` are the look's, position for position."""
    at = time.monotonic() if now is None else now
    if state.scanned_at is None or at - state.scanned_at >= SCAN_PERIOD:
        state.scanned_at = at
        candidates: list[int] = []
        objects: list[Any] = []
        for piece in pieces(range(len(metas))):
            for position in piece:
                awaiting = records[position]["awaiting"]
                if awaiting is None or awaiting["kind"] not in REACH_KINDS:
                    continue
                countdown = awaiting.get("countdown")
                if countdown is not None and countdown_parts(countdown)[1] is not None:
                    continue  # a deadline will wake it
                candidates.append(position)
                facts = awaiting.get("object")
                objects.append(facts.get("id") if facts is not None else None)
        if candidates:
            found = judge_tasks(state, tasks, metas, candidates, look_seconds, at, objects)
            for position in found:
                meta = metas[position]
                state.marked[meta.task_id] = meta
        _note_cancelling(state, tasks, metas)
    if state.marked:
        _refresh_marks(state, tasks, records, metas)


def _note_cancelling(state: ReachState, tasks: Sequence[Any], metas: Sequence[Any]) -> None:
    """The pending tasks asyncio counts as cancelled (`cancelling()` above 0: a cancel was
    asked for and not withdrawn), with when the agent first saw each so."""
    wall = time.time()
    last = state.cancelling
    seen: dict[int, float] = {}
    for piece in pieces(enumerate(tasks)):
        for position, task in piece:
            cancelling = getattr(task, "cancelling", None)
            try:
                count = cancelling() if cancelling is not None else 0
            except Exception:
                count = 0
            if count:
                meta = metas[position]
                number = meta.task_id
                seen[number] = last.get(number, wall)
                state.marked[number] = meta
    state.cancelling = seen


def _refresh_marks(
    state: ReachState, tasks: Sequence[Any], records: list[Any], metas: Sequence[Any]
) -> None:
    """The records of the marked tasks say their facts, while those hold (the task still
    waits on the future it was judged for; it is still cancelled); a task that moved or
    went is unmarked."""
    for number, meta in sliced(list(state.marked.items())):
        slot = meta.slot
        if slot is None or slot >= len(metas) or metas[slot] is not meta:
            del state.marked[number]  # finished, or gone
            state.cancelling.pop(number, None)
            continue
        verdict = state.verdicts.get(number)
        future = getattr(tasks[slot], "_fut_waiter", None)
        unreferenced = never_woken = made_by_await = False
        if (
            isinstance(verdict, Verdict)
            and future is not None
            and verdict.future() is future
            and (verdict.unreferenced or verdict.never_woken)
        ):
            unreferenced, never_woken = verdict.unreferenced, verdict.never_woken
            made_by_await = never_woken and verdict.made_by_await
        since = state.cancelling.get(number)
        wanted = (unreferenced, never_woken, since, made_by_await)
        if wanted == (False, False, None, False):
            del state.marked[number]
        record = records[slot]
        if _says(record) != wanted:
            records[slot] = meta.record = _with_facts(record, *wanted)


def _says(record: Any) -> tuple[bool, bool, float | None, bool]:
    awaiting = record.get("awaiting")
    facts = (awaiting.get("object") if awaiting is not None else None) or {}
    return (
        bool(record.get("unreferenced")),
        bool(facts.get("never_woken")),
        record.get("cancelling_since"),
        bool(facts.get("made_by_await")),
    )


#: The facts this step puts in a description's `object`.
_REACH_FACTS: Final = frozenset({"never_woken", "made_by_await"})


def _with_facts(
    record: Any,
    unreferenced: bool,
    never_woken: bool,
    cancelling_since: float | None,
    made_by_await: bool = False,
) -> Any:
    """A copy of a task's record saying these facts (a description may be shared by several
    tasks: what is this task's goes into its own copy)."""
    result = record.copy()
    result.pop("unreferenced", None)
    result.pop("cancelling_since", None)
    origin = result.pop("created_from", None)
    if unreferenced:
        result["unreferenced"] = True
    if cancelling_since is not None:
        result["cancelling_since"] = cancelling_since
    if origin is not None:  # last, as in every record
        result["created_from"] = origin
    awaiting = result.get("awaiting")
    if awaiting is not None:
        facts = awaiting.get("object") or {}
        if (bool(facts.get("never_woken")), bool(facts.get("made_by_await"))) != (
            never_woken,
            made_by_await,
        ):
            facts = {key: value for key, value in facts.items() if key not in _REACH_FACTS}
            if never_woken:
                facts["never_woken"] = True
                if made_by_await:
                    facts["made_by_await"] = True
            result["awaiting"] = {**awaiting, "object": facts}
    return result
