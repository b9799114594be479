"""Bookkeeping of tasks inside the monitored process: stable task ids, creators, history.

Everything here runs in somebody else's program, so it does as little as possible on their
threads: a task factory wrapper that records who created a task and a done callback that
records how it finished. Reading all of it happens on the agent's own thread. `Tracker` is the
entry: it builds on `LoopTracker` (taskscope.agent.loops), which finds the loops and hooks them.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import sys
import threading
import time
import weakref
from asyncio import tasks as asyncio_tasks
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import BuiltinFunctionType, CodeType, CoroutineType, FrameType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from taskscope.agent import locks
from taskscope.agent.failures import (
    FailureNote,
    TracebackNote,
    UnretrievedWatch,
    format_failure,
)
from taskscope.agent.loops import LoopRecord, LoopTracker
from taskscope.agent.steps import (
    StepFigures,
    StepTimer,
    stall_threshold_setting,
    time_steps_setting,
)
from taskscope.agent.summary import exception_summary, result_summary
from taskscope.protocol import (
    WireAwaiting,
    WireFrame,
    WireRequest,
    WireTask,
    pieces,
    sliced,
    start_slicing,
)

if TYPE_CHECKING:
    from taskscope.agent.chains import StackEntry

#: What never changes in a pending task's record: its id, its parent's id, where it was
#: created (wire frames), its coroutine's name, when the agent first saw it (for a task
#: whose creation it did not see; else None), and the web request it serves (or None).
TaskWire = tuple[str, str | None, tuple[WireFrame, ...], str, float | None, WireRequest | None]
#: Where a task was created: (code, line or instruction offset) pairs, innermost first.
Site = tuple[tuple[CodeType, int], ...]
#: How a task the agent had looked at ended, as the loop thread notes it: id, loop id, name,
#: its coroutine's code (or the name of what it ran), state, finished at, created at, parent
#: id, result or exception summary, creation site (offsets, or line numbers where the next
#: field says so), first seen at, for a failed task its traceback and retrieval note, and
#: the web request its last record said it served.
LookedAtEntry = tuple[
    int,
    str,
    str,
    CodeType | str,
    str,
    float,
    float | None,
    int | None,
    str | None,
    Site,
    bool,
    float | None,
    TracebackNote | None,
    WireRequest | None,
]
#: A creation note of a task not looked at yet, made by the `create_task` shadow: a list
#: whose first six slots are filled at creation, the last five by the done callback, when it
#: becomes the task's history entry as it is (one object per task for the host's collector,
#: and nothing made at the task's end but what only then can be read). Slots: see `_NOTE_*`.
BirthNote = list[Any]
#: The slots of a `BirthNote`: a weak reference to the task (what tells it from a later task
#: at the same address; dropped at its end), its parent's id, when and where (offsets) it
#: was created, its loop's id (None: read at its end), what it was made to run (its
#: coroutine's code, or the name of what it ran); then, at its end: its name, when it
#: finished, its state (None: done), its result or exception summary (None with state done:
#: the result was None), and a failed task's traceback note.
(
    _NOTE_REF,
    _NOTE_PARENT,
    _NOTE_CREATED,
    _NOTE_SITE,
    _NOTE_LOOP,
    _NOTE_WHAT,
    _NOTE_NAME,
    _NOTE_FINISHED,
    _NOTE_STATE,
    _NOTE_SUMMARY,
    _NOTE_FAILURE,
) = range(11)
#: A slot `finished_tasks` appends to a note in the history: the note's `FinishedTask` (one
#: record and one id per entry, whoever asks), kept with the note, not in a cache by id.
_NOTE_FINISHED_TASK = 11


def noted_task(note: BirthNote) -> asyncio.Future[Any] | None:
    """The task of a birth note, None once it is gone or finished. A note read with `get`
    (not popped) can be finished by its loop's thread at any moment, which drops its
    reference (`_NOTE_REF` is None then): read the slot once, then call it."""
    ref = note[0]
    return ref() if ref is not None else None


#: The history: finished birth notes (tasks never looked at while pending) and entries of
#: tasks that were; read by `Tracker.finished_tasks` only.
HistoryEntry = BirthNote | LookedAtEntry

_ASYNCIO_DIR = asyncio.__file__.rsplit("/", 1)[0] + "/"
#: On 3.14+, how often the registry is read whole (`asyncio.all_tasks`, one C call that holds
#: the GIL 10-25 ms at 100,000 tasks) once the agent notes every task made: the looks between
#: take the tasks it has noted (`_noted_pending`).
FULL_READ_SECONDS = 60.0
#: How many of the program's frames a task's creation chain keeps (`created_from`).
CREATION_DEPTH = 6
#: How many of the last failed tasks are kept once the history has moved past them (never
#: more than the history's own limit).
FAILED_HISTORY = 100
#: Where a chain stops: the loop's machinery that ran the creating task's step or callback.
_STOP_CODE = asyncio.events.Handle._run.__code__


class _SiteNode:
    """One frame of a creation chain in the tree of chains seen so far: tasks made at one
    place, through the same callers, share one `Site` tuple, found without allocating.

    A level of the tree (a node's `children`, or `_SITE_TREE` for the frame that called
    create_task) is a dict keyed by the frame's instruction offset: one lookup with a small
    int, and the node's `code` tells whether it is that frame's (a level rarely holds two
    codes at one offset; the second is kept under (offset, id(code)), see `_site_node`). A
    frame of asyncio's own code gets a node too, a pass-through one: its `children` is the
    level it sits in and its `site` its caller's, so the walk goes on as if it were not there;
    and so does the loop's `Handle._run`, where a chain ends, a final one with its caller's
    `site`. Every frame met twice is then found by one lookup.
    """

    __slots__ = ("asyncio_callers", "children", "code", "site", "size")

    def __init__(
        self,
        code: CodeType,
        site: Site,
        children: dict[Any, _SiteNode] | None = None,
        final: bool = False,
    ) -> None:
        self.code = code
        #: The chain down to this frame: (code, offset) pairs, innermost first.
        self.site = site
        #: offset (or (offset, id(code))) -> the node of the caller's frame.
        self.children: dict[Any, _SiteNode] = {} if children is None else children
        #: The chain's length so far, or more than any depth where it ends at this frame
        #: (a module's top level): the walk stops once it reaches the depth asked for.
        self.size = 1_000_000 if final else len(site)
        #: Whether this frame was seen called by asyncio's own code (a transport calling a
        #: protocol): `skipping_creation_chain` then passes such callers by their module's name.
        self.asyncio_callers = False


#: The roots of the tree: offset -> node of the frame that called create_task.
_SITE_TREE: dict[Any, _SiteNode] = {}
_site_nodes = [0]


def _site_node(
    level: dict[Any, _SiteNode], code: CodeType, offset: int, parent: _SiteNode | None
) -> _SiteNode:
    """The node of a frame not found at this level by its offset alone (`place_site_node`):
    asyncio's code as a pass-through node, the loop's machinery that ran the creating step or
    callback (where a chain stops) as a final one that adds no frame."""
    return place_site_node(
        level,
        code,
        offset,
        parent,
        stop=code is _STOP_CODE,
        pass_through=code.co_filename.startswith(_ASYNCIO_DIR),
        tree=_SITE_TREE,
        count=_site_nodes,
    )


def place_site_node(
    level: dict[Any, _SiteNode],
    code: CodeType,
    offset: int,
    parent: _SiteNode | None,
    *,
    stop: bool,
    pass_through: bool,
    tree: dict[Any, _SiteNode],
    count: list[int],
) -> _SiteNode:
    """The node of a frame not found at this level of `tree` by its offset alone: kept under
    the offset, or under (offset, id(code)) when another code holds that offset here; made if
    new, a final node that adds no frame where the chain `stop`s (the loop's machinery), a
    pass-through one for a library's own frame, else one that adds this frame. `count` holds
    the number of nodes made (shared with the tree's other users: trio's spawn chains)."""
    other = level.get((offset, id(code)))
    if other is not None and other.code is code:
        return other
    if count[0] > 20_000:  # a program making code objects without end: start again
        tree.clear()
        count[0] = 0
        level = {}  # the node is made, not kept: its level may be one just dropped
    site = parent.site if parent is not None else ()
    if stop:  # the chain ends with its caller's frame
        node = _SiteNode(code, site, final=True)
    elif pass_through:
        node = _SiteNode(code, site, children=level)
        if parent is not None:
            parent.asyncio_callers = True
    else:
        node = _SiteNode(code, (*site, (code, offset)), final=code.co_name == "<module>")
    known = level.get(offset)
    if known is None or known.code is code:
        level[offset] = node
    else:
        level[(offset, id(code))] = node
    count[0] += 1
    return node


def site_chain(
    tree: dict[Any, _SiteNode],
    make_node: Callable[[dict[Any, _SiteNode], CodeType, int, _SiteNode | None], _SiteNode],
    stop_code: CodeType | None,
    frame: FrameType | None,
    depth: int,
) -> Site:
    """The chain of `frame` and its callers in `tree` (see `_SiteNode`), at most `depth`
    program frames: each frame found by one dict lookup once a chain was seen, a new one
    made by `make_node`, and nothing that outlives the call. A frame of `stop_code` ends the
    chain before its offset is read. Used by `_creation_chain` and trio's spawn chains."""
    level = tree
    node: _SiteNode | None = None
    while frame is not None:
        code = frame.f_code
        if code is stop_code:
            break
        offset = frame.f_lasti
        child = level.get(offset)
        if child is None or child.code is not code:
            child = make_node(level, code, offset, node)
        node = child
        if child.size >= depth:
            break
        level = child.children
        frame = frame.f_back
    return node.site if node is not None else ()


#: _creation_chain(frame, depth):
#: Where a task was asked for: the (code, instruction offset) of the program's frames
#: from the one that called create_task outwards, at most `depth`, asyncio's own skipped,
#: up to the loop's machinery or a module's top level. Offsets rather than line numbers,
#: and the tree of chains already seen (`_SiteNode`): a task made where others were costs
#: a walk with one dict lookup per frame on the host's loop thread, and nothing that
#: outlives the call. The loop's machinery, where most chains end, is told by its code
#: before its offset is read.
_creation_chain: Callable[[FrameType | None, int], Site] = functools.partial(
    site_chain, _SITE_TREE, _site_node, _STOP_CODE
)


#: The module of the function running n frames up (3.12+), read without making a frame
#: object for it.
_frame_module: Callable[[int], str | None] | None = getattr(sys, "_getframemodulename", None)
_getframe = sys._getframe
#: The same, for `skipping_creation_chain`, which 3.11 never calls.
_module_of: Callable[[int], object] = getattr(sys, "_getframemodulename", _getframe)
#: The modules whose frames `skipping_creation_chain` passes by name: asyncio's, but for
#: `asyncio.events`, home of `Handle._run`, where a chain stops (told by its code).
_ASYNCIO_MODULES = frozenset(
    name
    for name in sys.modules
    if name.startswith("asyncio.")
    and name != "asyncio.events"
    and (getattr(sys.modules[name], "__file__", None) or "").startswith(_ASYNCIO_DIR)
)


def skipping_creation_chain(
    frame: FrameType | None,
    at: int,
    depth: int,
    tree: dict[Any, _SiteNode] = _SITE_TREE,
    make_node: Callable[
        [dict[Any, _SiteNode], CodeType, int, _SiteNode | None], _SiteNode
    ] = _site_node,
    stop_code: CodeType = _STOP_CODE,
) -> Site:
    """`_creation_chain(frame, depth)` on 3.12+, `frame` being `at` frames above this call:
    the same chain, but past a frame seen called by asyncio's own code
    (`_SiteNode.asyncio_callers`: a protocol's `data_received` under a transport's
    `_read_ready`), the callers of asyncio's modules are passed by name
    (`sys._getframemodulename`), with no frame object made for them at each task;
    `sys._getframe` gives the next frame of the program, or of `asyncio.events`, told by its
    code as `site_chain` tells it. The tree and the rest are bound as defaults: a call with
    defaults costs less than one through a `functools.partial`."""
    level = tree
    node: _SiteNode | None = None
    while frame is not None:
        code = frame.f_code
        if code is stop_code:
            break
        offset = frame.f_lasti
        child = level.get(offset)
        if child is None or child.code is not code:
            child = make_node(level, code, offset, node)
        node = child
        if child.size >= depth:
            break
        level = child.children
        at += 1
        if child.asyncio_callers:
            try:
                while _module_of(at) in _ASYNCIO_MODULES:
                    at += 1
            except Exception:  # a __module__ that is no string (unhashable): that frame is read
                pass
            try:
                frame = _getframe(at)
            except ValueError:  # the bottom of the stack
                break
            continue
        frame = frame.f_back
    return node.site if node is not None else ()


_T = TypeVar("_T")
_monotonic = time.monotonic
_wall = time.time
_weakref = weakref.ref


#: How a look notes the future a task is suspended on, to know at the next one whether the
#: task has moved: a weak reference to it, or for a sleep's the float its timer ends at
#: (`introspect._on_noted_future`). An id could not tell: a freed future's address is the
#: next one's.
FutureNote = weakref.ref[asyncio.Future[Any]] | float


class TaskMeta(weakref.ref):  # type: ignore[type-arg]
    """What the agent knows about a task beyond the task object itself. It is also the
    agent's weak reference to the task (calling it gives the task, or None once gone): one
    object per task, where a reference, a record and a pair of them were three for the host's
    garbage collector to track. Kept for every live task between looks, so its fields are
    few (each is 8 bytes per task): what is rarely used sits in side objects made when used
    (`timing`), what one look needs is cleared after it (`slot`), and what the builder's last
    record already holds is read from that record rather than kept twice."""

    __slots__ = (
        "chain_entry",
        "chain_fut",
        "chain_self",
        "coro",
        "created_at",
        "created_from",
        "key",
        "parent_id",
        "rec_awaited",
        "rec_awaiting",
        "rec_created_at",
        "rec_loop",
        "rec_name",
        "rec_running",
        "rec_stack",
        "rec_waiters",
        "record",
        "seen_at",
        "slot",
        "task_id",
        "timing",
        "watched",
    )

    def __new__(
        cls,
        task: asyncio.Future[Any],
        callback: Callable[[TaskMeta], None] | None,
        task_id: int,
    ) -> TaskMeta:
        return super().__new__(cls, task, callback)

    def __init__(
        self,
        task: asyncio.Future[Any],
        callback: Callable[[TaskMeta], None] | None,
        task_id: int,
    ) -> None:
        # The reference itself was made by __new__ (weakref's own __init__ only checks).
        #: id() of the task: its key in `Tracker._meta`.
        self.key: int = id(task)
        self.task_id = task_id
        self.parent_id: int | None = None
        self.created_at: float | None = None
        #: When the agent first saw a task whose creation it did not see (else None).
        self.seen_at: float | None = None
        #: (code, line) pairs, innermost first: where `create_task` was called.
        self.created_from: Site = ()
        #: Whether the history callback is on the task.
        self.watched = False
        #: What it was made to run, as its creation note read it, for a task looked at
        #: before that note was made (an eager task that finished inside create_task has
        #: dropped its coroutine by the time its end is noted).
        self.coro = ""
        # The snapshot builder's notes from its last look, while the task stays pending:
        # fields rather than a tuple or an object of their own, so that a look at 100,000
        # tasks neither allocates nor keeps more objects for the host's garbage collector.
        #: Where its chain was suspended: its `_fut_waiter` then, noted as a `FutureNote`
        #: (None: no note, and the other `chain_` fields mean nothing), the suspension point's
        #: `StackEntry` (wire stack, classification plan, shared by every task suspended
        #: there) and a weak reference to the `self` of the plan's first step.
        self.chain_fut: FutureNote | None = None
        self.chain_entry: StackEntry | None = None
        self.chain_self: weakref.ref[Any] | None = None
        #: Its last record (None: no note, and the other `rec_` fields mean nothing; also
        #: what never changes in a pending task's record, its id, parent, coroutine, origin,
        #: is read from there) and what that was made of: loop id, name, stack, description
        #: before the tasks it awaits were added, running, created at, the ids of the tasks
        #: it awaited (None: none) and of those awaiting it.
        self.record: WireTask | None = None
        self.rec_loop = ""
        self.rec_name = ""
        self.rec_stack: tuple[WireFrame, ...] = ()
        self.rec_awaiting: WireAwaiting | None = None
        self.rec_running = False
        self.rec_created_at: float | None = None
        self.rec_awaited: list[int] | None = None
        self.rec_waiters: list[int] | None = None
        #: The task's position in the snapshot being built (valid during that build only,
        #: None between looks).
        self.slot: int | None = None
        #: Step timing (see `StepFigures`), once a step of the task was timed.
        self.timing: StepFigures | None = None


@dataclass(slots=True)
class FinishedTask:
    """A finished task as remembered by the bounded history."""

    task_id: int
    loop_id: str
    name: str
    coro: str
    state: str
    finished_at: float
    created_at: float | None
    parent_id: int | None
    summary: str | None
    created_from: Site
    #: When the agent first saw it, for a task whose creation it did not see.
    first_seen_at: float | None = None
    #: Its snapshot record, made by the snapshot builder on first use (made again only when
    #: whether its exception was retrieved changes).
    wire: WireTask | None = None
    #: A failed task's traceback note (see taskscope.agent.failures), and the text made of it.
    failure: TracebackNote | None = None
    traceback: str | None = None
    #: The web request it served, when a look saw it pending (`web_requests`).
    request: WireRequest | None = None


class Tracker(LoopTracker):
    """Knows every loop and every task the agent has seen; safe to read from any thread."""

    def __init__(
        self,
        history_limit: int = 1000,
        track_tasks: bool = True,
        creation_depth: int = CREATION_DEPTH,
        stall_threshold: float | None = None,
        time_steps: bool | None = None,
    ) -> None:
        super().__init__()
        self.history_limit = history_limit
        #: How many frames of each task's creation chain to note (see `_creation_chain`).
        self.creation_depth = max(1, creation_depth)
        #: Whether to note creators and finishes per task (a few microseconds per task on the
        #: loop thread). Off: nothing runs per task; snapshots still show every pending task.
        self.track_tasks = track_tasks
        # How tasks ended, as plain tuples (cheap to make on the loop thread); turned into
        # FinishedTask records by finished_tasks() on the agent's thread.
        self._history: deque[HistoryEntry] = deque(maxlen=history_limit)
        #: The last failed ones among them, kept when the history has moved past them: in a
        #: busy service a thousand tasks end each second, and a failure whose exception
        #: nobody retrieved would leave the history before anyone could be told of it.
        self._failed_history: deque[HistoryEntry] = deque(maxlen=min(FAILED_HISTORY, history_limit))
        #: The looked-at entries' records (a birth note keeps its own: `_NOTE_FINISHED_TASK`).
        self._finished_cache: dict[int, tuple[HistoryEntry, FinishedTask]] = {}
        self._finished_lock = threading.Lock()
        # id(task) -> (weak reference, parent id, created at, creation site) for tasks made
        # since install and not looked at yet: the cheapest record the loop thread can make.
        self._born: dict[int, BirthNote] = {}
        self._ids = itertools.count(1)
        # id(task) -> its metadata (a weak reference to it): cheaper than a
        # WeakKeyDictionary on lookups.
        self._meta: dict[int, TaskMeta] = {}
        #: Task id -> when a cancel was handed to its loop, until the loop delivers it.
        self.cancel_requests: dict[int, float] = {}
        #: Ids whose last record carries a `cancel_requested_at` (agent thread only).
        self.cancel_marked: set[int] = set()
        # The same function object is added to every task, so it can be recognised.
        self.done_callback = self._history_callback()
        #: id(task) -> the failure note of a failed task, for the loops' exception handler
        #: watch (`UnretrievedWatch`); pruned on the agent's thread once the task is gone.
        self.failures: dict[int, FailureNote] = {}
        self._forget = self._forget_task
        #: When the registry was last read whole on 3.14+ (`_pending_tasks`), and the loops
        #: whose every task the agent has noted since then (its `create_task` shadow on them).
        self.full_read_at = float("-inf")
        self.covered_loops: frozenset[int] = frozenset()
        #: Watches the loops' steps for stalls; with `time_steps` (off by default, and with
        #: `track_tasks` off) also times every step, for the runtime figures.
        self.steps: StepTimer | None = StepTimer(
            self,
            stall_threshold_setting(stall_threshold),
            timed=track_tasks and time_steps_setting(time_steps),
        )

    # --- task ids and metadata -----------------------------------------------------------------

    def _forget_task(self, meta: TaskMeta) -> None:
        if self._meta.get(meta.key) is meta:
            del self._meta[meta.key]

    def task_metas(self) -> Mapping[int, TaskMeta]:
        """The metadata of the tasks the agent has looked at, by id(task): live, to read only.
        An entry is a task's only when calling it gives that task (ids are reused)."""
        return self._meta

    def meta_of(self, task: asyncio.Future[Any]) -> TaskMeta | None:
        meta = self._meta.get(id(task))
        if meta is not None and meta() is task:
            return meta
        return None

    def ensure_meta(self, task: asyncio.Future[Any]) -> TaskMeta:
        """The task's metadata, giving it a new id if the agent has not seen it before."""
        meta = self._meta.get(id(task))
        if meta is not None and meta() is task:
            return meta
        meta = TaskMeta(task, self._forget, next(self._ids))
        born = self._born.pop(id(task), None)
        if born is not None and born[0]() is task:
            meta.parent_id, meta.created_at = born[1], born[2]
            meta.created_from = _site_lines(born[3])
            meta.watched = True
        else:
            meta.seen_at = _wall()
        # Keyed by the metadata's own `key`: one int object for both (32 bytes a task).
        self._meta[meta.key] = meta
        steps = self.steps
        if steps is not None and steps.unmet:
            steps.adopt_unmet(task, meta)
        return meta

    def birth_note(self, task: asyncio.Future[Any]) -> BirthNote | None:
        """The creation note of a task made since the agent came and not looked at yet."""
        born = self._born.get(id(task))
        return born if born is not None and noted_task(born) is task else None

    def id_of(self, task: asyncio.Future[Any]) -> int:
        return self.ensure_meta(task).task_id

    def on_task_created(
        self, task: asyncio.Future[Any], parent: asyncio.Future[Any] | None, coro: Any = None
    ) -> None:
        """Runs on the loop thread for every task made through a loop whose `create_task`
        could not be shadowed (the agent's task factory): note who made it, when and where,
        as cheaply as possible (an id is given on first look). `coro`: what it was made to
        run (an eager task finished at once may have dropped it)."""
        try:
            parent_id = self.ensure_meta(parent).task_id if parent is not None else None
            site = _creation_chain(sys._getframe(2), self.creation_depth)
            what = _what_ran(task, task_coro(task) if coro is None else coro)
            record = self.loops.get(id(task.get_loop()))
            if id(task) in self._meta:
                self.note_creation(task, parent_id, site, what)
            else:
                loop_id = record.loop_id if record is not None else None
                self._born[id(task)] = [
                    _weakref(task), parent_id, _wall(), site, loop_id, what,
                    None, None, None, None, None,
                ]  # fmt: skip
            context = record.callback_context if record is not None else None
            # On a task already done (eager, finished at once) asyncio schedules the
            # callback for the loop's next turn, once its name is given.
            task.add_done_callback(self.done_callback, context=context)
        except Exception:  # the agent never breaks task creation
            pass

    def note_creation(
        self,
        task: asyncio.Future[Any],
        parent_id: int | None,
        site: Site,
        what: CodeType | str = "",
    ) -> None:
        """A creation note for a task the agent has already looked at (and given an id)."""
        meta = self._meta.get(id(task))
        if meta is not None and meta() is task:
            meta.parent_id, meta.created_at = parent_id, _wall()
            # Its next record is made afresh, with what is noted now.
            meta.created_from, meta.record, meta.watched = _site_lines(site), None, True
            meta.coro = what.co_qualname if type(what) is CodeType else str(what)
        else:
            record = self.loops.get(id(task.get_loop()))
            loop_id = record.loop_id if record is not None else None
            self._born[id(task)] = [
                _weakref(task), parent_id, _wall(), site, loop_id, what,
                None, None, None, None, None,
            ]  # fmt: skip

    def _history_callback(self) -> Callable[[asyncio.Future[Any]], None]:
        """The done callback every tracked task gets: it notes how the task ended in the
        history, without keeping it alive. A closure over what it touches: it runs on the
        host's loop thread once per task, so every call and object saved counts. A task
        never looked at (most) has its birth note, which becomes its history entry: only
        what the task's end alone tells is written into it (its name, the time, its state
        and summary), the rest is read from it on the agent's thread (`finished_tasks`)."""
        metas, born, history, loops = self._meta, self._born, self._history, self.loops
        failed_history = self._failed_history
        take_note, new_id, tracker = born.pop, self._ids.__next__, self
        wall = _wall

        def on_task_done(task: asyncio.Future[Any]) -> None:
            try:
                # Most tasks were made since the agent came and never looked at: their birth
                # note says all (a task given its metadata had its note taken then).
                note = take_note(id(task), None)
                finished: Any = task  # a Task; read through its C attributes
                if note is not None and note[0]() is task:
                    # Slots: see `_NOTE_*` (literals here: a constant index costs nothing).
                    if finished.cancelled():
                        note[8] = "cancelled"
                    else:
                        exc = finished._exception
                        if exc is None:
                            result = finished._result
                            if result is not None:
                                note[9] = result_summary(result)
                        else:
                            note[8], note[9] = "failed", exception_summary(exc)
                            note[10] = tracker._note_failure(finished, exc)
                            failed_history.append(note)  # the same note, completed below
                    if note[4] is None:
                        loop_record = loops.get(id(finished._loop))
                        note[4] = loop_record.loop_id if loop_record else "?"
                    # Its weak reference is dropped: one object fewer per history entry
                    # for the host's collector to walk (`finished_tasks` never reads it).
                    note[0] = None
                    note[6] = finished.get_name()
                    note[7] = wall()
                    history.append(note)
                    return
                meta = metas.get(id(task))
                request = None
                if meta is not None and meta() is task:
                    shown = meta.record  # its last record: the history names it alike
                    if shown is not None:
                        request = shown.get("request")  # a web request it was seen serve
                    meta.chain_fut = meta.record = None  # the builder's notes: pending only
                    task_id, parent_id = meta.task_id, meta.parent_id
                    created_at, site, in_lines = meta.created_at, meta.created_from, True
                    coro_fallback = meta.coro
                    seen_at = meta.seen_at if created_at is None else None
                else:
                    task_id, parent_id, created_at, site = new_id(), None, None, ()
                    in_lines, coro_fallback, seen_at, shown = False, "", None, None
                failure = None
                if finished.cancelled():
                    state, summary = "cancelled", None
                else:
                    exc = finished._exception
                    if exc is None:
                        result = finished._result
                        state = "done"
                        summary = "None" if result is None else result_summary(result)
                    else:
                        state, summary = "failed", exception_summary(exc)
                        failure = tracker._note_failure(finished, exc)
                loop_record = loops.get(id(finished._loop))
                what: CodeType | str
                if shown is not None:
                    what = shown["coro"]  # seen through a wrapper (`wrapped_coro`) if need be
                else:
                    what = _what_ran(finished, task_coro(finished))
                entry = (
                    task_id,
                    loop_record.loop_id if loop_record else "?",
                    finished.get_name(),
                    what or coro_fallback,
                    state,
                    wall(),
                    created_at,
                    parent_id,
                    summary,
                    site,
                    in_lines,
                    seen_at,
                    failure,
                    request,
                )
                history.append(entry)
                if state == "failed":
                    failed_history.append(entry)
            except Exception:
                pass

        # A program that prints a task shows its callbacks (`cb=[...]`, and asyncio's debug
        # mode logs slow steps so): this one says whose it is.
        on_task_done.__name__ = on_task_done.__qualname__ = "taskscope_history"
        return on_task_done

    def _note_failure(self, task: Any, exc: BaseException) -> FailureNote | None:
        """A failed task's traceback and retrieval note (loop thread, failed tasks only)."""
        try:
            loop = task._loop
            watched = _unretrieved_watch(loop) is not None
        except Exception:
            watched = False
        try:
            note = FailureNote(task, exc, watched)
        except Exception:
            return None
        failures = self.failures
        failures[id(task)] = note
        if len(failures) > self.history_limit + 64:
            # The oldest note has left the history (or will before anyone reads it): its
            # task's report no longer matters. Insertion order: the first is the oldest.
            failures.pop(next(iter(failures)), None)
        return note

    def note_finished_elsewhere(
        self,
        task_id: int,
        loop_id: str,
        name: str,
        coro: CodeType | str,
        state: str,
        created_at: float | None,
        parent_id: int | None,
        summary: str | None,
        created_from: Site,
        first_seen_at: float | None,
        failure: TracebackNote | None,
    ) -> None:
        """A task not asyncio's (a trio task: taskscope.agent.trio_runs) that ended now, into
        the history as plain fields; `created_from` in instruction offsets, and for a failed
        task its traceback note."""
        finished_at = _wall()
        entry: LookedAtEntry = (
            task_id,
            loop_id,
            name,
            coro,
            state,
            finished_at,
            created_at,
            parent_id,
            summary,
            created_from,
            False,
            first_seen_at,
            failure,
            None,
        )
        self._history.append(entry)
        if state == "failed":
            self._failed_history.append(entry)

    def finished_tasks(self) -> list[FinishedTask]:
        """The history, oldest first, as records (made once per finished task, on the agent's
        thread; a task never looked at gets its id here)."""
        with self._finished_lock:  # one record, and one id, per entry whoever asks
            raw = list(self._history)
            if self._failed_history and len(raw) == self._history.maxlen:
                # Failures the history has moved past (only a full one has): older than all
                # it holds (both are in order of ending), so they come first.
                held = {id(item) for item in raw}
                past = [item for item in list(self._failed_history) if id(item) not in held]
                if past:
                    raw = past + raw
            cache = self._finished_cache
            result = []
            for item in raw:
                if type(item) is list:  # a birth note (most entries)
                    if len(item) > _NOTE_FINISHED_TASK:
                        result.append(item[_NOTE_FINISHED_TASK])
                        continue
                    finished = self._finished_record(item)
                    item.append(finished)
                    result.append(finished)
                    continue
                cached = cache.get(id(item))
                if cached is not None and cached[0] is item:
                    result.append(cached[1])
                    continue
                finished = self._finished_record(item)
                cache[id(item)] = (item, finished)
                result.append(finished)
            if len(cache) > 2 * len(raw) + 64:
                alive = {id(item) for item in raw}
                for key in [key for key in cache if key not in alive]:
                    del cache[key]
        return result

    def _finished_record(self, item: HistoryEntry) -> FinishedTask:
        if type(item) is list:  # a birth note, finished (see `BirthNote`): most entries
            # Made from the note's slots at once, and positionally (FinishedTask's field order):
            # keywords cost a slotted dataclass more, and a busy service's history is new at
            # every look of a subscription (issue 10).
            state, summary = item[_NOTE_STATE], item[_NOTE_SUMMARY]
            if state is None:
                state, summary = "done", "None" if summary is None else summary
            what, failure = item[_NOTE_WHAT], item[_NOTE_FAILURE]
            return FinishedTask(
                next(self._ids),
                item[_NOTE_LOOP],
                item[_NOTE_NAME],
                what.co_qualname if type(what) is CodeType else what,
                state,
                item[_NOTE_FINISHED],
                item[_NOTE_CREATED],
                item[_NOTE_PARENT],
                summary,
                _site_lines(item[_NOTE_SITE]),
                None,
                None,
                failure,
                None if failure is None else _formatted(failure),
            )
        (
            task_id,
            loop_id,
            name,
            coro,
            state,
            finished_at,
            created_at,
            parent,
            summary,
            site,
            in_lines,
            seen_at,
            failure,
            request,
        ) = item
        return FinishedTask(
            task_id,
            loop_id,
            name,
            coro.co_qualname if type(coro) is CodeType else coro,
            state,
            finished_at,
            created_at,
            parent,
            summary,
            site if in_lines else _site_lines(site),
            seen_at,
            None,
            failure,
            _formatted(failure),
            request,
        )

    def prune(self) -> None:
        """Drop creation notes of tasks that died without finishing, and notes of locks
        collected while held (agent thread, every `PRUNE_INTERVAL` whether or not anyone
        looks). Gives the GIL to the loop every `SLICE_SECONDS`, as a look does: with 100,000
        tasks made and not looked at yet, one pass over their notes held it 15-25 ms."""
        start_slicing()
        locks.prune()
        for key, note in sliced(list(self.failures.items())):
            if note.task_ref() is None:
                # Dropped at the second look that finds it gone: asyncio may still be
                # reporting it (a collected cycle clears the reference first).
                if note.dead_seen and self.failures.get(key) is note:
                    self.failures.pop(key, None)
                note.dead_seen = True
        born = self._born
        # The keys, copied in one C call (the loops' threads add notes meanwhile): a copy of
        # the items would make a tuple per note.
        for keys in pieces(list(born)):
            for key in keys:
                birth = born.get(key)
                if birth is not None and noted_task(birth) is None:
                    born.pop(key, None)

    def watch_existing(self, tasks: Iterable[asyncio.Future[Any]]) -> None:
        """Adds the history callback to tasks that existed before the agent (on their loop)."""
        if not self.track_tasks:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[Any]]] = {}
        for task in tasks:
            meta = self.ensure_meta(task)
            if not meta.watched:
                meta.watched = True
                by_loop.setdefault(task.get_loop(), []).append(task)
        for loop, pending in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._add_callbacks, pending)
            except RuntimeError:  # loop closed
                pass

    def _add_callbacks(self, tasks: list[asyncio.Future[Any]]) -> None:
        callback = self.done_callback
        for task in tasks:
            try:
                callbacks = task._callbacks
                if not task.done() and not any(cb[0] is callback for cb in callbacks or ()):
                    record = self.loops.get(id(task.get_loop()))
                    context = record.callback_context if record is not None else None
                    task.add_done_callback(callback, context=context)
            except Exception:
                pass

    # --- the task factory each adopted loop gets -----------------------------------------------

    def _install_factory(self, record: LoopRecord, loop: asyncio.AbstractEventLoop) -> None:
        """See every task this loop creates, with who created it.

        The loop object's `create_task` is shadowed by a wrapper that calls the original and
        records the task: the application's task factory (eager tasks included) is neither
        replaced nor wrapped, and `get_task_factory()` answers as before. Loops whose objects
        take no attributes (compiled loops) get a wrapping task factory instead.
        """
        if record.factory_installed or not self.track_tasks:
            return
        tracker = self
        current_task = asyncio.current_task
        original_create_task = loop.create_task
        metas, born, done_callback = self._meta, self._born, self.done_callback
        callback_context, loop_id = record.callback_context, record.loop_id
        get_frame, creation_chain, depth = sys._getframe, _creation_chain, self.creation_depth
        module_of, skipping_chain = _frame_module, skipping_creation_chain
        coroutine, plain_task = CoroutineType, asyncio.Task
        # The metadata (a weak reference) of the last parent seen: a program makes its tasks
        # in runs from one parent, which is then known without a lookup by address.
        last_parent: Any = _no_task

        def create_task(coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            # `on_task_created`, inlined: this runs on the host's loop thread for every task.
            nonlocal last_parent
            parent = current_task(loop)
            task = original_create_task(coro, **kwargs) if kwargs else original_create_task(coro)
            try:
                if parent is None:
                    parent_id = None
                elif last_parent() is parent:
                    parent_id = last_parent.task_id
                else:
                    parent_meta = metas.get(id(parent))
                    if parent_meta is None or parent_meta() is not parent:
                        parent_meta = tracker.ensure_meta(parent)
                    last_parent, parent_id = parent_meta, parent_meta.task_id
                # The frame of asyncio.create_task, which most tasks come through, is
                # passed by its module's name: no frame object made for it; nor for the
                # asyncio frames above a protocol callback that made a task.
                if module_of is None:
                    site = creation_chain(get_frame(1), depth)
                elif module_of(1) == "asyncio.tasks":
                    site = skipping_chain(get_frame(2), 3, depth)
                else:
                    site = skipping_chain(get_frame(1), 2, depth)
                # What it runs, read now from the coroutine in hand (at its end the task
                # may have dropped it: an eager task finished at once).
                if type(task) is not plain_task:
                    what = _what_ran(task, coro)
                elif type(coro) is coroutine:
                    what = coro.cr_code
                else:
                    what = coro_name(coro)
                key = id(task)
                if key in metas:  # the agent looked at it already (another thread)
                    tracker.note_creation(task, parent_id, site, what)
                else:
                    born[key] = [
                        _weakref(task), parent_id, _wall(), site, loop_id, what,
                        None, None, None, None, None,
                    ]  # fmt: skip
                # On a task already done (eager, finished at once) asyncio schedules the
                # callback for the loop's next turn, once its name is given.
                task.add_done_callback(done_callback, context=callback_context)
            except Exception:  # the agent never breaks task creation
                pass
            return task

        try:
            loop.create_task = create_task  # type: ignore[method-assign]
            record.patched_methods = True
            record.factory_installed = True
        except (AttributeError, TypeError):
            pass
        else:
            self._watch_unretrieved(loop)
            return
        record.app_factory = loop.get_task_factory()
        app_factory = record.app_factory
        make_task = asyncio.Task

        def taskscope_task_factory(
            loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
        ) -> asyncio.Future[Any]:
            parent = current_task(loop)
            if app_factory is None:
                task: asyncio.Future[Any] = make_task(coro, loop=loop, **kwargs)
            else:
                task = app_factory(loop, coro, **kwargs)
            tracker.on_task_created(task, parent, coro)
            return task

        loop.set_task_factory(taskscope_task_factory)
        record.factory_installed = True

    def install(self) -> None:
        """Hook loop start-up, adopt the loops that exist, (tracking tasks) note who takes
        each asyncio.Lock (taskscope.agent.locks), and watch (or time) the loops' steps."""
        if self._installed:
            return
        if self.steps is not None:
            self.loop_start_listeners.append(self.steps.loop_started)
        super().install()
        if self.track_tasks and locks.wanted():
            locks.install()
        if self.steps is not None:
            self.steps.install()

    def _watch_unretrieved(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stand in the loop's `call_exception_handler` (see `UnretrievedWatch`)."""
        if _unretrieved_watch(loop) is None:
            try:
                watch = UnretrievedWatch(loop.call_exception_handler, self.failures)
                loop.call_exception_handler = watch  # type: ignore[method-assign]
            except Exception:
                pass

    def _restore_loop(self, record: LoopRecord, loop: asyncio.AbstractEventLoop) -> None:
        super()._restore_loop(record, loop)
        try:
            if _unretrieved_watch(loop) is not None:
                delattr(loop, "call_exception_handler")
        except Exception:
            pass

    def uninstall(self) -> None:
        """Undo every change: the loop hook, task factories, heartbeats, task callbacks, the
        lock-holder notes and the step timing."""
        if not self._installed:
            return
        super().uninstall()
        locks.uninstall()
        if self.steps is not None:
            self.steps.uninstall()
        callback = self.done_callback
        for task in pending_tasks(self):
            try:
                loop = task.get_loop()
                if loop.is_running():
                    loop.call_soon_threadsafe(task.remove_done_callback, callback)
                else:
                    task.remove_done_callback(callback)
            except Exception:
                pass


def _no_task() -> None:
    """Stands for a dead weak reference: no task is the last parent yet."""
    return None


def _what_ran(task: Any, coro: Any) -> CodeType | str:
    """What a task was made to run, for its history entry: its coroutine's code (named on
    the agent's thread), seen through a pass-through wrapper (`wrapped_coro`) for a task of
    another class than asyncio's; or the name of what it ran, when not a coroutine."""
    if type(task) is not asyncio.Task:
        coro = wrapped_coro(task, coro)
    return coro.cr_code if type(coro) is CoroutineType else coro_name(coro)


def _unretrieved_watch(loop: asyncio.AbstractEventLoop) -> UnretrievedWatch | None:
    """The agent's watch standing in the loop's `call_exception_handler`, or None. Read as
    an attribute, never through the loop's `__dict__`: asking an object for its `__dict__`
    makes one where its attributes were kept inline, and from then on (3.11, 3.12) none of
    its methods' calls is specialised by the interpreter; on a loop, asyncio's every
    `self._call_soon(...)`, `self._check_closed()` and the like: 16% more CPU per no-op task,
    agent or not (`benchmarks/churn_cost.py`, README's churn bullet)."""
    handler = getattr(loop, "call_exception_handler", None)
    return handler if type(handler) is UnretrievedWatch else None


def _formatted(failure: TracebackNote | None) -> str | None:
    if failure is None:
        return None
    try:
        return format_failure(failure)
    except Exception:
        return None


def task_coro(task: Any) -> Any:
    """A task's coroutine, or None. Never `get_coro()`: on 3.12.0-3.12.x it crashes the
    process for an eager task that finished in its first step (its coroutine is cleared)."""
    try:
        return task._coro
    except AttributeError:
        return None


#: Coroutines that only await another, made by tools around the program's own, by qualified
#: name: the package they come from. aiomonitor's task factory (`hook_task_factory=True`) runs
#: each coroutine in its `Monitor._coro_wrapper` (and keeps it as `_orig_coro` on its
#: `TracedTask`); anyio runs each task's in a `TaskHandle._run_coro` and its main one in
#: `AsyncIOBackend.run.<locals>.wrapper`; `uvloop.run` its main one in `run.<locals>.wrapper`.
PASS_THROUGH: Final = {
    "Monitor._coro_wrapper": "aiomonitor",
    "TaskHandle._run_coro": "anyio",
    "AsyncIOBackend.run.<locals>.wrapper": "anyio",
    "run.<locals>.wrapper": "uvloop",
}


def pass_through_package(code: Any) -> str | None:
    """The package of a pass-through wrapper (`PASS_THROUGH`) whose code `code` is, or None."""
    package = PASS_THROUGH.get(code.co_qualname)
    if package is None or f"{package}{os.sep}" not in code.co_filename:
        return None
    return package


def wrapped_coro(task: Any, coro: Any) -> Any:
    """The coroutine a task was made to run, seen through a pass-through wrapper
    (`PASS_THROUGH`): the one it awaits while suspended there (aiomonitor's: the one it
    keeps); otherwise `coro`. Tasks are named by it, as aiomonitor and anyio name them; the
    wrapper stays on the task's stack."""
    code = getattr(coro, "cr_code", None)
    if code is None:
        return coro
    package = pass_through_package(code)
    if package is None:
        return coro
    if package == "aiomonitor":
        original = getattr(task, "_orig_coro", None)
        return coro if original is None else original
    inner = getattr(coro, "cr_await", None)
    return inner if hasattr(inner, "cr_code") else coro


def task_coro_name(task: Any) -> str:
    """The name of the coroutine a task was made to run (see `wrapped_coro`)."""
    coro = task_coro(task)
    name = coro_name(coro)
    return name if name not in PASS_THROUGH else coro_name(wrapped_coro(task, coro))


def coro_name(coro: Any) -> str:
    """The qualified name of a coroutine (or whatever a task wraps), without running its code."""
    if coro is None:
        return ""
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    if code is not None:
        return str(code.co_qualname)
    return type(coro).__qualname__


def _line_at(code: CodeType, offset: int) -> int | None:
    for start, end, line in code.co_lines():
        if start <= offset < end:
            return line
    return None


#: id(site) -> (the site, the same with line numbers): tasks made at one place share one
#: site tuple (see `_SiteNode`), hence one with lines (and the snapshot builder, its wire form).
_SITE_LINES: dict[int, tuple[Site, Site]] = {}


def _site_lines(site: Site) -> Site:
    """Creation chains with line numbers instead of instruction offsets."""
    if not site:
        return site
    known = _SITE_LINES.get(id(site))
    if known is not None and known[0] is site:
        return known[1]
    lines = tuple((code, _line_at(code, offset) or 0) for code, offset in site)
    if len(_SITE_LINES) > 10_000:
        _SITE_LINES.clear()
    _SITE_LINES[id(site)] = (site, lines)
    return lines


def _registry_sources() -> tuple[Any, ...] | None:
    """The Python-level sets that hold every task, or None where the registry lives in C.

    From 3.14 native tasks sit in per-thread lists inside ``_asyncio`` and
    ``_scheduled_tasks`` stays empty for them; ``all_tasks`` is then a C function, which is the
    feature checked here rather than a version number.
    """
    if isinstance(asyncio_tasks.all_tasks, BuiltinFunctionType):
        return None
    scheduled = getattr(asyncio_tasks, "_scheduled_tasks", None)
    if scheduled is not None:
        return (scheduled, getattr(asyncio_tasks, "_eager_tasks", ()))
    all_tasks = getattr(asyncio_tasks, "_all_tasks", None)
    if all_tasks is not None:
        return (all_tasks,)
    return None


def pending_tasks(
    tracker: Tracker, into: list[asyncio.Task[Any]] | None = None
) -> list[asyncio.Task[Any]]:
    """Every pending task of the process, read safely from a thread that is not the loop's;
    appended to `into` (an empty list) when given, which is returned."""
    found = _pending_tasks(tracker, into)
    frozen = tracker.frozen_loop_ids
    if frozen:
        found[:] = [task for task in found if id(task.get_loop()) not in frozen]
    return found


def _pending_tasks(
    tracker: Tracker, into: list[asyncio.Task[Any]] | None
) -> list[asyncio.Task[Any]]:
    sources = _registry_sources()
    result: list[asyncio.Task[Any]] = [] if into is None else into
    found: list[asyncio.Task[Any]] = []
    if sources is None:  # 3.14+: the registry lives in C; all_tasks(loop) is the public way
        live = tracker.live_loops()
        now = time.monotonic()
        if (
            now - tracker.full_read_at < FULL_READ_SECONDS
            and live
            and all(id(loop) in tracker.covered_loops for _record, loop in live)
        ):
            return _noted_pending(tracker, live, result)
        # all_tasks() holds the GIL for its whole read (10-25 ms at 100,000 tasks): the host's
        # loop waits meanwhile. Taken at the first look, then once in FULL_READ_SECONDS, and
        # whenever a loop is not covered by the shadow (creations untracked, or it came since).
        tracker.covered_loops = frozenset(
            id(loop) for record, loop in live if record.factory_installed and tracker.track_tasks
        )
        tracker.full_read_at = now
        for _record, loop in live:
            try:
                found.extend(asyncio.all_tasks(loop))
            except Exception:
                pass
        return _in_noted_order(tracker, found, result)
    weak_set = sources[0]
    references = getattr(weak_set, "data", None)
    if isinstance(references, set):
        # The WeakSet's own set of references, copied in one C call (no other thread runs
        # meanwhile): far cheaper than iterating the WeakSet, a generator in Python. Into
        # `result` itself, which is about to hold the tasks: no second list of 100,000.
        start = len(result)
        slots: list[Any] = result
        slots.extend(references)
        kept = start
        for piece in pieces(range(start, len(slots))):
            for index in piece:
                task = slots[index]()  # a reference, replaced by its task in place
                if task is not None and not task.done():
                    result[kept] = task
                    kept += 1
        del result[kept:]
    else:
        found.extend(_copy(weak_set))
    for source in sources[1:]:
        found.extend(_copy(source))  # eager tasks: few, and possibly also in the first set
    if found:
        seen = {id(task) for task in sliced(result)}
        for task in found:
            if id(task) not in seen and not task.done():
                seen.add(id(task))
                result.append(task)
    return result


def _in_noted_order(
    tracker: Tracker, found: list[asyncio.Task[Any]], result: list[asyncio.Task[Any]]
) -> list[asyncio.Task[Any]]:
    """The tasks of a whole read (`found`, in the registry's own order, a set's) into `result`
    in the order `_noted_pending` gives them (those with metadata as it was made, then those
    with birth notes as they were made, then the others): two looks list the tasks alike,
    whichever way each read them, so that two dumps are in one order."""
    present = {id(task): task for task in sliced(found)}
    for meta in sliced(list(tracker.task_metas().values()), 256):
        task = present.get(meta.key)
        if task is not None and meta() is task:
            result.append(present.pop(meta.key))
    born = tracker._born
    # Its keys only: a copy of its items makes a tuple per task in one C call (5 ms at 30,000
    # tasks on a loaded machine, the loop waiting).
    for keys in pieces(list(born)):
        for key in keys:
            task = present.get(key)
            note = born.get(key)
            if task is not None and note is not None and noted_task(note) is task:
                result.append(present.pop(key))
    result.extend(present.values())
    return result


def _noted_pending(
    tracker: Tracker,
    live: list[tuple[LoopRecord, asyncio.AbstractEventLoop]],
    result: list[asyncio.Task[Any]],
) -> list[asyncio.Task[Any]]:
    """The pending tasks of the `live` loops as the agent has noted them (3.14+, between whole
    reads of the registry): those it looked at or met since (its metadata) and those made
    through its `create_task` shadow since (their birth notes). A task made by calling
    `asyncio.Task()` directly on one of them is known once it makes a task, or a task it
    looked at awaits it, else at the next whole read. Gives the GIL to the loop every
    `SLICE_SECONDS` (`pieces`), as the look does."""
    loops = {id(loop) for _record, loop in live}
    metas = tracker.task_metas()
    # Copies made in one C call each: the loops' threads add to both meanwhile.
    for piece in pieces(list(metas.values())):
        for meta in piece:
            task = meta()
            if task is not None and not task.done() and id(task.get_loop()) in loops:
                result.append(task)
    for notes in pieces(list(tracker._born.values())):
        for note in notes:
            # Copied a moment ago: a note finished since has no reference any more.
            ref = note[0]
            born = ref() if ref is not None else None
            if (
                born is not None
                and id(born) not in metas  # noted twice: the look gave it metadata meanwhile
                and not born.done()
                and id(born.get_loop()) in loops
            ):
                result.append(born)  # made by create_task: a Task
    return result


def _copy(source: Iterable[_T]) -> list[_T]:
    for _attempt in range(1000):
        try:
            return list(source)
        except RuntimeError:  # the set changed size while we copied it: retry
            continue
    return []
