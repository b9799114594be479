"""What a suspended task is waiting for, as facts (no words: `taskscope.words` makes them).

The task's coroutine chain (frames, outermost first) and `task._fut_waiter` are matched against
asyncio's own functions: the outermost frame of a known asyncio API (Queue.get, Lock.acquire,
TaskGroup.__aexit__...) names the wait; the awaited Future says the rest. Everything is read
from the agent's thread without calling application code: no user `__repr__`, no properties.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import gc
import math
import os
import socket
import sys
import weakref
from asyncio import base_events, futures, locks, queues, streams, taskgroups, tasks, timeouts
from collections.abc import Callable, Sequence
from types import CodeType, CoroutineType, FrameType, FunctionType, GeneratorType, MethodType
from typing import Any

from taskscope.agent import waiters
from taskscope.agent.locks import (
    held_in_stacks,
    installed as lock_notes_installed,
    lock_holder,
    note_found_holder,
    searched_lately,
    semaphore_holders,
)
from taskscope.agent.summary import safe_repr
from taskscope.agent.threadframes import thread_tops
from taskscope.protocol import WireAwaiting, countdown_parts, pieces

#: A handler may return None: the frames inside then say what the task waits for.
Handler = Callable[["AwaitContext", FrameType, FrameType | None, Any], WireAwaiting | None]

#: An exhausted Semaphore's holders are searched for in every task's stack (nothing notes
#: them), every 10 s at most: up to this many tasks (5 us a task whose frames may be in a
#: `with`, `python benchmarks/holder_search.py`).
SEMAPHORE_SEARCH_TASKS = 10_000


class AwaitContext:
    """Per-snapshot facts shared by all tasks: timers by future, names found for objects."""

    __slots__ = (
        "_executor_busy",
        "_executor_threads",
        "_held_locks",
        "_process_calls",
        "frames_of",
        "id_of_task",
        "last_memo",
        "last_sleeps",
        "loop_time",
        "memo",
        "name_of_task",
        "names",
        "owner",
        "pending_tasks",
        "self_frame",
        "self_obj",
        "sleeps",
        "timeouts",
        "timers",
    )

    def __init__(
        self,
        name_of_task: Callable[[Any], str],
        frames_of: Callable[[Any], list[FrameType]] | None = None,
        id_of_task: Callable[[Any], str] | None = None,
    ) -> None:
        #: id(future) -> loop time at which a timer resolves it (sleep, 3.11 wait_for)
        self.timers: dict[int, float] = {}
        #: id(task) -> loop time of its innermost asyncio.timeout deadline
        self.timeouts: dict[int, float] = {}
        self.loop_time = 0.0
        self.names: dict[int, str | None] = {}
        self.name_of_task = name_of_task
        #: A task's coroutine frames, outermost first (to describe 3.11 wait_for's inner task).
        self.frames_of = frames_of
        #: A task's id in the snapshot (for the holders of a lock); None: holders not told.
        self.id_of_task = id_of_task
        #: The look's pending tasks, where a lock's holder is looked for when no note says.
        self.pending_tasks: Sequence[Any] = ()
        self._held_locks: dict[int, list[Any]] | None = None
        self._executor_threads: dict[int, ThreadCall] | None = None
        #: id(thread pool) -> how many of its threads run a call (`executor_threads`).
        self._executor_busy: dict[int, int] = {}
        self._process_calls: dict[int, ProcessCall] | None = None
        #: `memo_key(code, object)` -> (object, awaiting): one description per object waited on,
        #: shared by every task waiting on it in this snapshot (never mutated: copy first).
        self.memo: dict[int, tuple[Any, WireAwaiting]] = {}
        #: loop time a sleep ends at -> its shared description.
        self.sleeps: dict[float, WireAwaiting] = {}
        #: The descriptions of the last snapshot, by the same keys (without the objects: they
        #: must not be kept alive). A description equal to the last one is that object
        #: again, so that a task whose wait did not change has the same description.
        self.last_memo: dict[int, WireAwaiting] = {}
        self.last_sleeps: dict[float, WireAwaiting] = {}
        #: The `self` of the frame a handler is about to read, found without f_locals.
        self.self_frame: FrameType | None = None
        self.self_obj: Any = None
        #: The coroutine running the frame a handler is about to read, when known.
        self.owner: Any = None

    def in_bodies_of(self, obj: Any) -> list[Any]:
        """The tasks in the body of an `async with` on `obj` (a Lock, a Semaphore), from one
        search of this look's tasks' stacks for every object at once (`held_in_stacks`)."""
        if self._held_locks is None:
            self._held_locks = held_in_stacks(self.pending_tasks)
        return self._held_locks.get(id(obj), [])

    def holder_in_stacks(self, lock: Any) -> Any | None:
        """The task in the body of an `async with` on `lock`, found in the stacks (none looked
        for again for a lock whose holder was not found lately) and noted, or None."""
        if searched_lately(lock):
            return None
        found = self.in_bodies_of(lock)
        holder = found[0] if len(found) == 1 else None
        note_found_holder(lock, holder)
        return holder

    def index_timers(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read the loop's timer heap once: which future each sleep resolves, which task each
        timeout cancels. Selector loops only; uvloop hides its timers."""
        scheduled = getattr(loop, "_scheduled", None)
        if scheduled is None:  # uvloop: its sleeps' timers are found from their coroutines
            try:
                self.loop_time = loop.time()
            except Exception:
                pass
            return
        try:
            self.loop_time = loop.time()
            handles = list(scheduled)
        except Exception:
            return
        timers, deadlines = self.timers, self.timeouts
        for piece in pieces(handles):
            for handle in piece:
                if handle._cancelled:
                    continue
                callback = handle._callback
                args = handle._args
                if args and isinstance(args[0], asyncio.Future):
                    timers[id(args[0])] = handle._when
                elif type(callback) is MethodType and isinstance(
                    callback.__self__, timeouts.Timeout
                ):
                    timer_task = getattr(callback.__self__, "_task", None)
                    if timer_task is not None:
                        known = deadlines.get(id(timer_task))
                        if known is None or handle._when < known:
                            deadlines[id(timer_task)] = handle._when

    def executor_threads(self) -> dict[int, ThreadCall]:
        """id(future) -> the call a worker thread runs for it: a thread pool's (by its
        concurrent future) and anyio's worker threads' (by the asyncio future its task
        awaits). Counts too how many threads of each pool run a call (`_executor_busy`)."""
        if self._executor_threads is None:
            found: dict[int, ThreadCall] = {}
            import threading

            # Only present once the program used a thread pool; importing it is not ours to do.
            pool_module = sys.modules.get("concurrent.futures.thread")
            run_code = _code(getattr(getattr(pool_module, "_WorkItem", None), "run", None))
            worker_code = _code(getattr(pool_module, "_worker", None))
            anyio_backend = sys.modules.get("anyio._backends._asyncio")
            anyio_code = _code(getattr(getattr(anyio_backend, "WorkerThread", None), "run", None))
            aiosqlite_code = _code(
                getattr(sys.modules.get("aiosqlite.core"), "_connection_worker_thread", None)
            )
            if run_code is None and anyio_code is None and aiosqlite_code is None:
                self._executor_threads = found
                return found
            names = {thread.ident: thread.name for thread in threading.enumerate()}
            busy = self._executor_busy
            for thread_id, frame in thread_tops().items():
                walker: FrameType | None = frame
                inside: list[FrameType] = []  # the call's frames, innermost first
                running = False
                while walker is not None:
                    code = walker.f_code
                    if code is run_code:
                        running = True
                        item = walker.f_locals.get("self")
                        future = getattr(item, "future", None)
                        if future is not None:
                            function = callable_name(_work_item_function(item))
                            found[id(future)] = thread_call(names, thread_id, function, inside)
                    elif code is worker_code:
                        if running:
                            reference = _local(walker, "executor_reference")
                            pool = reference() if type(reference) is weakref.ref else None
                            if pool is not None:
                                busy[id(pool)] = busy.get(id(pool), 0) + 1
                        break
                    elif code is anyio_code:
                        future = _local(walker, "future")
                        if isinstance(future, asyncio.Future) and inside:
                            function = callable_name(_local(walker, "func"))
                            found[id(future)] = thread_call(names, thread_id, function, inside)
                        break
                    elif code is aiosqlite_code:
                        # Its locals keep the last call's future once done: a call that
                        # runs has its future pending
                        future = _local(walker, "future")
                        if isinstance(future, asyncio.Future) and not future.done():
                            function = callable_name(
                                _aiosqlite_function(_local(walker, "function"))
                            )
                            found[id(future)] = thread_call(names, thread_id, function, inside)
                        break
                    elif not running and len(inside) < THREAD_STACK_DEPTH:
                        inside.append(walker)
                    walker = walker.f_back
            self._executor_threads = found
        return self._executor_threads

    def process_calls(self) -> dict[int, ProcessCall]:
        """id(concurrent future) -> the call a process pool has for it: what it runs, and
        the pool's worker processes and calls not done. Read from each pool's manager thread
        (`concurrent.futures.process._ExecutorManagerThread`, which keeps both)."""
        if self._process_calls is None:
            found: dict[int, ProcessCall] = {}
            process_module = sys.modules.get("concurrent.futures.process")
            manager = getattr(process_module, "_ExecutorManagerThread", None)
            if isinstance(manager, type):
                import threading

                for thread in threading.enumerate():
                    if not isinstance(thread, manager):
                        continue
                    items = getattr(thread, "pending_work_items", None)
                    processes = getattr(thread, "processes", None)
                    if type(items) is not dict or type(processes) is not dict:
                        continue
                    entries = list(items.values())
                    for item in entries:
                        future = getattr(item, "future", None)
                        if future is not None:
                            function = callable_name(getattr(item, "fn", None))
                            found[id(future)] = (function, len(processes), len(entries))
            self._process_calls = found
        return self._process_calls

    def queued_facts(self, fut: Any, pool: Any) -> dict[str, Any]:
        """For a call run in a thread pool that no thread runs yet: `queued`, and when the
        pool is known, how many threads it may have (`workers`) and how many run a call now
        (`busy`). Empty when the call runs, or when `fut` mirrors no pool's call."""
        source = _chained_source(fut)
        if source is None or getattr(source, "_state", None) != "PENDING":
            return {}
        facts: dict[str, Any] = {"queued": True}
        workers = getattr(pool, "_max_workers", None)
        if type(workers) is int:
            self.executor_threads()
            facts["workers"] = workers
            facts["busy"] = self._executor_busy.get(id(pool), 0)
        return facts


