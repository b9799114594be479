"""trio programs: each `trio.run` as a loop record, its tasks and what they wait for, a
heartbeat that tells a blocked run from an idle one, and cancelling a task through its own
cancel scope. The agent never imports trio: all of this happens only once the program has
(`"trio" in sys.modules`), by reading trio's objects after checking their types by name.

A run is found from its thread's frames (`sys._current_frames()`): the frame of trio's `run`
(trio/_core/_run.py) holds the run's `Runner` in its local `runner`, read once per run (on
3.11-3.12 reading a frame's locals copies them into a dict the frame keeps). The runner holds
every task (`tasks`), the main one (`main_task`), its clock (`clock.offset`, for a
`SystemClock`: trio's time is `perf_counter() + offset`) and its entry queue (`entry_queue`,
the thread-safe queue behind `TrioToken.run_sync_soon`). A task holds its coroutine (`coro`),
its name, the nursery it runs in (`_parent_nursery`, whose `_parent_task` is its parent and
`_parent_waiting_in_aexit` says whether that parent waits for it) and its innermost cancel
status (`_cancel_status`: `_scope`, `_parent`, `_tasks`, `_children`). What each of these
means is checked on every version by tests/test_trio_assumptions.py.

What a task waits on is read from the locals of trio's own frames (`self`, `fd`, `sync_fn`):
on 3.11-3.12 that copies the frame's locals into a dict the frame keeps, which goes with the
frame when the wait ends (trio's frames return as soon as they are resumed); on 3.13+ the
locals are read through a view. Names of objects are read from the program's frame above,
as for asyncio (`awaiting.object_name`).

While the agent tracks tasks (`track_tasks`), it adds an instrument to each run it finds
(`TaskWatch`, through trio's public `trio.lowlevel.add_instrument`, called on the run's own
thread from its entry queue) and removes it when it is uninstalled. The instrument notes each
task's spawn (when, and where: the program's frames that called `start_soon` or `start`,
trio's own skipped) and its exit (how it ended, and a failed task's traceback, into the
tracker's history, as asyncio's done callback does). How a task ended is the `outcome`
local of trio's `Runner.task_exited`, whose frame calls the instruments (for the main task,
the runner's `main_task_outcome`); checked by tests/test_trio_assumptions.py as well. An
installed agent learns of each run as trio sets
it up (3.12+, `trio_starts`) and adds the instrument then, on the run's thread, before its
first task (`TrioWatch.run_started`); a run it did not see start gets it from a look. Tasks
spawned before the instrument came are shown as first seen by a look, without a creator.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import socket
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import CodeType, CoroutineType, FrameType, FunctionType
from typing import TYPE_CHECKING, Any

from taskscope.agent.awaiting import (
    THREAD_STACK_DEPTH,
    AwaitContext,
    ThreadCall,
    callable_name,
    object_name,
    thread_call,
    tokens_left,
)
from taskscope.agent.chains import MAX_STACK_DEPTH, _chain, _origin, frame_record, line_at
from taskscope.agent.failures import TracebackNote
from taskscope.agent.loops import (
    BLOCKED_THRESHOLD,
    HEARTBEAT_INTERVAL,
    MAX_STALLS,
    RATE_SAMPLES,
)
from taskscope.agent.steps import watch_interval
from taskscope.agent.summary import exception_summary, result_summary
from taskscope.agent.threadframes import thread_tops
from taskscope.agent.tracker import (
    Site,
    _site_lines,
    _SiteNode,
    coro_name,
    place_site_node,
    site_chain,
)
from taskscope.agent.trio_starts import (
    run_starts_watched,
    stop_watching_run_starts,
    watch_run_starts,
)
from taskscope.agent.trio_steps import (
    busy_share,
    ongoing_stall,
    stall_records,
    watch_steps,
)
from taskscope.protocol import CancelOutcome, WireAwaiting, WireFrame, WireLoop, WireTask, sliced

if TYPE_CHECKING:
    from taskscope.agent.tracker import Tracker

_wall = time.time
#: Whether `perf_counter()` (trio's clock, less its offset) and `monotonic()` (the snapshot's
#: `loop_time`) are one clock.
_SAME_CLOCKS = (
    time.get_clock_info("perf_counter").implementation
    == time.get_clock_info("monotonic").implementation
)
#: Where trio's `run` is: a frame of this file named `run` holds the run's `Runner`.
_RUN_FILE = os.sep + os.path.join("trio", "_core", "_run.py")
_TRIO_DIR = os.sep + "trio" + os.sep
#: A trio task the agent knows: a weak reference to it, its agent id, when the agent first
#: saw it (None: its spawn was noted), when it was spawned (None: not noted) and where (the
#: program's frames that spawned it, as instruction offsets: see `_spawn_chain`).
Known = tuple["weakref.ref[Any]", int, float | None, float | None, Site]


def trio_loaded() -> bool:
    """Whether the program has imported trio (the agent never does)."""
    return "trio" in sys.modules


def _gone(known: Known) -> bool:
    """Whether a task a look did not find is gone: collected, or one whose spawn was noted
    (the look may have copied the run's tasks before) and whose coroutine has ended."""
    if known[3] is None:
        return True
    task = known[0]()
    return task is None or getattr(getattr(task, "coro", None), "cr_frame", None) is None


def _is_trio(obj: Any, name: str) -> bool:
    """Whether `obj` is an instance of trio's class `name` (by the class's module, never by
    importing trio)."""
    kind = type(obj)
    return kind.__name__ == name and str(getattr(kind, "__module__", "")).startswith("trio.")


@dataclass
class TrioRun:
    """One `trio.run` the agent has seen: its loop id, thread and heartbeat."""

    loop_id: str
    thread_id: int
    runner_ref: weakref.ref[Any]
    #: id() of the frame of `run` the runner was read from (the same frame: the same run).
    frame_id: int
    #: Monotonic time the outstanding heartbeat was sent (None: none outstanding).
    beat_sent: float | None = None
    #: Monotonic time the last heartbeat ran on the run's thread.
    beat_ran: float | None = None
    lag: float | None = None
    #: id(task) -> what the agent knows of it (`Known`). Written by looks (any thread) and by
    #: the run's `TaskWatch` (the run's thread): single dict operations, atomic under the GIL.
    task_ids: dict[int, Known] = field(default_factory=dict)
    #: The instrument the agent added to the run (None: none, or removed).
    instrument: TaskWatch | None = None
    #: Unix time the instrument went into the run (None: not in).
    spawns_seen_since: float | None = None
    #: The task step the stall watchdog follows (`trio_steps.TrioStep`), its last look
    #: (monotonic) and the stalls it kept, the latest (see `steps.StallNote`).
    step: Any = None
    last_look: float | None = None
    stalls: deque[Any] = field(default_factory=lambda: deque(maxlen=MAX_STALLS))
    #: Seconds the watchdog saw the run in task steps, estimated from its looks (the time
    #: since the last look, when in one now), and (monotonic, that sum) noted for its share
    #: of the last second.
    busy: float = 0.0
    busy_samples: deque[tuple[float, float]] = field(
        default_factory=lambda: deque(maxlen=RATE_SAMPLES)
    )


class TrioWatch:
    """What the agent knows of a process's trio runs; one per tracker."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.runs: dict[int, TrioRun] = {}
        self._lock = threading.Lock()
        #: Whether the agent was uninstalled: no instrument is added from then on.
        self.stopped = False

    # --- finding runs ----------------------------------------------------------------------

    def live_runs(self) -> list[tuple[TrioRun, Any]]:
        """The trio runs going on now, with their runners, found from the threads' frames."""
        if not trio_loaded():
            return []
        found: list[tuple[TrioRun, Any]] = []
        with self._lock:
            seen: set[int] = set()
            for thread_id, top in thread_tops().items():
                frame = _run_frame(top)
                if frame is None and thread_id in self.runs:
                    frame = _run_frame_again(thread_id)
                if frame is None:
                    continue
                seen.add(thread_id)
                run = self.runs.get(thread_id)
                runner = run.runner_ref() if run is not None else None
                if run is None or runner is None or run.frame_id != id(frame):
                    runner = _runner_of(frame)
                    if runner is None:
                        continue
                    run = self._new_run(thread_id, runner, frame)
                    _beat_soon()  # found by a look: its heartbeat starts at the next turn
                if run.instrument is None and not self.stopped:
                    self._watch_tasks(run, runner)  # (again until the tracker is installed)
                found.append((run, runner))
            for thread_id in list(self.runs):
                if thread_id not in seen:
                    del self.runs[thread_id]
        return found

    def _new_run(self, thread_id: int, runner: Any, run_frame: FrameType) -> TrioRun:
        """(Under `_lock`.) A run met on `thread_id`, known by the frame of its `trio.run`."""
        run = TrioRun(
            loop_id=f"L{next(self.tracker._loop_ids)}",
            thread_id=thread_id,
            runner_ref=weakref.ref(runner),
            frame_id=id(run_frame),
        )
        self.runs[thread_id] = run
        return run

    # --- the instrument ------------------------------------------------------------------

    def _watch_tasks(self, run: TrioRun, runner: Any) -> None:
        """While tracking tasks: add a `TaskWatch` to a run just found, on its own thread."""
        tracker = self.tracker
        if not tracker.track_tasks or not getattr(tracker, "_installed", False):
            return
        queue: Any = getattr(runner, "entry_queue", None)
        if not _is_trio(queue, "EntryQueue") or getattr(queue, "done", True):
            return
        instrument = TaskWatch(self, run)
        try:
            queue.run_sync_soon(_add_instrument, instrument)
        except Exception:  # the run ended meanwhile
            return
        run.instrument = instrument

    def run_started(self, runner: Any, caller: FrameType | None) -> None:
        """On the thread of a run that trio has just set up, before its first task
        (`trio_starts`): the run, and the instrument in it at once, so that every spawn of
        the run is noted. A guest run (not called from `run`) is left to the looks, which do
        not show it."""
        tracker = self.tracker
        if caller is None or not _is_run_code(caller.f_code) or not _is_trio(runner, "Runner"):
            return
        if not tracker.track_tasks or not getattr(tracker, "_installed", False):
            return
        with self._lock:
            if self.stopped:
                return
            run = self._new_run(threading.get_ident(), runner, caller)
            instrument = TaskWatch(self, run)
            try:  # (trio's run context is this thread's from setup_runner on)
                sys.modules["trio"].lowlevel.add_instrument(instrument)
            except Exception:  # then a look adds it, through the entry queue
                return
            run.instrument = instrument
            run.spawns_seen_since = _wall()
        _beat_soon()
        now = time.monotonic()
        if now - _run_start_woke[0] < HEARTBEAT_INTERVAL:
            return  # (runs one after another, as in a test suite: the agent's thread,
            # woken by the first, looks again within `_IDLE_LOOK`)
        _run_start_woke[0] = now
        for listener in tracker.loop_start_listeners:  # the agent's thread looks now
            with contextlib.suppress(Exception):
                listener()

    def stop(self) -> None:
        """Remove the instrument from every run it was added to (each on its own thread);
        from now on its hooks do nothing, even before trio has removed it."""
        if _START_WATCHER[0] is self:
            _START_WATCHER[0] = None
            stop_watching_run_starts()
        with self._lock:
            self.stopped = True
            runs = list(self.runs.values())
        for run in runs:
            instrument, run.instrument = run.instrument, None
            run.spawns_seen_since = None
            if instrument is None:
                continue
            instrument.on = False
            queue: Any = getattr(run.runner_ref(), "entry_queue", None)
            if _is_trio(queue, "EntryQueue"):
                with contextlib.suppress(Exception):  # the run ended: the instrument with it
                    queue.run_sync_soon(_remove_instrument, instrument)

    # --- the heartbeat -----------------------------------------------------------------------

    def beat(self, now: float) -> None:
        """From the agent's thread: send each run a heartbeat through its entry queue (what
        `TrioToken.run_sync_soon` does) unless one is still on its way; a run whose beat has
        not run for a while is blocked (see `blocked_for`)."""
        for run, runner in self.live_runs():
            if run.beat_ran is None or now - run.beat_ran >= HEARTBEAT_INTERVAL:
                _send_beat(run, runner, now)

    def beat_new_steps(self, now: float) -> None:
        """From the agent's thread, right after the stall watchdog's look: a heartbeat for each
        run whose step the watchdog saw for the first time, its task not known yet. When that
        beat has run by the next look, the run turned in between, and a step seen then at the
        same frame is another one (`trio_steps`): a starved agent's looks may be a second
        apart, and a task busy in short steps would read as one long step."""
        for run in list(self.runs.values()):
            if _new_step(run):
                runner = run.runner_ref()  # (the look just found the run: no walk again)
                if runner is not None:
                    _send_beat(run, runner, now)

    def blocked_for(self, run: TrioRun, now: float) -> float | None:
        """How long the run's heartbeat has waited to run (a lower bound of how long the run
        has not turned), when that is longer than the threshold; else None."""
        late = now - run.beat_sent if run.beat_sent is not None else 0.0
        return late if late > BLOCKED_THRESHOLD else None

    # --- snapshots ------------------------------------------------------------------------

    def task_id(self, run: TrioRun, task: Any) -> int:
        return self.known(run, task)[1]

    def known(self, run: TrioRun, task: Any) -> Known:
        """What the agent knows of a task, giving it an id (first seen now) if it knew nothing."""
        table = run.task_ids
        known = table.get(id(task))
        if known is None or known[0]() is not task:
            fresh: Known = (weakref.ref(task), next(self.tracker._ids), _wall(), None, ())
            if known is None:  # (the run's thread may note its spawn meanwhile: theirs wins)
                known = table.setdefault(id(task), fresh)
            else:
                known = table[id(task)] = fresh
        return known

    def add_to_snapshot(self, loops: list[WireLoop], records: list[WireTask]) -> None:
        """The loop record of every trio run, and a record per task of each, added to a
        snapshot's lists. A run that cannot be read (changed under us in a way this did not
        foresee) is left out of this look, never failing it."""
        now = time.monotonic()
        for run, runner in self.live_runs():
            run_records: list[WireTask] = []
            try:
                loop = self._look_at_run(run, runner, run_records, now)
            except Exception:
                continue
            records.extend(run_records)
            loops.append(loop)

    def _look_at_run(
        self, run: TrioRun, runner: Any, records: list[WireTask], now: float
    ) -> WireLoop:
        tasks = _copy(getattr(runner, "tasks", ()))
        look = _Look(self, run, runner)
        alive: set[int] = set()
        for task in sliced(tasks):  # the run's thread may wait for the GIL
            if not _is_trio(task, "Task"):
                continue
            alive.add(id(task))
            with contextlib.suppress(Exception):  # a task that changed under us
                records.append(look.record(task))
        table = run.task_ids
        for key, known in list(table.items()):
            if key not in alive and _gone(known) and table.get(key) is known:
                table.pop(key, None)  # (another thread's look may have done it)
        return self._loop_record(run, runner, len(tasks), look, now)

    def _loop_record(
        self, run: TrioRun, runner: Any, count: int, look: _Look, now: float
    ) -> WireLoop:
        thread = threading._active.get(run.thread_id)  # type: ignore[attr-defined]
        blocked_for = self.blocked_for(run, now)
        blocking: list[WireFrame] = []
        if blocked_for is not None:
            frame = sys._current_frames().get(run.thread_id)
            while frame is not None and len(blocking) < MAX_STACK_DEPTH:
                blocking.append(frame_record(frame.f_code, frame.f_lineno))
                frame = frame.f_back
            blocking.reverse()
        wire: WireLoop = {
            "id": run.loop_id,
            "thread_id": run.thread_id,
            "thread_name": thread.name if thread is not None else None,
            "running": True,
            "closed": False,
            "blocked_for": round(blocked_for, 3) if blocked_for is not None else None,
            "lag": round(run.lag, 4) if run.lag is not None else None,
            "blocking_stack": blocking,
            "type": "trio",
            "tasks": count,
        }
        main = getattr(runner, "main_task", None)
        if main is not None:
            wire["main_task"] = str(self.task_id(run, main))
        steps = self.tracker.steps
        if steps is not None:
            # A look of its own first: a step over since the watchdog's last look is kept
            # now, so that a look right after a block lists it (not from the run's own
            # thread: there the look is the step).
            if run.thread_id != threading.get_ident():
                with steps.watch_lock:
                    watch_steps((run,), steps.threshold, now, self.task_id)
            share = busy_share(run, now)
            if share is not None:
                wire["busy_share"] = share
            wire["stall_threshold"] = steps.threshold
            stalls = stall_records(run, steps)
            ongoing = ongoing_stall(run, steps.threshold, now, self.task_id)
            if ongoing is not None:
                stalls.append(ongoing)
            wire["stalls"] = stalls
        if run.spawns_seen_since is not None:
            wire["spawns_seen_since"] = round(run.spawns_seen_since, 3)
        elif run.instrument is not None:  # asked of the run, which has not taken a turn yet
            wire["spawns_watch_pending"] = True
        return wire

    # --- cancel -----------------------------------------------------------------------------

    def find(self, number: int) -> tuple[TrioRun, Any, Any] | None:
        """The run, runner and task with this agent id, or None."""
        for run, runner in self.live_runs():
            for task in _copy(getattr(runner, "tasks", ())):
                known = run.task_ids.get(id(task))
                if known is not None and known[1] == number and known[0]() is task:
                    return run, runner, task
        return None

    def request_cancel(
        self, number: int, message: str | None, done: Callable[[CancelOutcome, str | None], Any]
    ) -> CancelOutcome | None:
        """Cancel a trio task through the outermost cancel scope that is its own (see
        `own_scope`), on the run's own thread; None when handed over (then `done` is called
        there), "no_such_task" when no trio task has this id."""
        found = self.find(number)
        if found is None:
            return "no_such_task"
        _run, runner, task = found
        queue: Any = getattr(runner, "entry_queue", None)
        if not _is_trio(queue, "EntryQueue"):
            return "already_finished"
        try:
            queue.run_sync_soon(_cancel_on_run, runner, task, message, done)
        except Exception:  # the run ended meanwhile
            return "already_finished"
        return None


#: Tracker -> its watch. A watch holds its tracker, so an entry would keep its weak key alive
#: for ever: `stop_watching_trio` (at uninstall) takes it out, and a look after that gets a
#: watch of its own, not kept (`_STOPPED`).
_WATCHES: weakref.WeakKeyDictionary[Tracker, TrioWatch] = weakref.WeakKeyDictionary()
_STOPPED: weakref.WeakSet[Tracker] = weakref.WeakSet()


#: The watch told of each run's start (`watch_trio_starts`), if any.
_START_WATCHER: list[TrioWatch | None] = [None]


def watch_trio_starts(tracker: Tracker) -> bool:
    """At install, tracking tasks: learn of each `trio.run` as it starts (trio_starts, 3.12+),
    so that its instrument notes its spawns from the first; returns whether that works here
    (False: the agent looks for runs instead, see `beat_trio_runs`)."""
    if not tracker.track_tasks:
        return False
    watch = watch_of(tracker)
    if not watch_run_starts(watch.run_started):
        return False
    _START_WATCHER[0] = watch
    return True


def watch_of(tracker: Tracker) -> TrioWatch:
    watch = _WATCHES.get(tracker)
    if watch is None:
        watch = TrioWatch(tracker)
        if tracker not in _STOPPED:
            _WATCHES[tracker] = watch
    return watch


def add_trio_runs(
    tracker: Tracker, loops: list[WireLoop], records: list[WireTask], ctx: AwaitContext
) -> None:
    """The snapshot builder's step for trio: nothing unless the program imported trio. The
    snapshot's `loop_time` is `time.monotonic()` when no asyncio loop gave it."""
    if trio_loaded():
        before = len(loops)
        watch_of(tracker).add_to_snapshot(loops, records)
        if len(loops) > before and not ctx.loop_time:
            ctx.loop_time = time.monotonic()


def beat_trio_runs(tracker: Tracker, now: float) -> None:
    """The agent thread's step for trio, called at each of its turns: each run's heartbeat,
    every half heartbeat interval while trio runs (a look for a run every `_IDLE_LOOK` while
    none does). Tracking tasks where runs are not reported as they start (3.11, or no free
    `sys.monitoring` tool id: see `watch_trio_starts`), an installed agent looks sooner in
    its first `_FAST_WINDOW` seconds (`taskscope run`, install() before `trio.run` or before
    `import trio`): for trio's import and for a run every `_FAST_LOOK`, so that a run is
    found soon after it starts and its instrument misses few spawns; after that window it
    sleeps as before."""
    global _next_beat, _import_awaited, _fast_window_end, _next_step_look
    if now >= _next_step_look:
        _next_step_look = math.inf
        steps = tracker.steps
        if steps is not None and trio_loaded():
            watch = watch_of(tracker)
            if watch.runs:
                with steps.watch_lock:
                    following = watch_steps(
                        watch.runs.values(), steps.threshold, now, watch.task_id
                    )
                watch.beat_new_steps(now)
                _next_step_look = now + watch_interval(steps.threshold, following)
    if now < _next_beat:
        return
    fast = False
    if tracker.track_tasks and getattr(tracker, "_installed", False) and not run_starts_watched():
        if _fast_window_end is None:
            _fast_window_end = now + _FAST_WINDOW
        fast = now < _fast_window_end
    if not trio_loaded():
        _import_awaited = fast
        if fast:
            _next_beat = now + _FAST_LOOK
        return
    watch = watch_of(tracker)
    watch.beat(now)
    idle = _FAST_LOOK if fast else _IDLE_LOOK
    _next_beat = now + (HEARTBEAT_INTERVAL / 2 if watch.runs else idle)
    if watch.runs and _next_step_look == math.inf:
        _next_step_look = now  # a run found: the stall watchdog follows it from now on


def trio_turned_since(tracker: Tracker, began: float) -> bool:
    """Whether a trio run's heartbeat ran on its thread after `began` (monotonic): the run
    turned while the agent's thread waited (`server`'s check of a late wait)."""
    watch = _WATCHES.get(tracker)
    if watch is None:
        return False
    return any(
        run.beat_ran is not None and run.beat_ran > began for run in list(watch.runs.values())
    )


def next_trio_beat() -> float | None:
    """When the agent's thread should next call `beat_trio_runs` (monotonic), or None: none
    is due (trio not imported, and tasks not tracked)."""
    if not (_import_awaited or trio_loaded()):
        return None
    return min(_next_beat, _next_step_look)


#: Monotonic time a run's start last woke the agent's thread (`TrioWatch.run_started`).
_run_start_woke = [-math.inf]


def _beat_soon() -> None:
    global _next_beat
    _next_beat = 0.0


#: When the stall watchdog next looks at the runs' threads (`trio_steps`; inf: no run).
_next_step_look = math.inf


#: Seconds between looks for a trio run while the program has imported trio but runs none.
_IDLE_LOOK = 2.0
#: Seconds between looks for trio's import or a run in an installed agent's first
#: `_FAST_WINDOW` seconds (only while tracking tasks; see `beat_trio_runs`).
_FAST_LOOK = 0.25
_FAST_WINDOW = 30.0
#: Monotonic time the fast looks end (None: not started).
_fast_window_end: float | None = None
_next_beat = 0.0
#: Whether the agent's thread looks for trio's import (see `beat_trio_runs`).
_import_awaited = False


def stop_watching_trio(tracker: Tracker) -> None:
    """At uninstall: remove the agent's instrument from the trio runs it was added to, and
    let the tracker go (with its history and metadata)."""
    _STOPPED.add(tracker)
    watch = _WATCHES.pop(tracker, None)
    if watch is not None:
        watch.stop()


def find_trio_task(tracker: Tracker, number: int) -> tuple[Any, Site] | None:
    """The trio task with this agent id and where it was spawned ((code, line) pairs, empty
    when its spawn was not seen), or None."""
    if not trio_loaded():
        return None
    found = watch_of(tracker).find(number)
    if found is None:
        return None
    run, _runner, task = found
    known = run.task_ids.get(id(task))
    site = known[4] if known is not None and known[0]() is task else ()
    return task, _site_lines(site)


def request_trio_cancel(
    tracker: Tracker,
    number: int,
    message: str | None,
    done: Callable[[CancelOutcome, str | None], Any],
) -> CancelOutcome | None:
    if not trio_loaded():
        return "no_such_task"
    return watch_of(tracker).request_cancel(number, message, done)


# --- on the run's thread ---------------------------------------------------------------------


def waits_for_idle(runner: Any) -> bool:
    """Whether the run acts when it has been idle for a while: a clock that jumps ahead then
    (`MockClock(autojump_threshold=...)`) or a task in `wait_all_tasks_blocked`. A heartbeat
    would wake it before that while and change what it does: such a run gets none (and is
    never said to be blocked)."""
    threshold = getattr(runner, "clock_autojump_threshold", math.inf)
    return bool(getattr(runner, "waiting_for_idle", None)) or threshold != math.inf


def _new_step(run: TrioRun) -> bool:
    """Whether the stall watchdog saw the run's step once only, its task not known yet."""
    step = run.step
    return step is not None and step.task is None and step.first_seen == step.last_seen


def _send_beat(run: TrioRun, runner: Any, now: float) -> None:
    """A heartbeat sent to the run through its entry queue (what `TrioToken.run_sync_soon`
    does), unless one is still on its way or the run acts on idleness (`waits_for_idle`)."""
    if run.beat_sent is not None or waits_for_idle(runner):
        return
    queue: Any = getattr(runner, "entry_queue", None)
    if not _is_trio(queue, "EntryQueue") or getattr(queue, "done", True):
        return
    run.beat_sent = now
    try:
        queue.run_sync_soon(_beat_ran, run)
    except Exception:  # the run ended meanwhile
        run.beat_sent = None


def _beat_ran(run: TrioRun) -> None:
    """The heartbeat, run by trio's entry queue on the run's thread (an exception there
    would end the run: none can come out)."""
    try:
        now = time.monotonic()
        if run.beat_sent is not None:
            run.lag = max(0.0, now - run.beat_sent)
        run.beat_sent = None
        run.beat_ran = now
    except BaseException:
        pass


class TaskWatch:
    """The instrument the agent adds to a trio run while it tracks tasks: it notes each task's
    spawn (when, and the program's frames that spawned it) and its exit (how it ended, into
    the tracker's history). trio calls an instrument only for the hooks it defines, so it
    defines these two and nothing per step. Its hooks never raise (trio would remove it and
    log a traceback into the program's output) and keep nothing of a task past its exit: a
    weak reference while it runs, then text (and a failed one's traceback as code objects
    and line numbers, nothing of its frames). They run on trio's thread for every task, so
    what they touch is bound here once."""

    __slots__ = ("depth", "history", "loop_id", "new_id", "on", "run", "table", "watch")

    def __init__(self, watch: TrioWatch, run: TrioRun) -> None:
        self.watch = watch
        self.run = run
        #: False once the agent is uninstalled: the hooks do nothing from then on.
        self.on = True
        tracker = watch.tracker
        self.depth = tracker.creation_depth
        self.new_id = tracker._ids.__next__
        self.history = tracker.note_finished_elsewhere
        self.table = run.task_ids
        self.loop_id = run.loop_id

    def task_spawned(self, task: Any) -> None:
        try:
            if not self.on:
                return
            # Three frames up: trio's start_soon (or start, or another of trio's), above
            # Instruments.call and spawn_impl; from there the walk passes trio's own.
            site = _spawn_chain(_getframe(3), self.depth)
            key = id(task)
            known = self.table.get(key)  # a look may have seen it since trio added it
            task_id = known[1] if known is not None and known[0]() is task else self.new_id()
            self.table[key] = (_weakref(task), task_id, None, _wall(), site)
        except BaseException:
            pass

    def task_exited(self, task: Any) -> None:
        try:
            if not self.on:
                return
            table = self.table
            known = table.pop(id(task), None)
            if known is None or known[0]() is not task:
                known = (_weakref(task), self.new_id(), None, None, ())
            state, summary, failure = _ending(_exit_outcome(task, self.run))
            nursery = task._parent_nursery
            parent = nursery._parent_task if nursery is not None else None
            parent_id = None
            if parent is not None:
                noted = table.get(id(parent))
                if noted is not None and noted[0]() is parent:
                    parent_id = noted[1]
                else:
                    parent_id = self.watch.task_id(self.run, parent)
            coro = task.coro
            what = coro.cr_code if type(coro) is CoroutineType else coro_name(coro)
            self.history(
                known[1],
                self.loop_id,
                task.name,
                what,
                state,
                known[3],
                parent_id,
                summary,
                known[4],
                known[2],
                failure,
            )
        except BaseException:
            pass


_getframe = sys._getframe
_weakref = weakref.ref


def _add_instrument(instrument: TaskWatch) -> None:
    """On the run's thread (from its entry queue): trio's public `add_instrument`, unless the
    agent was uninstalled meanwhile."""
    with contextlib.suppress(BaseException):
        if instrument.on:
            sys.modules["trio"].lowlevel.add_instrument(instrument)
            instrument.run.spawns_seen_since = _wall()


def _remove_instrument(instrument: TaskWatch) -> None:
    """On the run's thread: trio's public `remove_instrument` (KeyError: it was not there)."""
    with contextlib.suppress(BaseException):
        sys.modules["trio"].lowlevel.remove_instrument(instrument)


def _exit_outcome(task: Any, run: TrioRun) -> Any:
    """How a task ended, from the frame of trio's `Runner.task_exited` that calls the
    instruments, two frames above the hook (its local `outcome`; for the main task, the
    runner's `main_task_outcome`, the local being trio's stand-in `Value(None)` then), or
    None."""
    frame: FrameType | None = _getframe(3)  # (this function, the hook, Instruments.call)
    if frame is None or frame.f_code is not _EXIT_CODE[0]:
        if frame is None or not _is_exit_code(frame.f_code):
            return None
        _EXIT_CODE[0] = frame.f_code
    runner = run.runner_ref()
    if runner is not None and task is runner.main_task:
        return runner.main_task_outcome
    # (3.11-3.12: a dict of its locals the frame keeps until it returns, at once)
    return frame.f_locals.get("outcome")


def _is_exit_code(code: CodeType) -> bool:
    return code.co_name == "task_exited" and code.co_filename.endswith(_RUN_FILE)


#: The code of trio's `Runner.task_exited`, once met.
_EXIT_CODE: list[CodeType | None] = [None]
#: The classes of trio's outcomes (`outcome.Value`, `outcome.Error`), once met.
_OUTCOME_TYPES: dict[type, str] = {}


def _ending(outcome: Any) -> tuple[str, str | None, TracebackNote | None]:
    """The state and summary of an `outcome.Value` or `outcome.Error` (trio's `Cancelled`,
    or a group of nothing else: cancelled), and for an error its traceback note (made now:
    trio's thread, failed tasks only; taskscope.agent.failures); an outcome this does not
    know: done, no summary."""
    kind = type(outcome)
    which = _OUTCOME_TYPES.get(kind)
    if which is None:
        if not str(getattr(kind, "__module__", "")).startswith("outcome"):
            return "done", None, None
        which = _OUTCOME_TYPES[kind] = kind.__name__
    if which == "Value":
        value = outcome.value
        return "done", "None" if value is None else result_summary(value), None
    if which == "Error":
        error = outcome.error
        if _all_cancelled(error):
            return "cancelled", None, None
        try:
            note: TracebackNote | None = TracebackNote(error)
        except Exception:
            note = None
        return "failed", exception_summary(error), note
    return "done", None, None


def _all_cancelled(error: BaseException) -> bool:
    """Whether an exception is trio's `Cancelled`, or a group holding only such."""
    if isinstance(error, BaseExceptionGroup):
        return bool(error.exceptions) and all(_all_cancelled(inner) for inner in error.exceptions)
    kind = type(error)
    module = str(getattr(kind, "__module__", ""))
    return kind.__name__ == "Cancelled" and (module == "trio" or module.startswith("trio."))


#: The tree of spawn chains seen so far (see `tracker._SiteNode`), with trio's frames passed
#: through and the run's `unrolled_run` (which runs the spawning task's step) where a chain ends.
_SPAWN_TREE: dict[Any, _SiteNode] = {}
_spawn_nodes = [0]


#: _spawn_chain(frame, depth): where a trio task was spawned, the (code, instruction offset)
#: of the program's frames from the one that called `start_soon` (or `start`) outwards, at
#: most `depth`, trio's own skipped (`tracker.site_chain`, as asyncio's creation chains).
def _spawn_node(
    level: dict[Any, _SiteNode], code: CodeType, offset: int, parent: _SiteNode | None
) -> _SiteNode:
    """A frame's node, not found at its level by offset alone (see `tracker.place_site_node`):
    trio's own code as a pass-through node, its run's loop (`unrolled_run`, where a chain
    stops) as a final one."""
    in_trio = _in_trio(code)
    return place_site_node(
        level,
        code,
        offset,
        parent,
        stop=in_trio and code.co_name == "unrolled_run",
        pass_through=in_trio,
        tree=_SPAWN_TREE,
        count=_spawn_nodes,
    )


_spawn_chain: Callable[[FrameType | None, int], Site] = functools.partial(
    site_chain, _SPAWN_TREE, _spawn_node, None
)


def _in_trio(code: CodeType) -> bool:
    """Whether a code object is trio's own (in the trio package's directory)."""
    global _trio_package
    if not _trio_package:
        path = getattr(sys.modules.get("trio"), "__file__", None)
        _trio_package = os.path.dirname(path) + os.sep if path else _TRIO_DIR
    if _trio_package is _TRIO_DIR:
        return _TRIO_DIR in code.co_filename
    return code.co_filename.startswith(_trio_package)


_trio_package = ""


def own_scope(task: Any) -> tuple[Any, str | None]:
    """The outermost cancel scope that is the task's (no task runs under it but the task and
    the tasks of the nurseries it opened, its descendants), and None; or None and why there
    is none. Cancelling it cancels whatever the task does inside it, its children included,
    and nothing else; the task then goes on after it, as trio does for any scope. Runs on
    the run's thread (the statuses it reads are only changed there)."""
    status = getattr(task, "_cancel_status", None)
    if status is None or not _is_trio(status, "CancelStatus"):
        return None, "trio gives it no cancel status"
    family = _descendants(task)
    if not _only(status, family):
        return None, (
            "trio cancels through cancel scopes, and this task has none of its own: its "
            "innermost one is shared with other tasks (cancel its nursery's cancel_scope "
            "in the program)"
        )
    while True:
        parent = status._parent
        if parent is None or not _is_trio(parent, "CancelStatus") or not _only(parent, family):
            return status._scope, None
        status = parent


def _descendants(task: Any) -> set[int]:
    """The ids of a task and of every task of the nurseries it opened, theirs too."""
    found: set[int] = set()
    pending = [task]
    while pending:
        current = pending.pop()
        if id(current) in found:
            continue
        found.add(id(current))
        for nursery in getattr(current, "_child_nurseries", ()):
            pending.extend(getattr(nursery, "_children", ()))
    return found


def _only(status: Any, family: set[int]) -> bool:
    """Whether every task under a cancel status (its own and its children's) is in `family`."""
    pending = [status]
    while pending:
        current = pending.pop()
        if any(id(task) not in family for task in current._tasks):
            return False
        pending.extend(current._children)
    return True


def _trio_own(runner: Any, task: Any) -> bool:
    """Whether the task is one of trio's own: its init task, or a task of a nursery the init
    task opened other than the main one (the system tasks, the entry queue's)."""
    init = getattr(runner, "init_task", None)
    if init is None or task is init:
        return True
    nursery = getattr(task, "_parent_nursery", None)
    return getattr(nursery, "_parent_task", None) is init and task is not runner.main_task


def _cancel_on_run(runner: Any, task: Any, message: str | None, done: Callable[..., Any]) -> None:
    """Runs on the run's thread (from its entry queue); never lets an exception reach trio."""
    outcome: CancelOutcome = "requested"
    error: str | None = None
    try:
        if task.coro.cr_frame is None:
            outcome = "already_finished"
        elif _trio_own(runner, task):
            outcome, error = "failed", "it is one of trio's own tasks"
        else:
            scope, why = own_scope(task)
            if scope is None:
                outcome, error = "failed", why
            else:
                cancel = scope.cancel
                if message and "reason" in cancel.__code__.co_varnames:  # trio 0.30 and later
                    cancel(reason=message)
                else:
                    cancel()
    except BaseException as exception:
        outcome, error = "failed", type(exception).__name__
    with contextlib.suppress(BaseException):
        done(outcome, error)


# --- reading a run ---------------------------------------------------------------------------


def _run_frame(top: FrameType | None) -> FrameType | None:
    """The frame of trio's `run` on a thread's stack, or None."""
    frame = top
    while frame is not None:
        if _is_run_code(frame.f_code):
            return frame
        frame = frame.f_back
    return None


def _run_frame_again(thread_id: int) -> FrameType | None:
    """`_run_frame` of a thread a run was known on, walked again from a fresh top a few times
    before that run is taken for ended. A walk can miss it: the agent's thread gives the GIL
    away between two steps of the walk like any thread, and a coroutine frame that the run's
    thread suspends meanwhile has no frame below it any more (a starved agent's lowered
    switch interval made that happen every few hundred walks)."""
    for _attempt in range(3):
        frame = _run_frame(sys._current_frames().get(thread_id))
        if frame is not None:
            return frame
    return None


def _is_run_code(code: CodeType) -> bool:
    return code.co_name == "run" and code.co_filename.endswith(_RUN_FILE)


def _runner_of(frame: FrameType) -> Any:
    try:
        runner = frame.f_locals.get("runner")
    except Exception:
        return None
    return runner if _is_trio(runner, "Runner") else None


def _copy(source: Iterable[Any]) -> list[Any]:
    for _attempt in range(100):
        try:
            return list(source)
        except RuntimeError:  # changed size while copied: again
            continue
    return []


def _clock_now(runner: Any) -> float | None:
    """trio's time now, for its own clock (`SystemClock`: perf_counter plus an offset)."""
    clock = getattr(runner, "clock", None)
    offset = getattr(clock, "offset", None)
    if not _is_trio(clock, "SystemClock") or type(offset) is not float:
        return None
    return time.perf_counter() + offset


class _Look:
    """One look at one run's tasks."""

    def __init__(self, watch: TrioWatch, run: TrioRun, runner: Any) -> None:
        self.watch, self.run, self.runner = watch, run, runner
        self.now = _clock_now(runner)
        #: For the names the program's code uses for objects, found as for asyncio's.
        self.names = AwaitContext(lambda _task: "")
        self._thread_calls: dict[int, ThreadCall] | None = None

    def thread_call(self, context: Any) -> ThreadCall | None:
        """The call a worker thread of trio's runs for a `to_thread.run_sync` whose call
        context is `context` (its threads read once per look, when a task waits on one)."""
        if self._thread_calls is None:
            self._thread_calls = _worker_thread_calls()
        return self._thread_calls.get(id(context))

    def name_of(self, obj: Any, caller: FrameType | None) -> str | None:
        """The name the awaiting code uses for `obj`: a local, an attribute of one (without
        making a `__dict__` on the program's objects), or a global (`awaiting.object_name`)."""
        return object_name(self.names, obj, caller)

    def id_of(self, task: Any) -> str:
        return str(self.watch.task_id(self.run, task))

    def record(self, task: Any) -> WireTask:
        known = self.watch.known(self.run, task)
        coro = task.coro
        frames, _owners, _key = _chain(coro)
        stack = tuple(frame_record(f.f_code, line_at(f.f_code, f.f_lasti)) for f in frames)
        running = type(coro) is CoroutineType and bool(coro.cr_running)
        awaiting = None if running else self.awaiting(task, frames)
        nursery = getattr(task, "_parent_nursery", None)
        parent = getattr(nursery, "_parent_task", None) if nursery is not None else None
        awaited_by: tuple[str, ...] = ()
        if parent is not None and getattr(nursery, "_parent_waiting_in_aexit", False):
            awaited_by = (self.id_of(parent),)
        record: WireTask = {
            "id": str(known[1]),
            "loop": self.run.loop_id,
            "name": str(task.name),
            "state": "pending",
            "coro": coro_name(coro),
            "stack": stack,
            "awaiting": awaiting,
            "awaited_by": awaited_by,
            "parent": self.id_of(parent) if parent is not None else None,
            "created_at": known[3],
            "finished_at": None,
        }
        if running:
            record["running"] = True
        seen_at = known[2]
        if seen_at is not None:  # spawned before the agent's instrument: ages from its look
            record["first_seen_at"] = round(seen_at, 3)
        if known[4]:
            record["created_from"] = _origin(_site_lines(known[4]))  # (last: see WireTask)
        return record

    def awaiting(self, task: Any, frames: list[FrameType]) -> WireAwaiting | None:
        """What a suspended task waits for: the innermost frame of trio's that says it."""
        for index in range(len(frames) - 1, -1, -1):
            frame = frames[index]
            code = frame.f_code
            if _TRIO_DIR not in code.co_filename:
                continue
            reader = _READERS.get(code.co_qualname)
            if reader is None:
                continue
            caller = frames[index - 1] if index > 0 else None
            try:
                found = reader(self, task, frame, caller, frames)
            except Exception:
                found = None
            if found is not None:
                return found  # type: ignore[no-any-return]
        inner = frames[-1].f_code.co_qualname if frames else "trio"
        return {"kind": "unknown", "tasks": (), "call": inner}

    def deadline(self, task: Any) -> float | None:
        """The deadline of the task's innermost cancel scope (the one a sleep opens), on the
        run's clock, or None."""
        status = getattr(task, "_cancel_status", None)
        deadline = getattr(getattr(status, "_scope", None), "_registered_deadline", None)
        if type(deadline) is not float or math.isinf(deadline) or self.now is None:
            return None
        return deadline

    def seconds_left(self, task: Any) -> float | None:
        deadline = self.deadline(task)
        return None if deadline is None else round(max(0.0, deadline - self.now), 3)  # type: ignore[operator]

    def sleep_end(self, task: Any) -> float | None:
        """A sleep's end on the clock of the snapshot's `loop_time` (`time.monotonic()`): trio's
        time less its clock's offset is `perf_counter()`, the same clock where both are
        CLOCK_MONOTONIC (Linux); else None."""
        deadline = self.deadline(task)
        if deadline is None or not _SAME_CLOCKS:
            return None
        return deadline - self.runner.clock.offset  # type: ignore[no-any-return]


Reader = Callable[[_Look, Any, FrameType, "FrameType | None", list[FrameType]], Any]


def _local(frame: FrameType | None, name: str) -> Any:
    if frame is None:
        return None
    try:
        return frame.f_locals.get(name)
    except Exception:
        return None


def _user_caller(frames: list[FrameType], index: int) -> FrameType | None:
    """The nearest frame outside trio above `frames[index]`: the program's code."""
    for position in range(index - 1, -1, -1):
        if _TRIO_DIR not in frames[position].f_code.co_filename:
            return frames[position]
    return None


def _facts(obj: Any) -> dict[str, Any]:
    return {"type": type(obj).__qualname__, "id": hex(id(obj))}


def _sleep(look: _Look, task: Any, frame: FrameType, caller: Any, frames: list[FrameType]) -> Any:
    end = look.sleep_end(task)
    if end is not None:  # the same description while the task sleeps on (see "Countdowns")
        return {"kind": "sleep", "tasks": (), "call": "trio.sleep", "countdown": end}
    seconds_left = look.seconds_left(task)
    return {"kind": "sleep", "tasks": (), "call": "trio.sleep", "seconds_left": seconds_left}


def _sleep_forever(
    look: _Look, task: Any, frame: FrameType, caller: Any, frames: list[FrameType]
) -> Any:
    if caller is not None and caller.f_code.co_qualname == "sleep_until":
        return None  # `trio.sleep`: its caller says how long
    return {"kind": "sleep", "tasks": (), "call": "trio.sleep_forever", "object": {"forever": True}}


def _event(look: _Look, task: Any, frame: FrameType, caller: Any, frames: list[FrameType]) -> Any:
    event = _local(frame, "self")
    facts = _facts(event) | {
        "name": look.name_of(event, _user_caller(frames, frames.index(frame))),
        "set": bool(getattr(event, "_flag", False)),
        "waiters": len(getattr(event, "_tasks", ())),
    }
    return {"kind": "event", "tasks": (), "call": "Event.wait", "object": facts}


def _primitive(kind: str, call: str) -> Reader:
    def reader(
        look: _Look, task: Any, frame: FrameType, caller: Any, frames: list[FrameType]
    ) -> Any:
        obj = _local(frame, "self")
        facts = _facts(obj) | {
            "name": look.name_of(obj, _user_caller(frames, frames.index(frame))),
            "waiters": len(getattr(getattr(obj, "_lot", None), "_parked", ())),
        }
        if kind == "lock":
            owner = getattr(obj, "_owner", None)
            facts["locked"] = owner is not None
            if owner is not None and _is_trio(owner, "Task"):
                facts["holders"] = (look.id_of(owner),)
                facts["holder_names"] = (str(owner.name),)
        else:
            facts["value"] = getattr(obj, "_value", None)
        return {"kind": kind, "tasks": (), "call": call, "object": facts}

    return reader


def _limiter(look: _Look, task: Any, frame: FrameType, caller: Any, frames: list[FrameType]) -> Any:
    """A CapacityLimiter: a semaphore of its tokens, each borrowed by a task."""
    limiter = _local(frame, "self")
    facts = _facts(limiter) | {
        "name": look.name_of(limiter, _user_caller(frames, frames.index(frame))),
        "value": tokens_left(limiter),
        "waiters": len(getattr(limiter, "_pending_borrowers", None) or ()),
    }
    if facts["name"] is None and _is_default_thread_limiter(look.runner, limiter):
        facts["thread_limiter"] = True
    if facts["value"] == 0 and facts["waiters"]:
        _add_borrowers(look, limiter, facts)
    return {"kind": "semaphore", "tasks": (), "call": "CapacityLimiter.acquire", "object": facts}


def _add_borrowers(look: _Look, limiter: Any, facts: dict[str, Any]) -> None:
    """An exhausted CapacityLimiter's `holders`: the tasks among its borrowers (`async with
    limiter:` borrows for the task); the others (a thread's placeholder, for
    `to_thread.run_sync`) counted in `holders_more`."""
    borrowers = _copy(getattr(limiter, "_borrowers", ()))
    tasks = [borrower for borrower in borrowers if _is_trio(borrower, "Task")]
    in_order = sorted(tasks, key=lambda task: int(look.id_of(task)))
    if in_order:
        facts["holders"] = tuple(look.id_of(task) for task in in_order)
        facts["holder_names"] = tuple(str(task.name) for task in in_order)
    if len(borrowers) > len(tasks):
        facts["holders_more"] = len(borrowers) - len(tasks)


def _is_default_thread_limiter(runner: Any, limiter: Any) -> bool:
    """Whether `limiter` is the one `trio.to_thread.run_sync` uses unless told another (a run
    variable: the runner's `_locals`). Its borrowers are the threads' placeholders, not
    tasks: no holders are said."""
    variable = getattr(sys.modules.get("trio._threads"), "_limiter_local", None)
    run_vars = getattr(runner, "_locals", None)
    if variable is None or not isinstance(run_vars, dict):
        return False
    return run_vars.get(variable) is limiter


def _channel(verb: str) -> Reader:
    def reader(
        look: _Look, task: Any, frame: FrameType, caller: Any, frames: list[FrameType]
    ) -> Any:
        channel = _local(frame, "self")
        state = getattr(channel, "_state", None)
        limit = getattr(state, "max_buffer_size", 0)
        bound = int(limit) if isinstance(limit, int | float) and limit < 1 << 62 else 0
        data = getattr(state, "data", None)
        facts = _facts(channel) | {
            "size": len(data) if data is not None else None,
            "maxsize": bound,
            "name": look.name_of(channel, _user_caller(frames, frames.index(frame))),
        }
        kind = "queue_put" if verb == "send" else "queue_get"
        call = f"{type(channel).__qualname__}.{verb}"
        return {"kind": kind, "tasks": (), "call": call, "object": facts}

    return reader


def _fd_wait(look: _Look, task: Any, frame: FrameType, caller: Any, frames: list[FrameType]) -> Any:
    fd = _local(frame, "fd")
    which = _local(frame, "attr_name")
    call = "wait_writable" if which == "write_task" else "wait_readable"
    peer: str | None = None
    sock = None
    for outer in frames:
        if outer.f_code.co_qualname == "_SocketType._nonblocking_helper":
            sock = getattr(_local(outer, "self"), "_sock", None)
            break
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            address = socket.socket.getpeername(sock)
            if isinstance(address, tuple) and len(address) >= 2:
                peer = f"{address[0]}:{address[1]}"
            elif isinstance(address, str) and address:
                peer = address
    number = fd if type(fd) is int else None
    return {"kind": "socket", "tasks": (), "call": call, "peer": peer, "object": {"fd": number}}


def _to_thread(
    look: _Look, task: Any, frame: FrameType, caller: Any, frames: list[FrameType]
) -> Any:
    sync_fn = _local(frame, "sync_fn")
    facts: dict[str, Any] = {"function": callable_name(sync_fn)}
    call = look.thread_call(_local(frame, "context"))
    if call is not None:
        thread, _function, stack = call
        # trio names the thread after the call and the task (`query from req-0`): said only
        # when the program named it
        default = f"{getattr(sync_fn, '__name__', None)} from {getattr(task, 'name', '')}"
        if thread != default:
            facts["thread"] = thread
        facts["thread_stack"] = stack
    return {"kind": "executor", "tasks": (), "call": "to_thread", "object": facts}


def _worker_thread_calls() -> dict[int, ThreadCall]:
    """id(call context) -> the call a worker thread of trio's runs for `to_thread.run_sync`:
    its frames inside trio's `worker_fn`, whose `context` is the one the waiting task's frame
    holds."""
    worker_code = _worker_fn_code()
    if worker_code is None:
        return {}
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    found: dict[int, ThreadCall] = {}
    for thread_id, top in thread_tops().items():
        walker: FrameType | None = top
        inside: list[FrameType] = []  # the call's frames, innermost first
        while walker is not None:
            if walker.f_code is worker_code:
                context = _local(walker, "context")
                if context is not None and inside:
                    found[id(context)] = thread_call(names, thread_id, "", inside)
                break
            if len(inside) < THREAD_STACK_DEPTH:
                inside.append(walker)
            walker = walker.f_back
    return found


def _worker_fn_code() -> CodeType | None:
    """The code of the function `trio.to_thread.run_sync` runs in a worker thread."""
    module = sys.modules.get("trio._threads")
    run_sync = vars(module).get("to_thread_run_sync") if module is not None else None
    code = getattr(run_sync, "__code__", None) if type(run_sync) is FunctionType else None
    for constant in code.co_consts if code is not None else ():
        if type(constant) is CodeType and constant.co_name == "worker_fn":
            return constant
    return None


def _nursery(look: _Look, task: Any, frame: FrameType, caller: Any, frames: list[FrameType]) -> Any:
    nursery = _local(frame, "self")
    children = _copy(getattr(nursery, "_children", ()))
    return {
        "kind": "taskgroup",
        "tasks": tuple(look.id_of(child) for child in children),
        "call": "nursery",
        "object": _facts(nursery) | {"size": len(children)},
    }


#: trio's functions a suspended task's frames say what it waits for, by qualified name (in
#: a file of the trio package), innermost first.
_READERS: dict[str, Reader] = {
    "sleep_until": _sleep,
    "sleep_forever": _sleep_forever,
    "Event.wait": _event,
    "_LockImpl.acquire": _primitive("lock", "Lock.acquire"),
    "Semaphore.acquire": _primitive("semaphore", "Semaphore.acquire"),
    "CapacityLimiter.acquire_on_behalf_of": _limiter,
    "MemorySendChannel.send": _channel("send"),
    "MemoryReceiveChannel.receive": _channel("receive"),
    "EpollIOManager._epoll_wait": _fd_wait,
    "to_thread_run_sync": _to_thread,
    "Nursery._nested_child_finished": _nursery,
}
