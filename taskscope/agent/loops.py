"""The event loops of the monitored process: finding them, hooking their start-up, and a
heartbeat per loop (4 per second) that tells a blocked loop from a busy one.

`LoopTracker` holds what the agent knows of each loop (`LoopRecord`) and the hooks it puts on
asyncio (`_set_running_loop`, `new_event_loop`); `Tracker` (taskscope.agent.tracker) adds the
tasks, and the task factory each loop gets on adoption.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import itertools
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import Any

RunningLoopSetter = Callable[[asyncio.AbstractEventLoop | None], None]

HEARTBEAT_INTERVAL = 0.25
#: A loop whose heartbeat is this late is reported as blocked.
BLOCKED_THRESHOLD = 0.25

#: How many of a blocked loop's ready callbacks `overdue` looks at for a timer.
_READY_LOOKED_AT = 64
#: Stalls kept per loop (the latest), and rate samples (see taskscope.agent.steps).
MAX_STALLS = 50
RATE_SAMPLES = 8

_monotonic = time.monotonic
_wall = time.time


def overdue(loop: asyncio.AbstractEventLoop) -> float:
    """How long the loop's earliest due timer has waited to run (0.0: none, or a loop without
    asyncio's timer heap, such as uvloop's). A turning loop runs due timers at its next turn:
    a timer still on the heap (`_scheduled`) or moved to the ready queue (`_ready`, where a
    `TimerHandle` keeps its `_when`) since long ago is a lower bound of how long the loop has
    not turned. Reads those private attributes of `BaseEventLoop` (tests/test_attach.py
    checks what they mean on every version)."""
    earliest: float | None = None
    try:
        scheduled = getattr(loop, "_scheduled", None)
        if scheduled:
            earliest = scheduled[0]._when
        ready = getattr(loop, "_ready", None)
        if ready:
            for handle in itertools.islice(ready, _READY_LOOKED_AT):
                when = getattr(handle, "_when", None)
                if type(when) is float and (earliest is None or when < earliest):
                    earliest = when
        if earliest is None:
            return 0.0
        return max(0.0, loop.time() - earliest)
    except Exception:  # changed meanwhile by a loop that runs, or not what this expects
        return 0.0


@dataclass(slots=True)
class LoopRecord:
    """One event loop the agent has seen, and its heartbeat."""

    loop_id: str
    loop_ref: weakref.ref[asyncio.AbstractEventLoop]
    thread_id: int | None = None
    #: Monotonic time by which the next heartbeat should have run; None until the loop
    #: picked up the agent on its own thread.
    beat_due: float | None = None
    lag: float | None = None
    adopted: bool = False
    adopt_requested_at: float | None = None
    heartbeat: asyncio.TimerHandle | None = None
    #: The application's task factory, when the agent had to wrap it (see `_install_factory`).
    app_factory: Callable[..., asyncio.Future[Any]] | None = None
    patched_methods: bool = False
    factory_installed: bool = False
    #: The context the history callback of this loop's tasks runs in. Without one,
    #: add_done_callback copies the caller's context for every task: an object made, and
    #: tracked by the garbage collector, per task, for a callback that reads no context
    #: variable. One per loop: a context is entered by one thread at a time, and each loop
    #: runs its callbacks on its own thread, one after the other.
    callback_context: contextvars.Context = field(default_factory=contextvars.Context)
    # Step timing (taskscope.agent.steps), written by the loop thread around each step: how
    # many ran, the seconds they took, when the current one began (perf counter; 0.0: none).
    steps: int = 0
    busy: float = 0.0
    step_started: float = 0.0
    #: The stacks the watchdog sampled in the current step: (its start, `steps.Samples`).
    stall_sample: tuple[float, Any, Any] | None = None
    #: The steps longer than the stall threshold, the latest (see `steps.StallNote`).
    stalls: deque[Any] = field(default_factory=lambda: deque(maxlen=MAX_STALLS))
    #: Untimed steps: the step the watchdog follows (`steps.StepWatch`), and its last look.
    step_watch: Any = None
    last_look: float | None = None
    #: The code of the frame that called the heartbeat on the loop's thread: asyncio's
    #: `Handle._run`, or, for a loop whose callbacks run in C (uvloop), the frame that runs
    #: the loop (what the steps of such a loop run above; see `steps.StepTimer`).
    beat_caller: CodeType | None = None
    #: A compiled loop's step marks: how many of the watchdog's marks (callbacks sent to the
    #: loop) have run, and whether one is on its way.
    step_marks: int = 0
    mark_outstanding: bool = False
    #: (perf counter, steps, busy) noted by the watchdog, for the rates over the last second.
    rate_samples: deque[tuple[float, int, float]] = field(
        default_factory=lambda: deque(maxlen=RATE_SAMPLES)
    )


def _note_beat_caller(record: LoopRecord, depth: int = 1) -> None:
    """(A callback of the loop's, on its thread, or `depth` - 1 calls inside one.) What
    called the callback: see `beat_caller`."""
    try:
        record.beat_caller = sys._getframe(depth).f_code
    except ValueError:  # nothing below: called by C with no Python frame under it
        record.beat_caller = None


class LoopTracker:
    """Knows every loop the agent has seen and hooks asyncio to see new ones; safe to read
    from any thread. `Tracker` builds on it."""

    def __init__(self) -> None:
        self._loop_ids = itertools.count(1)
        self.loops: dict[int, LoopRecord] = {}
        self._loops_lock = threading.Lock()
        self._original_set_running_loop: RunningLoopSetter | None = None
        #: Called (on the loop's thread) whenever a loop starts: the server restarts its
        #: thread there after a fork.
        self.loop_start_listeners: list[Callable[[], None]] = []
        #: Called at each heartbeat with the times (monotonic) of the loop's last one and of
        #: this one, on the loop's thread: the server's check that its own thread is not kept
        #: from the GIL (`gil.py`).
        self.on_beat: Callable[[float, float], None] | None = None
        #: Loops that say they run but never will (see `loop_is_frozen`), by id.
        self.frozen_loop_ids: set[int] = set()
        self._frozen_seen: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._our_set_running_loop: RunningLoopSetter | None = None
        self._original_new_event_loop: Callable[[], asyncio.AbstractEventLoop] | None = None
        self._our_new_event_loop: Callable[[], asyncio.AbstractEventLoop] | None = None
        #: asyncio.Runner, its `_lazy_init` and the agent's in its place (see `install`).
        self._runner_hook: tuple[type, Callable[[Any], None], Callable[[Any], None]] | None = None
        self._installed = False
        #: Unix time from which finished tasks are known, when the agent started in a process
        #: whose loops were already running (an attach): earlier finishes it never saw.
        self.history_since: float | None = None

    def loop_record(self, loop: asyncio.AbstractEventLoop) -> LoopRecord | None:
        record = self.loops.get(id(loop))
        if record is not None and record.loop_ref() is loop:
            return record
        return None

    def register_loop(self, loop: asyncio.AbstractEventLoop) -> LoopRecord:
        with self._loops_lock:
            record = self.loop_record(loop)
            if record is None:
                key = id(loop)
                record = LoopRecord(
                    loop_id=f"L{next(self._loop_ids)}",
                    loop_ref=weakref.ref(loop, lambda _ref: self.loops.pop(key, None)),
                    thread_id=getattr(loop, "_thread_id", None),
                )
                self.loops[key] = record
            return record

    def live_loops(self) -> list[tuple[LoopRecord, asyncio.AbstractEventLoop]]:
        """The loops of this process, less frozen copies inherited through fork (whose ids
        `pending_tasks` then leaves out until the next call)."""
        result = []
        frozen: set[int] = set()
        for record in list(self.loops.values()):
            loop = record.loop_ref()
            if loop is not None and not loop.is_closed():
                if loop_is_frozen(loop):
                    frozen.add(id(loop))
                    continue
                if not record.adopted:
                    self.request_adoption(record, loop)
                result.append((record, loop))
        for loop in list(self._frozen_seen):
            if loop_is_frozen(loop):
                frozen.add(id(loop))
        self.frozen_loop_ids = frozen
        return result

    def install(self) -> None:
        """Hook loop start-up and adopt the loops that already exist."""
        if self._installed:
            return
        self._installed = True
        original = asyncio.events._set_running_loop
        self._original_set_running_loop = original
        tracker = self

        def _set_running_loop(loop: asyncio.AbstractEventLoop | None) -> None:
            original(loop)
            if loop is not None:
                try:
                    tracker.on_loop_started(loop)
                except Exception:
                    pass

        _set_running_loop.__wrapped__ = original  # type: ignore[attr-defined]
        asyncio.events._set_running_loop = _set_running_loop
        # The package's own name for it too: uvloop binds `asyncio._set_running_loop` when it
        # is imported and calls that (a uvloop imported after this sees its loops start).
        if getattr(asyncio, "_set_running_loop", None) is original:
            asyncio._set_running_loop = _set_running_loop
        self._our_set_running_loop = _set_running_loop

        # asyncio.run() creates its main task before the loop runs: see loops at birth too,
        # so that task's creation time and site are known.
        original_new_event_loop = asyncio.events.new_event_loop
        self._original_new_event_loop = original_new_event_loop

        def new_event_loop() -> asyncio.AbstractEventLoop:
            loop = original_new_event_loop()
            try:
                tracker._install_factory(tracker.register_loop(loop), loop)
            except Exception:
                pass
            return loop

        new_event_loop.__wrapped__ = original_new_event_loop  # type: ignore[attr-defined]
        asyncio.events.new_event_loop = new_event_loop
        self._our_new_event_loop = new_event_loop
        # A loop made by a `loop_factory` (`asyncio.run(main(), loop_factory=...)`,
        # `asyncio.Runner`, `uvloop.run`) is made without the hook above, and a compiled loop
        # such as uvloop's starts without telling `_set_running_loop` when uvloop was imported
        # before the agent. See it when its Runner makes it: from 3.14 the agent finds tasks
        # only through the loops it knows. (`Runner._lazy_init` is private: the uvloop tests
        # check it on every version.)
        runner = getattr(asyncio, "Runner", None)
        lazy_init = getattr(runner, "_lazy_init", None)
        if runner is not None and callable(lazy_init):

            def _lazy_init(runner_self: Any) -> None:
                lazy_init(runner_self)
                loop = getattr(runner_self, "_loop", None)
                if isinstance(loop, asyncio.AbstractEventLoop):
                    try:
                        tracker._install_factory(tracker.register_loop(loop), loop)
                    except Exception:
                        pass

            _lazy_init.__wrapped__ = lazy_init  # type: ignore[attr-defined]
            setattr(runner, "_lazy_init", _lazy_init)  # noqa: B010 (a class typeshed knows)
            self._runner_hook = (runner, lazy_init, _lazy_init)
        started = _wall()
        self.discover_loops()
        if self.loops:
            self.history_since = started

    def discover_loops(self) -> None:
        """Find loops created before the agent: the running loop of this thread, then a scan
        of the garbage collector's objects (once, at install)."""
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is not None:
            self.on_loop_started(current)
        for obj in gc.get_objects():
            if isinstance(obj, asyncio.AbstractEventLoop) and obj is not current:
                try:
                    if obj.is_closed():
                        continue
                    if loop_is_frozen(obj):
                        # A copy inherited through fork: its self-pipe is the parent's.
                        self._frozen_seen.add(obj)
                        continue
                except Exception:
                    continue
                self.request_adoption(self.register_loop(obj), obj)

    def request_adoption(self, record: LoopRecord, loop: asyncio.AbstractEventLoop) -> None:
        """Ask a running loop the agent has not run on yet to run `on_loop_started` (its
        heartbeat, its task factory), once. For loops that started without the agent seeing
        them: already running at an attach, or made and started by code that bypasses
        asyncio's hooks (uvloop imported before the agent, a custom loop factory), met first
        through one of their tasks."""
        if record.adopted or record.adopt_requested_at is not None or not self._installed:
            return
        try:
            if not loop.is_running():
                return
            record.adopt_requested_at = _monotonic()
            loop.call_soon_threadsafe(self.on_loop_started, loop)
        except RuntimeError:  # closed meanwhile
            pass

    def on_loop_started(self, loop: asyncio.AbstractEventLoop) -> None:
        """Runs on the loop's own thread when it starts (or when the agent reaches it)."""
        if not self._installed:  # asked for before an uninstall, run after it
            return
        for listener in self.loop_start_listeners:
            try:
                listener()
            except Exception:
                pass
        record = self.loop_record(loop)
        if record is not None and record.adopted and record.thread_id == threading.get_ident():
            record.beat_due = _monotonic() + HEARTBEAT_INTERVAL
            return
        record = record or self.register_loop(loop)
        record.thread_id = threading.get_ident()
        record.adopted = True
        self._install_factory(record, loop)
        if record.heartbeat is not None:
            record.heartbeat.cancel()
        record.beat_due = _monotonic() + HEARTBEAT_INTERVAL
        record.heartbeat = loop.call_later(HEARTBEAT_INTERVAL, self._beat, record, loop)
        loop.call_soon(_note_beat_caller, record)  # at once: the heartbeat comes 0.25 s on

    def _beat(self, record: LoopRecord, loop: asyncio.AbstractEventLoop) -> None:
        now = _monotonic()
        _note_beat_caller(record, 2)
        previous = None
        if record.beat_due is not None:
            record.lag = max(0.0, now - record.beat_due)
            previous = record.beat_due - HEARTBEAT_INTERVAL
        record.beat_due = now + HEARTBEAT_INTERVAL
        record.heartbeat = loop.call_later(HEARTBEAT_INTERVAL, self._beat, record, loop)
        on_beat = self.on_beat
        if on_beat is not None and previous is not None:
            try:
                on_beat(previous, now)
            except Exception:
                self.on_beat = None  # never again rather than into the host's loop

    def blocked_for(self, record: LoopRecord, loop: asyncio.AbstractEventLoop) -> float | None:
        """How long the loop has failed to run its callbacks (a lower bound), or None."""
        if not loop.is_running():
            return None
        now = _monotonic()
        due = record.beat_due if record.adopted else record.adopt_requested_at
        late = now - due if due is not None else 0.0
        if not record.adopted:
            # The agent has not run on this loop yet (it may have been blocked since before
            # the agent came): how long its earliest timer has been due says more.
            late = max(late, overdue(loop))
        return late if late > BLOCKED_THRESHOLD else None

    def _install_factory(self, record: LoopRecord, loop: asyncio.AbstractEventLoop) -> None:
        """See every task this loop creates: `Tracker` does (a loop tracker alone sees none)."""

    def _restore_loop(self, record: LoopRecord, loop: asyncio.AbstractEventLoop) -> None:
        if record.heartbeat is not None:
            record.heartbeat.cancel()
            record.heartbeat = None
        if record.patched_methods:
            # An attribute deleted, not popped from the loop's `__dict__`, which asking for
            # would make (see `tracker._unretrieved_watch`).
            with contextlib.suppress(AttributeError):
                delattr(loop, "create_task")
            record.patched_methods = False
        elif record.factory_installed:
            loop.set_task_factory(record.app_factory)
        record.factory_installed = False
        record.adopted = False

    def uninstall(self) -> None:
        """Undo the loop hooks, and each loop's task factory and heartbeat."""
        if not self._installed:
            return
        self._installed = False
        if asyncio.events._set_running_loop is self._our_set_running_loop:
            asyncio.events._set_running_loop = self._original_set_running_loop  # type: ignore[assignment]
        if getattr(asyncio, "_set_running_loop", None) is self._our_set_running_loop:
            asyncio._set_running_loop = self._original_set_running_loop  # type: ignore[assignment]
        if asyncio.events.new_event_loop is self._our_new_event_loop:
            asyncio.events.new_event_loop = self._original_new_event_loop  # type: ignore[assignment]
        if self._runner_hook is not None:
            runner, original_init, our_init = self._runner_hook
            if runner.__dict__.get("_lazy_init") is our_init:
                setattr(runner, "_lazy_init", original_init)  # noqa: B010
            self._runner_hook = None
        for record, loop in self.live_loops():
            try:
                if record.thread_id == threading.get_ident() or not loop.is_running():
                    self._restore_loop(record, loop)
                else:
                    loop.call_soon_threadsafe(self._restore_loop, record, loop)
            except Exception:
                pass


#: multiprocessing's `BaseProcess._bootstrap`, which runs a child's target (in the child only).
_PROCESS_FILE = os.path.join("multiprocessing", "process.py")


def loop_is_frozen(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether `loop` says it runs but never will: a copy inherited through fork. Its thread
    is gone from this process, or that thread now runs something else inside the call that
    ran this one: another loop (a child that forked inside a coroutine and started a loop of
    its own), or a multiprocessing child's work (a process pool's worker, forked while the
    loop ran a `run_in_executor` or `submit`)."""
    thread_id = getattr(loop, "_thread_id", None)
    if thread_id is None or not loop.is_running():
        return False
    frame: FrameType | None = sys._current_frames().get(thread_id)
    if frame is None:
        return True
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_bootstrap" and code.co_filename.endswith(_PROCESS_FILE):
            return True  # a multiprocessing child's target, run above the parent's frames
        if code.co_name == "run_forever":
            owner = frame.f_locals.get("self")
            if isinstance(owner, asyncio.AbstractEventLoop):
                return owner is not loop
        frame = frame.f_back
    return False