_ASYNCIO_DIRECTORY = os.path.dirname(asyncio.__file__) + os.sep


def _outside_asyncio(source: Any) -> Any:
    """The innermost entry of a debug-mode creation traceback that is not asyncio's own: a
    future made by `loop.create_future()` was made by the line that called it."""
    for entry in reversed(source):
        if not str(getattr(entry, "filename", "")).startswith(_ASYNCIO_DIRECTORY):
            return entry
    return source[-1]


def _work_item_function(item: Any) -> Any:
    """The function a thread pool's work item runs: `fn` up to 3.13, `task[0]` from 3.14.

    3.14 made the work item hold a task resolved by a `WorkerContext`, which for threads is the
    tuple `(fn, args, kwargs)`; both shapes are checked, not the version.
    """
    function = getattr(item, "fn", None)
    if function is None:
        task = getattr(item, "task", None)
        if type(task) is tuple and len(task) == 3:
            function = task[0]
    return function


def callable_name(func: Any) -> str:
    """A function's qualified name, read without triggering user attribute hooks."""
    kind = type(func)
    if kind is FunctionType or kind is MethodType or kind.__name__ == "builtin_function_or_method":
        return str(getattr(func, "__qualname__", kind.__name__))
    if kind.__name__ == "partial":
        return f"partial({callable_name(getattr(func, 'func', None))})"
    return f"<{kind.__qualname__}>"


def _object_facts(obj: Any) -> dict[str, Any]:
    return {"type": type(obj).__qualname__, "id": hex(id(obj))}


def _local(frame: FrameType, name: str) -> Any:
    try:
        return frame.f_locals.get(name)
    except Exception:
        return None


def _self(ctx: AwaitContext, frame: FrameType) -> Any:
    """The frame's `self`: as found by the caller in the coroutine's references when it could
    (cheap), else through f_locals (which on 3.11/3.12 copies every local into a dict)."""
    if ctx.self_frame is frame:
        return ctx.self_obj
    return _local(frame, "self")


def first_local(owner: Any, code: CodeType) -> Any:
    """Local variable 0 of the frame that `owner` (a coroutine or generator) runs, or None.

    The collector's view of a suspended coroutine lists its name, qualname, maybe its frame
    object and locals dict, then its function, its code, and then its local variables in
    order (unset ones are skipped: callers check the type of what they get)."""
    try:
        refs = gc.get_referents(owner)
    except Exception:
        return None
    for index in range(1, len(refs) - 1):
        if refs[index] is code and type(refs[index - 1]) is FunctionType:
            return refs[index + 1]
    return None


def object_name(ctx: AwaitContext, obj: Any, caller: FrameType | None) -> str | None:
    """The variable or attribute name the awaiting code uses for `obj` (`jobs`, `self.lock`)."""
    key = id(obj)
    if key in ctx.names:
        return ctx.names[key]
    name: str | None = None
    if caller is not None:
        try:
            local_items = list(caller.f_locals.items())
        except Exception:
            local_items = []
        for local_name, value in local_items:
            if value is obj:
                name = local_name
                break
        if name is None:
            for local_name, value in local_items:
                attrs = _dict_holding(value, obj)
                if attrs:
                    for attr, attr_value in list(attrs.items())[:200]:
                        if attr_value is obj:
                            name = f"{local_name}.{attr}"
                            break
                if name is not None:
                    break
        if name is None:
            try:
                global_items = list(caller.f_globals.items())[:500]
            except Exception:
                global_items = []
            for global_name, value in global_items:
                if value is obj:
                    name = global_name
                    break
    ctx.names[key] = name
    return name


def _dict_holding(value: Any, obj: Any) -> dict[str, Any] | None:
    """`value`'s instance `__dict__` when it may hold `obj` as an attribute, else None.

    Asking an object for its `__dict__` makes one where its attributes were kept inline, and
    the interpreter then stops specialising reads of them (3.11, 3.12): the host's object
    would stay slower for good. So the collector's view (no dictionary made) tells first
    whether `value` refers to `obj` at all, or already has a dictionary to look in."""
    try:
        referents = gc.get_referents(value)
    except Exception:
        return None
    if not any(ref is obj or type(ref) is dict for ref in referents):
        return None
    return _instance_dict(value)


def _instance_dict(value: Any) -> dict[str, Any] | None:
    kind = type(value)
    if kind.__module__ == "builtins":
        return None
    try:
        attrs = object.__getattribute__(value, "__dict__")
    except Exception:
        return None
    return attrs if type(attrs) is dict else None


def _waiters(obj: Any) -> int:
    waiters = getattr(obj, "_waiters", None)
    try:
        return len(waiters) if waiters is not None else 0
    except Exception:
        return 0


# --- handlers, one per asyncio API --------------------------------------------------------------


def _sleep(ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any) -> WireAwaiting:
    awaiting = _sleep_of(ctx, fut)
    if "countdown" in awaiting or ctx.owner is None:
        return awaiting
    when = _sleep_timer_end(ctx.owner)
    if when is None:
        return awaiting
    ctx.timers[id(fut)] = when
    return _sleep_of(ctx, fut)


def _sleep_timer_end(sleep_coro: Any) -> float | None:
    """When the timer of an `asyncio.sleep` ends (its loop time), from the handle (`h`) its
    coroutine holds, found among what it references (as the collector sees it: no
    f_locals): uvloop keeps its timers out of reach, and on any loop a sleep begun after the
    look read the loop's timers is not among them (`when()` is uvloop's, in C, or asyncio's)."""
    try:
        referents = gc.get_referents(sleep_coro)
    except Exception:
        return None
    for value in referents:
        kind = type(value)
        if kind is asyncio.TimerHandle or (
            kind.__name__ == "TimerHandle" and kind.__module__ == "uvloop.loop"
        ):
            try:
                when = value.when()
            except Exception:
                return None
            return float(when) if isinstance(when, int | float) else None
    return None


def _sleep_of(ctx: AwaitContext, fut: Any) -> WireAwaiting:
    when = ctx.timers.get(id(fut))
    if when is None:
        return {"kind": "sleep", "tasks": (), "seconds_left": None}
    awaiting = ctx.sleeps.get(when)
    if awaiting is None:
        awaiting = ctx.last_sleeps.get(when)
        if awaiting is None:
            if not math.isfinite(when):
                # `asyncio.sleep(math.inf)` (anyio's sleep_forever): no end to count down
                # to, and none that JSON could carry (Infinity is no JSON).
                awaiting = {"kind": "sleep", "tasks": (), "object": {"forever": True}}
            else:
                # Seconds left once materialized (see "Countdowns" in taskscope.protocol).
                awaiting = {"kind": "sleep", "tasks": (), "countdown": when}
        ctx.sleeps[when] = awaiting
    return awaiting


#: The handler of a plan step that is a sleep (described from the loop's timers alone).
SLEEP_HANDLER = _sleep


def _queue(verb: str) -> Handler:
    def handler(
        ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
    ) -> WireAwaiting:
        queue = _self(ctx, frame)
        items = getattr(queue, "_queue", None)
        return _queue_wait(ctx, queue, caller, verb, items, getattr(queue, "_maxsize", 0))

    return handler


def _queue_wait(
    ctx: AwaitContext, queue: Any, caller: FrameType | None, verb: str, items: Any, maxsize: Any
) -> WireAwaiting:
    """A wait for an item of a queue (`verb` get, or the library's own word), or for room in
    it (put): its size and bound (0: none)."""
    facts = _object_facts(queue) | {
        "size": len(items) if items is not None else None,
        "maxsize": maxsize,
        "name": object_name(ctx, queue, caller),
    }
    kind = "queue_put" if verb in ("put", "send") else "queue_get"
    return {
        "kind": kind,
        "tasks": (),
        "call": f"{type(queue).__qualname__}.{verb}",
        "object": facts,
    }


def _queue_join(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting:
    """`Queue.join`: a wait for every item put to be marked done (`task_done`), said of the
    queue rather than of the Event inside it that asyncio waits on."""
    queue = _self(ctx, frame)
    items = getattr(queue, "_queue", None)
    facts = _object_facts(queue) | {
        "name": object_name(ctx, queue, caller),
        "unfinished": getattr(queue, "_unfinished_tasks", None),
        "size": len(items) if items is not None else None,
    }
    return {
        "kind": "queue_join",
        "tasks": (),
        "call": f"{type(queue).__qualname__}.join",
        "object": facts,
    }


def _primitive(kind: str, method: str) -> Handler:
    def handler(
        ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
    ) -> WireAwaiting:
        obj = _self(ctx, frame)
        name = object_name(ctx, obj, caller)
        type_name = type(obj).__qualname__
        facts = _object_facts(obj) | {"name": name}
        if kind == "lock":
            facts["locked"] = bool(getattr(obj, "_locked", False))
            if facts["locked"] and ctx.id_of_task is not None and lock_notes_installed():
                _add_holders(ctx, obj, facts)
        elif kind == "semaphore":
            facts["value"] = getattr(obj, "_value", None)
        elif kind == "barrier":
            parties, count = getattr(obj, "_parties", None), getattr(obj, "_count", None)
            facts |= {"parties": parties, "waiting": count}
        elif kind == "event":
            facts["set"] = bool(getattr(obj, "_value", False))
        if kind != "barrier":  # a Barrier keeps its waiters in its Condition
            facts["waiters"] = _waiters(obj)
        if (
            kind == "semaphore"
            and facts["value"] == 0
            and facts["waiters"]
            and ctx.id_of_task is not None
            and lock_notes_installed()
            and len(ctx.pending_tasks) <= SEMAPHORE_SEARCH_TASKS
        ):
            _add_semaphore_holders(ctx, obj, facts)
        return {"kind": kind, "tasks": (), "call": f"{type_name}.{method}", "object": facts}

    return handler


def _add_holders(ctx: AwaitContext, lock: Any, facts: dict[str, Any]) -> None:
    """A locked Lock's `holders` (task ids) and their names, or `holders_unknown` when it was
    taken before the agent could see by whom (see taskscope.agent.locks)."""
    holder, known = lock_holder(lock)
    if not known:
        holder = ctx.holder_in_stacks(lock)
        known = holder is not None
    if not known:
        facts["holders"] = ()
        facts["holders_unknown"] = True
    elif holder is None:  # the task that took it is gone, and never released it
        facts["holders"] = ()
        facts["holders_gone"] = True
    else:
        _add_holder(ctx, holder, facts)


def _add_semaphore_holders(ctx: AwaitContext, semaphore: Any, facts: dict[str, Any]) -> None:
    """An exhausted Semaphore's `holders`: the tasks in the body of an `async with` on it (a
    task once, however many permits it took). How many permits were taken is known of a
    BoundedSemaphore alone: `holders_more` counts those no stack shows (taken with
    `acquire()`, or by a task running at the look); of a Semaphore, `holders_partial` says
    that others may hold some."""
    assert ctx.id_of_task is not None
    found = semaphore_holders(semaphore, lambda: ctx.in_bodies_of(semaphore))
    ids = {ctx.id_of_task(task): task for task in found}
    if not ids:
        return
    in_order = sorted(ids, key=lambda task_id: (len(task_id), task_id))  # as numbers: made first
    facts["holders"] = tuple(in_order)
    facts["holder_names"] = tuple(ctx.name_of_task(ids[task_id]) for task_id in in_order)
    bound = getattr(semaphore, "_bound_value", None)
    if isinstance(semaphore, locks.BoundedSemaphore) and isinstance(bound, int):
        unseen = bound - facts["value"] - len(found)
        if unseen > 0:
            facts["holders_more"] = unseen
    else:
        facts["holders_partial"] = True


def _add_holder(ctx: AwaitContext, holder: Any, facts: dict[str, Any]) -> None:
    """The task that holds a lock, by its id and its name; one that has ended (and never
    released it) by its name and how it ended (`holder_state`): a finished task's id is
    given by the history, not here."""
    assert ctx.id_of_task is not None
    try:
        ended = holder.done()
    except Exception:
        ended = False
    if ended:
        facts["holders"] = ()
        facts["holder_names"] = (ctx.name_of_task(holder),)
        if holder.cancelled():
            facts["holder_state"] = "cancelled"
        else:  # `_exception`, not exception(): that would mark it retrieved
            failed = getattr(holder, "_exception", None) is not None
            facts["holder_state"] = "failed" if failed else "done"
        return
    facts["holders"] = (ctx.id_of_task(holder),)
    facts["holder_names"] = (ctx.name_of_task(holder),)


def _peer_of_transport(transport: Any) -> str | None:
    extra = getattr(transport, "_extra", None)
    if type(extra) is not dict:
        return None
    return _address(extra.get("peername"))


def _address(address: Any) -> str | None:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(address, str | bytes) and address:
        return address if isinstance(address, str) else address.decode(errors="replace")
    return None


def _stream(verb: str) -> Handler:
    def handler(
        ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
    ) -> WireAwaiting:
        owner = _self(ctx, frame)
        method = frame.f_code.co_name
        peer = _peer_of_transport(getattr(owner, "_transport", None))
        if verb == "read":
            call = f"StreamReader.{method}"
            buffered = getattr(owner, "_buffer", None)
            facts = _object_facts(owner) | {"buffered": len(buffered) if buffered else 0}
        else:
            call = "StreamWriter.drain"
            facts = _object_facts(owner)
        return {"kind": f"stream_{verb}", "tasks": (), "call": call, "peer": peer, "object": facts}

    return handler


def _socket_facts(sock: Any) -> tuple[int | None, str | None]:
    """A socket's file descriptor and peer (None: not a socket, not connected, closed)."""
    fd: int | None = None
    peer: str | None = None
    if isinstance(sock, socket.socket):
        try:
            fd = socket.socket.fileno(sock)
            peer = _address(socket.socket.getpeername(sock))
        except OSError:
            pass
    return fd, peer


def _sock(ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any) -> WireAwaiting:
    sock = _local(frame, "sock")
    method = frame.f_code.co_name
    fd, peer = _socket_facts(sock)
    if isinstance(sock, socket.socket) and peer is None and method in ("sock_connect",):
        peer = _address(_local(frame, "address"))
    return {
        "kind": "socket",
        "tasks": (),
        "call": f"loop.{method}",
        "peer": peer,
        "object": {"fd": fd},
    }


def _connection_setup(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting:
    """`loop.create_connection` (`open_connection`) waiting for its transport to be made: the
    TLS handshake with the peer when it asked for TLS (a server that never answers one keeps
    it there), else the protocol's start."""
    fd, peer = _socket_facts(_local(frame, "sock"))
    tls = _local(frame, "ssl")
    call = "loop.create_connection" + (" TLS handshake" if tls else "")
    return {"kind": "socket", "tasks": (), "call": call, "peer": peer, "object": {"fd": fd}}


def _to_thread(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting | None:
    """A call run in a worker thread; None while the call waits for its turn instead (anyio's
    `run_sync`, suspended in `async with limiter:` when all of the limiter's tokens are
    borrowed), so that the frames inside say what it waits for: the limiter."""
    if type(getattr(ctx.owner, "cr_await", None)) in _COROUTINE_TYPES:
        return None
    func = callable_name(_local(frame, "func"))
    thread = _executor_thread(ctx, fut)
    facts: dict[str, Any] = {"function": func}
    if thread:
        facts["thread"] = thread[0]
        facts["thread_stack"] = thread[2]
    else:  # `to_thread` runs its call in the loop's default pool
        facts |= ctx.queued_facts(fut, getattr(_local(frame, "loop"), "_default_executor", None))
    return {"kind": "executor", "tasks": (), "call": "to_thread", "object": facts}


#: What a coroutine awaits while it waits inside another coroutine's frames, not on a future.
_COROUTINE_TYPES = (CoroutineType, GeneratorType)


#: A call a worker thread runs: the thread's name, the function, and the call's stack
#: (outermost first, its innermost `THREAD_STACK_DEPTH` frames).
ThreadCall = tuple[str, str, list[dict[str, Any]]]
#: A call of a process pool: the function, the pool's worker processes, its calls not done.
ProcessCall = tuple[str, int, int]
#: How many of a thread call's innermost frames are said (where it blocks is among them).
THREAD_STACK_DEPTH = 30


def thread_call(
    names: dict[int | None, str], thread_id: int, function: str, inside: list[FrameType]
) -> ThreadCall:
    stack = [
        {
            "function": frame.f_code.co_qualname,
            "file": frame.f_code.co_filename,
            "line": frame.f_lineno,
        }
        for frame in reversed(inside)
    ]
    return names.get(thread_id, str(thread_id)), function, stack


def _resolver(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting:
    """`loop.getaddrinfo` and `loop.getnameinfo` (what `open_connection` and `create_connection`
    resolve a name with): a call in the loop's default pool, which waits there behind every
    other call when its threads are all busy."""
    method = frame.f_code.co_name
    if method == "getaddrinfo":
        host, port = _local(frame, "host"), _local(frame, "port")
        if isinstance(host, bytes):
            host = host.decode(errors="replace")
        address = _address((host, port)) if host is not None else None
    else:
        address = _address(_local(frame, "sockaddr"))
    facts: dict[str, Any] = {"address": address}
    thread = _executor_thread(ctx, fut)
    if thread:
        facts["thread"] = thread[0]
        facts["thread_stack"] = thread[2]
    else:
        facts |= ctx.queued_facts(fut, getattr(_self(ctx, frame), "_default_executor", None))
    return {"kind": "executor", "tasks": (), "call": f"loop.{method}", "object": facts}


def _aiosqlite_function(function: Any) -> Any:
    """What an aiosqlite call runs: the `functools.partial` it queues wraps the connection's
    method (`Connection.execute`), whose arguments (the SQL, its parameters) are not said."""
    return function.func if isinstance(function, functools.partial) else function


def _aiosqlite(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting:
    """aiosqlite: a call its connection's own thread runs for the task (`Connection._execute`,
    `_connect`), or that waits behind the call that thread runs now."""
    function = _local(frame, "fn") if frame.f_code.co_name == "_execute" else "connect"
    facts: dict[str, Any] = {"function": callable_name(function)}
    thread = _executor_thread(ctx, fut)
    if thread:
        facts["thread"] = thread[0]
        facts["thread_stack"] = thread[2]
    else:
        facts["queued"] = True
    return {"kind": "executor", "tasks": (), "call": "aiosqlite", "object": facts}


def _executor_thread(ctx: AwaitContext, fut: Any) -> ThreadCall | None:
    """The call a worker thread runs for `fut`: a future mirroring a pool's concurrent
    future, or the future anyio's `run_sync` awaits."""
    source = _chained_source(fut)
    return ctx.executor_threads().get(id(source) if source is not None else id(fut))


def _chained_source(fut: Any) -> concurrent.futures.Future[Any] | None:
    """The concurrent.futures.Future that `fut` mirrors (run_in_executor, wrap_future)."""
    for callback, _context in getattr(fut, "_callbacks", None) or ():
        if type(callback) is FunctionType and callback.__code__ is _CHAIN_CANCEL_CODE:
            for cell in callback.__closure__ or ():
                try:
                    value = cell.cell_contents
                except ValueError:
                    continue
                if isinstance(value, concurrent.futures.Future):
                    return value
    return None


def _subprocess(verb: str) -> Handler:
    def handler(
        ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
    ) -> WireAwaiting:
        process = _self(ctx, frame)
        pid = getattr(process, "pid", None)
        args = getattr(getattr(getattr(process, "_transport", None), "_proc", None), "args", None)
        program: str | None = None
        if isinstance(args, list | tuple) and args:
            program = safe_repr(args[0], 60).strip("'")
        elif isinstance(args, str | bytes):
            program = safe_repr(args, 60).strip("'")
        return {
            "kind": "subprocess",
            "tasks": (),
            "call": f"Process.{verb}",
            "object": {"pid": pid, "program": program, "verb": verb},
        }

    return handler


def _server(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting:
    server = _self(ctx, frame)
    addresses = []
    for sock in getattr(server, "_sockets", None) or ():
        try:
            address = _address(socket.socket.getsockname(sock))
        except (OSError, TypeError):
            address = None
        if address:
            addresses.append(address)
    return {
        "kind": "server",
        "tasks": (),
        "call": "Server.serve_forever",
        "object": {"addresses": tuple(addresses)},
    }


def _task_group(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting:
    group = _self(ctx, frame)
    members = getattr(group, "_tasks", None)
    count = len(members) if members is not None else 0
    return {"kind": "taskgroup", "tasks": (), "object": _object_facts(group) | {"size": count}}


def _wait(ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any) -> WireAwaiting:
    return_when = _local(frame, "return_when")
    fs = _local(frame, "fs")
    count = len(fs) if isinstance(fs, set | list | tuple | frozenset) else None
    mode = return_when if isinstance(return_when, str) else None
    return {"kind": "wait", "tasks": (), "object": {"count": count, "return_when": mode}}


def _as_completed(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting:
    return {"kind": "as_completed", "tasks": ()}


def _wait_for(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting:
    # Placeholder for the handler table; `_classify_chain` describes wait_for itself because
    # it needs the frames below this one (3.12+) or the inner task's frames (3.11).
    return {"kind": "wait_for", "tasks": ()}


def _describe_wait_for(
    ctx: AwaitContext, frames: list[FrameType], index: int, fut: Any, depth: int
) -> WireAwaiting:
    """wait_for(aw, timeout): says what `aw` is and what it waits for, on every version.

    3.12+ awaits `aw` inline: its frames follow wait_for's on the chain. 3.11 wraps it in an
    inner task and waits on a private future: the inner task is wait_for's local `fut`."""
    inner_frames = frames[index + 1 :]
    inner_fut = fut
    if not inner_frames:
        wrapped = _local(frames[index], "fut")
        if _is_task(wrapped) and wrapped is not fut and ctx.frames_of is not None:
            try:
                inner_frames = ctx.frames_of(wrapped)
            except Exception:
                inner_frames = []
            inner_fut = getattr(wrapped, "_fut_waiter", None)
            if not inner_frames:
                inner_fut = wrapped
    inner = _classify_chain(ctx, inner_frames, inner_fut, depth + 1) if depth < 8 else None
    what = inner_frames[0].f_code.co_qualname if inner_frames else None
    awaiting: WireAwaiting = {"kind": "wait_for", "tasks": (), "object": {"awaitable": what}}
    if inner is not None:
        awaiting["object"]["inner_kind"] = inner["kind"]
        countdown = inner.get("countdown")
        if countdown is not None:  # the inner sleep's end is this description's countdown
            awaiting["countdown"] = countdown_parts(countdown)
            inner = {key: value for key, value in inner.items() if key != "countdown"}  # type: ignore[assignment]
        awaiting["inner"] = inner
        if inner.get("peer"):
            awaiting["peer"] = inner["peer"]
    return awaiting


def _condition(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting | None:
    return _primitive("condition", frame.f_code.co_name)(ctx, frame, caller, fut)


def _is_task(obj: Any) -> bool:
    # issubclass on the type: isinstance() would fall back to a user `__class__` property.
    return issubclass(type(obj), asyncio.Task)


def _is_future(obj: Any) -> bool:
    return issubclass(type(obj), asyncio.Future)


def describe_future(
    ctx: AwaitContext, fut: Any, frame: FrameType | None = None
) -> WireAwaiting | None:
    """What a task awaiting `fut` directly (no known asyncio frame on its chain) waits for.
    `frame` is the innermost frame of the awaiting chain: where to look for the future's name."""
    if fut is None:
        return None
    if _is_task(fut):
        return {"kind": "task", "tasks": (), "object": {"task": ctx.name_of_task(fut)}}
    kind = type(fut)
    if kind is _GATHERING_FUTURE:
        children = getattr(fut, "_children", None) or []
        done = sum(1 for child in children if child.done())
        gathered: dict[str, Any] = {"count": len(children), "done": done}
        returns = _gather_returns_exceptions(children)
        if returns is not None:
            gathered["return_exceptions"] = returns
        return {"kind": "gather", "tasks": (), "object": gathered}
    callbacks = getattr(fut, "_callbacks", None) or ()
    for callback, _context in callbacks:
        if type(callback) is not FunctionType:
            continue
        code = callback.__code__
        if code is _SHIELD_OUTER_CODE:
            inner = _closure_value(callback, "inner")
            if _is_task(inner):
                return {"kind": "shield", "tasks": (), "object": {"task": ctx.name_of_task(inner)}}
            # A future (a gather, a bare Future, another shield): what it waits for.
            shielded = describe_future(ctx, inner, frame) if _is_future(inner) else None
            if shielded is None:
                return {"kind": "shield", "tasks": ()}
            return {"kind": "shield", "tasks": (), "inner": shielded}
        if code is _CHAIN_CANCEL_CODE:
            thread = _executor_thread(ctx, fut)
            facts: dict[str, Any] = {}
            source = _chained_source(fut)
            in_process = ctx.process_calls().get(id(source)) if source is not None else None
            if thread:
                facts = {"thread": thread[0], "function": thread[1], "thread_stack": thread[2]}
            elif in_process is not None:
                function, processes, calls = in_process
                facts = {"function": function, "processes": processes, "calls": calls}
            else:  # which pool is not known: `executor` is not kept
                facts = ctx.queued_facts(fut, None)
            return {"kind": "executor", "tasks": (), "call": "run_in_executor", "object": facts}
    if kind is asyncio.Future or kind is _PY_FUTURE:
        # A bare Future: say which variable holds it and, in debug mode, where it was made.
        name = object_name(ctx, fut, frame) if frame is not None else None
        facts = _object_facts(fut) | {"name": name}
        source = getattr(fut, "_source_traceback", None)
        if source:
            where = _outside_asyncio(source)
            created = f"{getattr(where, 'filename', '?')}:{getattr(where, 'lineno', '?')}"
            facts["created_at"] = created
        return {"kind": "future", "tasks": (), "call": "Future", "object": facts}
    return {"kind": "future", "tasks": (), "object": _unknown_future_facts(kind, hex(id(fut)))}


def _unknown_future_facts(kind: type, object_id: str | None) -> dict[str, Any]:
    """A future of a class asyncio does not know: its class, named without its code."""
    return {"type": kind.__qualname__, "module": kind.__module__, "id": object_id}


def _gather_returns_exceptions(children: list[Any]) -> bool | None:
    """Whether a gather was called with `return_exceptions=True` (without it, a child's
    cancel is passed on to the task awaiting the gather), read from the done callback it
    added to a child not done yet; None when none tells."""
    for child in children:
        if child.done():
            continue
        for callback, _context in getattr(child, "_callbacks", None) or ():
            if type(callback) is FunctionType and callback.__code__ is _GATHER_DONE_CODE:
                value = _closure_value(callback, "return_exceptions")
                return bool(value) if value is not None else None
        return None
    return None


def _closure_value(func: FunctionType, name: str) -> Any:
    try:
        position = func.__code__.co_freevars.index(name)
        return (func.__closure__ or ())[position].cell_contents
    except (ValueError, IndexError):
        return None


def _code(obj: Any) -> CodeType | None:
    func = getattr(obj, "__func__", obj)
    return getattr(func, "__code__", None)


def _nested_code(outer: Any, name: str) -> CodeType | None:
    code = _code(outer)
    if code is None:
        return None
    for const in code.co_consts:
        if isinstance(const, CodeType) and const.co_name == name:
            return const
    return None


def _add_handlers(handlers: dict[CodeType, Handler], table: list[tuple[Any, Handler]]) -> None:
    """Each function's code -> its handler (a function this version or library lacks: None)."""
    for func, handler in table:
        code = _code(func) if func is not None else None
        if code is not None:
            handlers[code] = handler


def _build_handlers() -> dict[CodeType, Handler]:
    table: list[tuple[Any, Handler]] = [
        (tasks.sleep, _sleep),
        (queues.Queue.get, _queue("get")),
        (queues.Queue.put, _queue("put")),
        (queues.Queue.join, _queue_join),
        (locks.Lock.acquire, _primitive("lock", "acquire")),
        (locks.Semaphore.acquire, _primitive("semaphore", "acquire")),
        (locks.Event.wait, _primitive("event", "wait")),
        (locks.Condition.wait, _condition),
        (locks.Condition.wait_for, _condition),
        (getattr(locks, "Barrier", None) and locks.Barrier.wait, _primitive("barrier", "wait")),
        (streams.StreamReader.read, _stream("read")),
        (streams.StreamReader.readline, _stream("read")),
        (streams.StreamReader.readexactly, _stream("read")),
        (streams.StreamReader.readuntil, _stream("read")),
        (getattr(streams.StreamReader, "_wait_for_data", None), _stream("read")),
        (streams.StreamWriter.drain, _stream("drain")),
        (getattr(streams.FlowControlMixin, "_drain_helper", None), _stream("drain")),
        (tasks.wait, _wait),
        (tasks.wait_for, _wait_for),
        (taskgroups.TaskGroup.__aexit__, _task_group),
        (getattr(taskgroups.TaskGroup, "_aexit", None), _task_group),
        (base_events.Server.serve_forever, _server),
    ]
    from asyncio import selector_events, subprocess, threads

    sock_methods = (
        "sock_recv",
        "sock_recv_into",
        "sock_recvfrom",
        "sock_recvfrom_into",
        "sock_sendall",
        "sock_sendto",
        "sock_connect",
        "sock_accept",
    )
    table.extend(
        (getattr(selector_events.BaseSelectorEventLoop, name, None), _sock) for name in sock_methods
    )
    table.append((getattr(base_events.BaseEventLoop, "sock_sendfile", None), _sock))
    table.append((threads.to_thread, _to_thread))
    table.append((getattr(base_events.BaseEventLoop, "getaddrinfo", None), _resolver))
    table.append(
        (
            getattr(base_events.BaseEventLoop, "_create_connection_transport", None),
            _connection_setup,
        )
    )
    table.append((getattr(base_events.BaseEventLoop, "getnameinfo", None), _resolver))
    table.append((subprocess.Process.wait, _subprocess("wait")))
    table.append((subprocess.Process.communicate, _subprocess("communicate")))
    as_completed_inner = _nested_code(tasks.as_completed, "_wait_for_one")
    iterator = getattr(tasks, "_AsCompletedIterator", None)
    if iterator is not None:
        as_completed_inner = _code(getattr(iterator, "_wait_for_one", None))
    handlers: dict[CodeType, Handler] = {}
    _add_handlers(handlers, table)
    if as_completed_inner is not None:
        handlers[as_completed_inner] = _as_completed
    return handlers


# --- anyio (asyncio backend) ---------------------------------------------------------------


def _anyio_lock(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting:
    """anyio's Lock keeps the task that holds it (`_owner_task`) and its waiters."""
    lock = _self(ctx, frame)
    owner = getattr(lock, "_owner_task", None)
    facts = _object_facts(lock) | {
        "name": object_name(ctx, lock, caller),
        "locked": owner is not None,
        "waiters": _waiters(lock),
    }
    if owner is not None and ctx.id_of_task is not None:
        _add_holder(ctx, owner, facts)
    return {"kind": "lock", "tasks": (), "call": "Lock.acquire", "object": facts}


def _anyio_stream(verb: str) -> Handler:
    """A memory object stream's receive or send: a queue's get or put (its state's buffer)."""

    def handler(
        ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
    ) -> WireAwaiting:
        stream = _self(ctx, frame)
        state = getattr(stream, "_state", None)
        limit = getattr(state, "max_buffer_size", 0)
        # 0: no bound, as for asyncio.Queue (JSON has no infinity)
        bound = int(limit) if isinstance(limit, int | float) and limit < 1 << 62 else 0
        return _queue_wait(ctx, stream, caller, verb, getattr(state, "buffer", None), bound)

    return handler


def _anyio_event(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting:
    """anyio's Event, said of itself (the name the program gave it) rather than of the
    asyncio Event inside it that the task waits on."""
    event = _self(ctx, frame)
    inner = getattr(event, "_event", None)
    facts = _object_facts(event) | {
        "name": object_name(ctx, event, caller),
        "set": bool(getattr(inner, "_value", False)),  # read, as asyncio's Event is
        "waiters": len(getattr(inner, "_waiters", None) or ()),
    }
    return {"kind": "event", "tasks": (), "call": "Event.wait", "object": facts}


def tokens_left(limiter: Any) -> int | None:
    """The tokens a CapacityLimiter (anyio's or trio's) has left: its total less those
    borrowed; None for a limiter of unbounded tokens (JSON has no infinity)."""
    total = getattr(limiter, "_total_tokens", None)
    if not isinstance(total, int | float) or not math.isfinite(total):
        return None
    return int(total) - len(getattr(limiter, "_borrowers", None) or ())


def _anyio_limiter(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting:
    """anyio's CapacityLimiter: a semaphore of `total` tokens, each borrowed by a task."""
    limiter = _self(ctx, frame)
    facts = _object_facts(limiter) | {
        "name": object_name(ctx, limiter, caller),
        "value": tokens_left(limiter),
        "waiters": len(getattr(limiter, "_wait_queue", None) or ()),
    }
    if facts["name"] is None and _is_default_thread_limiter(limiter):
        facts["thread_limiter"] = True
    if facts["value"] == 0 and facts["waiters"] and ctx.id_of_task is not None:
        _add_borrowers(ctx, limiter, facts)
    return {"kind": "semaphore", "tasks": (), "call": "CapacityLimiter.acquire", "object": facts}


def _is_default_thread_limiter(limiter: Any) -> bool:
    """Whether `limiter` is the one anyio's `to_thread.run_sync` uses unless told another (a
    run variable of its loop: `lowlevel._run_vars`, one dict per loop, of which a copy of the
    values is taken in one C call)."""
    backend = sys.modules.get("anyio._backends._asyncio")
    lowlevel = sys.modules.get("anyio.lowlevel")
    variable = getattr(backend, "_default_thread_limiter", None)
    data = getattr(getattr(lowlevel, "_run_vars", None), "data", None)
    if variable is None or not isinstance(data, dict):
        return False
    for run_vars in list(data.values()):
        if isinstance(run_vars, dict) and run_vars.get(variable) is limiter:
            return True
    return False


def _add_borrowers(ctx: AwaitContext, limiter: Any, facts: dict[str, Any]) -> None:
    """An exhausted CapacityLimiter's `holders`: it keeps who borrowed its tokens (the task,
    for `acquire()` and `to_thread.run_sync`). A borrower that is not a task (given to
    `acquire_on_behalf_of`) is counted in `holders_more`."""
    assert ctx.id_of_task is not None
    borrowers = getattr(limiter, "_borrowers", None)
    if not isinstance(borrowers, set | dict):
        return
    tasks_found: dict[str, Any] = {}
    others = 0
    for borrower in list(borrowers):
        if isinstance(borrower, asyncio.Task) and not borrower.done():
            tasks_found[ctx.id_of_task(borrower)] = borrower
        else:
            others += 1
    in_order = sorted(tasks_found, key=lambda task_id: (len(task_id), task_id))
    facts["holders"] = tuple(in_order)
    facts["holder_names"] = tuple(ctx.name_of_task(tasks_found[task_id]) for task_id in in_order)
    if others:
        facts["holders_more"] = others


# --- aiohttp ------------------------------------------------------------------------------------


def _aiohttp_stream(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting:
    """aiohttp's StreamReader (a request's or a response's body): a read from its peer, named
    by the method the program called (`_wait` is told it)."""
    reader = _self(ctx, frame)
    transport = getattr(getattr(reader, "_protocol", None), "transport", None)
    method = _local(frame, "func_name")
    call = f"{type(reader).__qualname__}.{method if isinstance(method, str) else 'read'}"
    buffered = getattr(reader, "_size", None)
    facts = _object_facts(reader) | {"buffered": buffered if isinstance(buffered, int) else 0}
    return {
        "kind": "stream_read",
        "tasks": (),
        "call": call,
        "peer": _peer_of_transport(transport),
        "object": facts,
    }


def _aiohttp_queue(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting:
    """aiohttp's DataQueue: a client waiting for its response to start (`ClientResponse.start`,
    whose `protocol` is the connection's), or a websocket for its next message."""
    queue = _self(ctx, frame)
    transport = None
    call = f"{type(queue).__qualname__}.read"
    if caller is not None:
        protocol = _local(caller, "protocol")
        transport = getattr(protocol, "transport", None)
        if caller.f_code.co_qualname.startswith("ClientResponse."):
            call = caller.f_code.co_qualname  # `ClientResponse.start from 10.0.0.7:443`
    return {
        "kind": "stream_read",
        "tasks": (),
        "call": call,
        "peer": _peer_of_transport(transport),
        "object": _object_facts(queue),
    }


def _aiohttp_pool(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting:
    """aiohttp's connector (`TCPConnector`): a request waiting for a connection, every one its
    limits allow being in use (`limit` in all, `limit_per_host` to one host). Its facts: the
    limits, how many connections are in use in all and to this host, how many requests wait
    for one to this host, and that host (the connection key's host and port)."""
    connector = _self(ctx, frame)
    key = _local(frame, "key")
    facts = _object_facts(connector) | {
        "limit": _count_or_none(getattr(connector, "_limit", None)),
        "in_use": _size_of(getattr(connector, "_acquired", None)),
        "limit_per_host": _count_or_none(getattr(connector, "_limit_per_host", None)),
        "host_in_use": _size_of(_keyed(getattr(connector, "_acquired_per_host", None), key)),
        "waiters": _size_of(_keyed(getattr(connector, "_waiters", None), key)),
    }
    peer = None
    if isinstance(key, tuple) and len(key) >= 2:  # a ConnectionKey: host, port, ...
        peer = _address((key[0], key[1])) if key[1] is not None else _address(key[0])
    return {
        "kind": "pool",
        "tasks": (),
        "call": f"{type(connector).__qualname__}.connect",
        "peer": peer,
        "object": facts,
    }


def _anyio_socket(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting:
    """anyio's socket stream on asyncio (`SocketStream.receive` waits for data, `send` for
    room in the transport's buffer), said of its peer rather than of the asyncio Event inside
    it that the task waits on."""
    stream = _self(ctx, frame)
    sending = frame.f_code.co_name == "send"
    return {
        "kind": "stream_drain" if sending else "stream_read",
        "tasks": (),
        "call": f"{type(stream).__qualname__}.{frame.f_code.co_name}",
        "peer": _peer_of_transport(getattr(stream, "_transport", None)),
        "object": _object_facts(stream),
    }


def _httpcore_pool(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting | None:
    """httpcore's connection pool (httpx's `AsyncClient`): a request queued for a connection
    (`AsyncPoolRequest.wait_for_connection`, called by the pool's `handle_async_request`,
    whose `self` is the pool): its limit, its connections, the requests queued, and the
    request's host."""
    pool = _local(caller, "self") if caller is not None else None
    if pool is None or not hasattr(pool, "_requests"):
        return None
    requests = getattr(pool, "_requests", None)
    queued = None
    if type(requests) is list:
        queued = sum(1 for request in list(requests) if getattr(request, "connection", 0) is None)
    facts = _object_facts(pool) | {
        "limit": _count_or_none(getattr(pool, "_max_connections", None)),
        "in_use": _size_of(getattr(pool, "_connections", None)),
        "waiters": queued,
    }
    url = getattr(getattr(_self(ctx, frame), "request", None), "url", None)
    host, port = getattr(url, "host", None), getattr(url, "port", None)
    peer = None
    if type(host) is bytes and host:
        name = host.decode("ascii", "replace")
        peer = _address((name, port)) if type(port) is int else name
    return {
        "kind": "pool",
        "tasks": (),
        "call": f"{type(pool).__qualname__}.handle_async_request",
        "peer": peer,
        "object": facts,
    }


def _count_or_none(value: Any) -> int | None:
    return value if type(value) is int else None


#: Containers whose length is read without running Python code.
_SIZED = (set, dict, list, collections.OrderedDict, collections.deque)


def _size_of(container: Any) -> int | None:
    return len(container) if type(container) in _SIZED else None


#: The types whose hash and equality run no Python code (a key made of them only is looked up).
_PLAIN_KEY_PARTS = (str, int, bool, float, bytes, type(None))


def _keyed(mapping: Any, key: Any) -> Any:
    """`mapping[key]` of a dict (a defaultdict too, without making the entry) for a tuple key
    of plain values (a proxy's URL or an SSL context in it would run their `__hash__`), else
    None."""
    kind: Any = type(key)
    if not isinstance(mapping, dict) or not isinstance(key, tuple):
        return None
    if kind.__hash__ is not tuple.__hash__ or kind.__eq__ is not tuple.__eq__:
        return None
    if not all(type(part) in _PLAIN_KEY_PARTS for part in key):
        return None
    return dict.get(mapping, key)


def add_library_handlers() -> bool:
    """Adds the handlers of the libraries the program imported (the agent never imports
    them), each library's once the modules its table reads are imported (`_LIBRARIES`). True
    when it added some just now: plans made before (`plan_chain`) must be made again. Each
    look calls it: while no module was imported since the last call, one `len`."""
    modules = sys.modules
    if len(modules) == _MODULES_SEEN[0] or len(_LIBRARIES_ADDED) == len(_LIBRARIES):
        return False
    _MODULES_SEEN[0] = len(modules)
    added = False
    for index, (needed, table) in enumerate(_LIBRARIES):
        if index in _LIBRARIES_ADDED or not all(name in modules for name in needed):
            continue
        _LIBRARIES_ADDED.add(index)
        _add_handlers(HANDLERS, table())
        added = True
    return added


#: How many modules were imported at the last `add_library_handlers`, and which entries of
#: `_LIBRARIES` (by index) have their handlers in HANDLERS.
_MODULES_SEEN = [0]
_LIBRARIES_ADDED: set[int] = set()


#: SQLAlchemy's `QueuePool._do_get` (where a checkout waits for a pooled connection, inside
#: the greenlet a task's `greenlet_spawn` runs), once its pool module is imported.
_SQLALCHEMY_DO_GET: list[CodeType] = []
#: How far down a greenlet's frames the pool's wait is looked for.
GREENLET_DEPTH = 40


def _sqlalchemy_table() -> list[tuple[Any, Handler]]:
    """SQLAlchemy's asyncio pools: a checkout waiting for a connection, seen from the task's
    `greenlet_spawn` (SQLAlchemy runs its synchronous code in a greenlet, whose frames are
    not the task's coroutines)."""
    concurrency = sys.modules.get("sqlalchemy.util.concurrency") or sys.modules.get(
        "sqlalchemy.util._concurrency_py3k"
    )
    queue_pool = getattr(sys.modules.get("sqlalchemy.pool.impl"), "QueuePool", None)
    do_get = _code(getattr(queue_pool, "_do_get", None))
    if concurrency is None or do_get is None:
        return []
    _SQLALCHEMY_DO_GET.append(do_get)
    return [(getattr(concurrency, "greenlet_spawn", None), _sqlalchemy_pool)]


def _sqlalchemy_pool(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting | None:
    """A task whose SQLAlchemy greenlet waits for a connection of its pool (`QueuePool._do_get`,
    `AsyncAdaptedQueuePool`): the pool's limit (`pool_size` and `max_overflow`), the
    connections checked out, the checkouts waiting. None for any other wait of the greenlet:
    the frames below say it (an aiosqlite call, a driver's read)."""
    inner = getattr(_local(frame, "context"), "gr_frame", None)
    pool = None
    for _ in range(GREENLET_DEPTH):
        if not isinstance(inner, FrameType):
            return None
        if inner.f_code is _SQLALCHEMY_DO_GET[0]:
            pool = _local(inner, "self")
            break
        inner = inner.f_back
    if pool is None:
        return None
    queue = getattr(pool, "_pool", None)
    size, overflow = getattr(queue, "maxsize", None), getattr(pool, "_overflow", None)
    max_overflow = getattr(pool, "_max_overflow", None)
    # The asyncio queue under it, made on first use (a memoized property: read from its dict)
    waiting_queue = vars(queue).get("_queue") if hasattr(queue, "__dict__") else None
    idle = getattr(waiting_queue, "_queue", None)
    facts = _object_facts(pool) | {"limit": None, "in_use": None, "waiters": None}
    if type(size) is int and type(max_overflow) is int:
        facts["limit"] = size + max_overflow if max_overflow >= 0 else 0
    if type(size) is int and type(overflow) is int and isinstance(idle, collections.deque):
        facts["in_use"] = size - len(idle) + overflow
    facts["waiters"] = _size_of(getattr(waiting_queue, "_getters", None))
    return {
        "kind": "pool",
        "tasks": (),
        "call": f"{type(pool).__qualname__}.connect",
        "peer": None,
        "object": facts,
    }


def _aiosqlite_table() -> list[tuple[Any, Handler]]:
    """aiosqlite's calls, run by each connection's own thread."""
    connection = getattr(sys.modules.get("aiosqlite.core"), "Connection", None)
    return [
        (getattr(connection, "_execute", None), _aiosqlite),
        (getattr(connection, "_connect", None), _aiosqlite),
    ]


def _websockets_table(module_name: str, class_name: str) -> Callable[[], list[Any]]:
    """websockets' connections: a wait for the next message (`recv`, which `async for` over a
    connection calls too), of the implementation `module_name` holds (its asyncio one, or
    the legacy one that servers such as uvicorn still use)."""

    def table() -> list[tuple[Any, Handler]]:
        connection = getattr(sys.modules.get(module_name), class_name, None)
        return [(getattr(connection, "recv", None), _websocket_recv)]

    return table


def _websocket_recv(
    ctx: AwaitContext, frame: FrameType, caller: FrameType | None, fut: Any
) -> WireAwaiting:
    """A websockets connection waiting for its next message, said of its peer rather than of
    the future its message assembler waits on."""
    connection = _self(ctx, frame)
    return {
        "kind": "stream_read",
        "tasks": (),
        "call": f"{type(connection).__qualname__}.recv",
        "peer": _peer_of_transport(getattr(connection, "transport", None)),
        "object": _object_facts(connection),
    }


def _httpcore_table() -> list[tuple[Any, Handler]]:
    """httpcore's connection pool (under httpx)."""
    request = getattr(sys.modules.get("httpcore._async.connection_pool"), "AsyncPoolRequest", None)
    return [(getattr(request, "wait_for_connection", None), _httpcore_pool)]


def _aiohttp_table() -> list[tuple[Any, Handler]]:
    """aiohttp's StreamReader (bodies), DataQueue (a client's response head, websocket
    messages) and connector (a client's wait for a connection)."""
    streams_module = sys.modules.get("aiohttp.streams")
    connector = getattr(sys.modules.get("aiohttp.connector"), "BaseConnector", None)
    # aiohttp 3.10+ waits for a connection in a method of its own; before, inside `connect`
    # (the only plain future that method awaits itself)
    pool_wait = getattr(connector, "_wait_for_available_connection", None) or getattr(
        connector, "connect", None
    )
    table: list[tuple[Any, Handler]] = [
        (getattr(getattr(streams_module, "StreamReader", None), "_wait", None), _aiohttp_stream),
        (getattr(getattr(streams_module, "DataQueue", None), "read", None), _aiohttp_queue),
        (pool_wait, _aiohttp_pool),
    ]
    return table


def _anyio_table() -> list[tuple[Any, Handler]]:
    """anyio's asyncio backend: its Lock (which knows its holder), Semaphore, Event,
    CapacityLimiter, task group, memory object streams, socket streams and
    `to_thread.run_sync` (its frames then count as a library's when a waited object is
    named)."""
    global _LIBRARY_DIRS
    backend = sys.modules.get("anyio._backends._asyncio")
    memory = sys.modules.get("anyio.streams.memory")
    package = sys.modules.get("anyio")
    package_file = getattr(package, "__file__", None)
    if isinstance(package_file, str):
        _LIBRARY_DIRS = (*_LIBRARY_DIRS, os.path.dirname(package_file) + os.sep)
    table: list[tuple[Any, Handler]] = [
        (getattr(getattr(backend, "Lock", None), "acquire", None), _anyio_lock),
        (
            getattr(getattr(backend, "Semaphore", None), "acquire", None),
            _primitive("semaphore", "acquire"),
        ),
        (getattr(getattr(backend, "Event", None), "wait", None), _anyio_event),
        (getattr(getattr(backend, "CapacityLimiter", None), "acquire", None), _anyio_limiter),
        (
            getattr(getattr(backend, "CapacityLimiter", None), "acquire_on_behalf_of", None),
            _anyio_limiter,
        ),
        (getattr(getattr(backend, "TaskGroup", None), "__aexit__", None), _task_group),
        (
            getattr(getattr(backend, "AsyncIOBackend", None), "run_sync_in_worker_thread", None),
            _to_thread,
        ),
        (
            getattr(getattr(memory, "MemoryObjectReceiveStream", None), "receive", None),
            _anyio_stream("receive"),
        ),
        (
            getattr(getattr(memory, "MemoryObjectSendStream", None), "send", None),
            _anyio_stream("send"),
        ),
        (getattr(getattr(backend, "SocketStream", None), "receive", None), _anyio_socket),
        (getattr(getattr(backend, "SocketStream", None), "send", None), _anyio_socket),
    ]
    group = getattr(backend, "TaskGroup", None)
    waiters.anyio_task_done = _nested_code(getattr(group, "_spawn", None), "task_done")
    return table


#: The libraries whose waits have handlers: the modules a library's table reads (all of them
#: imported by the program before it is made), and the function that makes it.
_LIBRARIES: tuple[tuple[tuple[str, ...], Callable[[], list[tuple[Any, Handler]]]], ...] = (
    (("aiohttp.streams",), _aiohttp_table),
    (("httpcore._async.connection_pool",), _httpcore_table),
    (
        ("websockets.asyncio.connection",),
        _websockets_table("websockets.asyncio.connection", "Connection"),
    ),
    (
        ("websockets.legacy.protocol",),
        _websockets_table("websockets.legacy.protocol", "WebSocketCommonProtocol"),
    ),
    (("aiosqlite.core",), _aiosqlite_table),
    (("sqlalchemy.pool.impl", "sqlalchemy.ext.asyncio"), _sqlalchemy_table),
    (("anyio._backends._asyncio", "anyio.streams.memory"), _anyio_table),
)


_SHIELD_OUTER_CODE = _nested_code(tasks.shield, "_outer_done_callback")
_CHAIN_CANCEL_CODE = _nested_code(getattr(futures, "_chain_future", None), "_call_check_cancel")
_GATHERING_FUTURE = getattr(tasks, "_GatheringFuture", None)
_GATHER_DONE_CODE = _nested_code(tasks.gather, "_done_callback")
_PY_FUTURE = getattr(futures, "_PyFuture", None)
HANDLERS = _build_handlers()


_ASYNCIO_DIR = asyncio.__file__.rsplit("/", 1)[0] + "/"
#: The directories whose frames stand between a wait and the code that names its object:
#: asyncio's, and anyio's once its handlers are added (`add_library_handlers`).
_LIBRARY_DIRS: tuple[str, ...] = (_ASYNCIO_DIR,)


def frame_at(frames: list[FrameType | None], owners: list[Any], index: int) -> FrameType:
    """`frames[index]`, made now (and kept in the list) if the walk left it unmade
    (`chains.lazy_chain`). RuntimeError if its coroutine has finished since (the loop runs
    on while the agent looks): a description the look cannot make."""
    frame = frames[index]
    if frame is None:
        frame = frames[index] = owners[index].cr_frame
        if frame is None:
            raise RuntimeError("the coroutine has finished")
    return frame


def code_at(frames: list[FrameType | None], owners: list[Any], index: int) -> CodeType:
    """The code of `frames[index]`, without making the frame the walk left unmade."""
    frame = frames[index]
    return frame.f_code if frame is not None else owners[index].cr_code


def frames_made(frames: list[FrameType | None], owners: list[Any]) -> list[FrameType]:
    """Every frame of a `lazy_chain`, made now where it was left unmade. RuntimeError when a
    coroutine of it has finished since: the chain is no longer the one walked."""
    return [frame_at(frames, owners, index) for index in range(len(frames))]


def _user_caller_index(codes: Sequence[CodeType], index: int) -> int:
    """`_user_caller` by code: the index of the nearest frame above `index` outside
    asyncio's (and anyio's) modules, else the one just above; -1 for none."""
    for back in range(index - 1, -1, -1):
        if not codes[back].co_filename.startswith(_LIBRARY_DIRS):
            return back
    return index - 1


def _user_caller(frames: list[FrameType], index: int) -> FrameType | None:
    """The nearest frame above `index` outside asyncio: whose variable names the object
    (`async with lock` puts asyncio's `__aenter__`, where the lock is `self`, in between)."""
    caller = _user_caller_index([frame.f_code for frame in frames[:index]], index)
    return frames[caller] if caller >= 0 else None


def _classify_chain(
    ctx: AwaitContext, frames: list[FrameType], fut: Any, depth: int = 0
) -> WireAwaiting | None:
    handlers = HANDLERS
    for index, frame in enumerate(frames):
        code = frame.f_code
        handler = handlers.get(code)
        if handler is None:
            continue
        try:
            if handler is _wait_for:
                return _describe_wait_for(ctx, frames, index, fut, depth)
            awaiting = handler(ctx, frame, _user_caller(frames, index), fut)
        except Exception:
            awaiting = None
        if awaiting is not None:
            return awaiting
    if fut is None:
        return None
    try:
        return describe_future(ctx, fut, frames[-1] if frames else None)
    except Exception:
        return {"kind": "future", "tasks": (), "object": _unknown_future_facts(type(fut), None)}


def _build_self_classes() -> dict[CodeType, type]:
    """Handler frames whose description depends only on their `self` (and the code), with
    the class `self` must have: these descriptions are shared by all waiters of an object."""
    from asyncio import subprocess

    methods: list[tuple[type, str]] = [
        (queues.Queue, "get"),
        (queues.Queue, "put"),
        (queues.Queue, "join"),
        (locks.Lock, "acquire"),
        (locks.Semaphore, "acquire"),
        (locks.Event, "wait"),
        (locks.Condition, "wait"),
        (locks.Condition, "wait_for"),
        (streams.StreamReader, "read"),
        (streams.StreamReader, "readline"),
        (streams.StreamReader, "readexactly"),
        (streams.StreamReader, "readuntil"),
        (streams.StreamReader, "_wait_for_data"),
        (streams.StreamWriter, "drain"),
        (streams.FlowControlMixin, "_drain_helper"),
        (taskgroups.TaskGroup, "__aexit__"),
        (taskgroups.TaskGroup, "_aexit"),
        (base_events.Server, "serve_forever"),
        (subprocess.Process, "wait"),
        (subprocess.Process, "communicate"),
    ]
    barrier = getattr(locks, "Barrier", None)
    if barrier is not None:
        methods.append((barrier, "wait"))
    classes: dict[CodeType, type] = {}
    for cls, name in methods:
        code = _code(cls.__dict__.get(name))
        if code is not None and code in HANDLERS and code.co_varnames[:1] == ("self",):
            classes[code] = cls
    return classes


SELF_CLASSES = _build_self_classes()
add_library_handlers()

#: One step of a chain's classification plan: (frame index, handler, index of the frame
#: whose variables name the object or -1, the class of the frame's `self` when the
#: description depends only on it, else None).
PlanStep = tuple[int, Handler, int, type | None]


def plan_chain(codes: Sequence[CodeType]) -> tuple[PlanStep, ...]:
    """Which frames of a chain (given by their code objects, outermost first) have a
    handler. Depends only on the codes, so it is computed once per distinct suspension point
    and cached."""
    steps: list[PlanStep] = []
    for index, code in enumerate(codes):
        handler = HANDLERS.get(code)
        if handler is not None:
            steps.append((index, handler, _user_caller_index(codes, index), SELF_CLASSES.get(code)))
    return tuple(steps)


def plan_cacheable(plan: tuple[PlanStep, ...]) -> bool:
    """Whether what a chain with this plan waits on is told by its own frames and future:
    not wait_for's (on 3.11 it reads another task's frames, which move on their own)."""
    return all(step[1] is not _wait_for for step in plan)


def memo_key(code: CodeType, obj: Any) -> int:
    """The key of a description in `AwaitContext.memo`: a handler's code and the object it
    describes, by their ids, in one int (not a tuple: one is made per unmoved task in every
    look, and a tuple, unlike an int, counts towards the collector's next collection)."""
    return id(code) << 64 | id(obj)


def classify_unmoved(
    ctx: AwaitContext,
    plan: tuple[PlanStep, ...],
    first_code: CodeType | None,
    first_self: Any,
    fut: Any,
    task: Any,
) -> WireAwaiting | None:
    """The fast way to describe a chain that has not moved since it was planned, without its
    frames: a sleep (read from the timers), or an object whose shared description was already
    made in this snapshot (`first_self`: the `self` of the first plan step, `first_code`:
    that step's code; together, its key in `ctx.memo`). None when it cannot tell: then
    `classify_planned` must."""
    if fut is None:
        return None
    if not plan:
        return _describe_unplanned(ctx, fut, task)
    handler, cls = plan[0][1], plan[0][3]
    awaiting: WireAwaiting | None
    if handler is _sleep:
        if id(fut) not in ctx.timers:
            return None  # no timer seen (uvloop's): `classify_planned` finds it
        awaiting = _sleep_of(ctx, fut)
    elif cls is not None and first_code is not None and first_self is not None:
        # The key is made here rather than kept per task: 88 bytes a task between looks.
        hit = ctx.memo.get(memo_key(first_code, first_self))
        if hit is None or hit[0] is not first_self:
            return None
        awaiting = hit[1]
    else:
        return None
    # Never wait_for (not cached): only an asyncio.timeout deadline can apply.
    return _with_deadline(ctx, awaiting, fut, task) if ctx.timeouts else awaiting


def _describe_unplanned(ctx: AwaitContext, fut: Any, task: Any) -> WireAwaiting | None:
    """A chain with no asyncio API frame that awaits a task or a gather: described from
    the future alone (only a bare Future's description reads a frame, for its name)."""
    kind = type(fut)
    if not (kind is _GATHERING_FUTURE or issubclass(kind, asyncio.Task)):
        return None
    try:
        awaiting = describe_future(ctx, fut)
    except Exception:
        return None
    if awaiting is None:
        return None
    return _with_deadline(ctx, awaiting, fut, task)


def classify_planned(
    ctx: AwaitContext,
    frames: list[FrameType | None],
    owners: list[Any],
    fut: Any,
    task: Any,
    plan: tuple[PlanStep, ...],
    found: list[Any] | None = None,
) -> WireAwaiting | None:
    """What a suspended task waits for, None when nothing (runnable), for a chain whose
    plan is known; `owners[i]` is the coroutine (or generator) running `frames[i]`. The
    result may be shared with other tasks: copy it before changing it.

    `found`, when given, gets the `self` of the first step with a `self` class appended when
    that step was looked at, for the caller to keep (weakly) for `classify_unmoved` next
    snapshot."""
    if fut is None and not frames:
        return None
    awaiting: WireAwaiting | None = None
    for index, handler, caller_index, cls in plan:
        # A frame the walk left unmade (`chains.lazy_chain`) is made only when read: a
        # description found in the memo needs none.
        try:
            if handler is _wait_for:
                awaiting = _describe_wait_for(ctx, frames_made(frames, owners), index, fut, 0)
                break
            if cls is None:
                if handler is _sleep:  # told by the loop's timers: reads no frame
                    frame: FrameType | None = None
                    caller: FrameType | None = None
                else:
                    frame = frame_at(frames, owners, index)
                    caller = frame_at(frames, owners, caller_index) if caller_index >= 0 else None
                ctx.owner = owners[index]
                try:
                    awaiting = handler(ctx, frame, caller, fut)  # type: ignore[arg-type]
                finally:
                    ctx.owner = None
            else:
                code = code_at(frames, owners, index)
                obj = first_local(owners[index], code)
                if not issubclass(type(obj), cls):
                    obj = _local(frame_at(frames, owners, index), "self")
                if found is not None:
                    found.append(obj)
                    found = None
                key = memo_key(code, obj)  # the code is a handler's: alive for good
                hit = ctx.memo.get(key)
                if hit is not None and hit[0] is obj:
                    awaiting = hit[1]
                else:
                    frame = frame_at(frames, owners, index)
                    caller = frame_at(frames, owners, caller_index) if caller_index >= 0 else None
                    ctx.self_frame, ctx.self_obj = frame, obj
                    try:
                        awaiting = handler(ctx, frame, caller, fut)
                    finally:
                        ctx.self_frame = ctx.self_obj = None
                    last = ctx.last_memo.get(key)
                    if last is not None and last == awaiting:
                        awaiting = last
                    if awaiting is not None:
                        ctx.memo[key] = (obj, awaiting)
        except Exception:
            awaiting = None
        if awaiting is not None:
            break
    if awaiting is None:
        if fut is None:
            return None
        try:
            innermost = frame_at(frames, owners, len(frames) - 1) if frames else None
            awaiting = describe_future(ctx, fut, innermost)
        except Exception:
            awaiting = {
                "kind": "future",
                "tasks": (),
                "object": _unknown_future_facts(type(fut), None),
            }
        if awaiting is None:
            return None
    if ctx.timeouts or awaiting["kind"] == "wait_for":
        return _with_deadline(ctx, awaiting, fut, task)
    return awaiting


def _with_deadline(ctx: AwaitContext, awaiting: WireAwaiting, fut: Any, task: Any) -> WireAwaiting:
    deadline = ctx.timeouts.get(id(task))
    if deadline is None and awaiting["kind"] == "wait_for":
        deadline = ctx.timers.get(id(fut))  # 3.11: the timer releases wait_for's waiter
    if deadline is not None and math.isfinite(deadline):  # `asyncio.timeout(math.inf)`: none
        awaiting = with_deadline(awaiting, deadline)
    return awaiting


def with_deadline(awaiting: WireAwaiting, deadline: float) -> WireAwaiting:
    """A copy of a description (they may be shared between tasks) with a timeout deadline,
    in loop time, in its countdown (`deadline_in` once materialized)."""
    result = awaiting.copy()
    countdown = awaiting.get("countdown")
    result["countdown"] = (None if countdown is None else countdown_parts(countdown)[0], deadline)
    return result
