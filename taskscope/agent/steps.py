"""Stalls (steps that held a loop longer than the threshold, with the line they were blocked
on) and, when asked for, step timing: how many steps each task ran and how long they took.

Every task step and every callback of an asyncio loop runs through `asyncio.events.Handle._run`
(a Python method on 3.11-3.15, checked by tests/test_asyncio_assumptions.py), which a loop
thread's stack shows between `BaseEventLoop._run_once` and the step's own frames.

Stalls, always (nothing runs on the loop thread for them): the agent's thread runs a watchdog
(`StepTimer.watch`, every quarter of the threshold, every twentieth while a step lasts) that
samples each loop thread's stack (`sys._current_frames()`) and follows the step it runs by its
`Handle._run` frame object, from one look to the next. A step seen for longer than the
threshold is kept as a stall, with the stack seen most often while it ran (the blocking line)
and its task (the loop's current task). Its start and length are good to about a quarter of
the threshold; a step still running past the threshold is an ongoing stall. A look at the
loops (a snapshot) follows their steps once itself first, so that a step over since the
watchdog's last look is kept in time for it.

A loop that runs its callbacks in C (uvloop) has no `Handle._run` frame: the agent's heartbeat
notes which frame called it (`LoopRecord.beat_caller`), the frame that runs the loop, and a
step is what runs above that frame, told from the next step by its outermost frame and a
mark the watchdog sends the loop (`StepTimer.locate_on`).

Timed steps (`time_steps`, off by default: it costs the loop thread 0.5-1 microsecond per
step): `StepTimer` puts a timed version of `Handle._run` on the class, which calls the
original and notes, around it, two `perf_counter()` readings and a few counters: per loop
(`LoopRecord`: steps, busy seconds, when the current step began) and per task
(`StepFigures`, made for a task at its first timed step: steps, busy, longest, last step's
start and end). A task's step callback is a method of the task (`__step`, `__wakeup`: their
`__self__` is the task on every version). Stalls are then exact: the loop thread notes each
one when it ends, with the stacks the watchdog sampled meanwhile. Everything else (rates,
wall-clock times, wire records) is made on the agent's thread.

The timing is turned on or off in a running process too (`StepTimer.set_timed`, the protocol's
`time_steps` request), on the agent's thread: a swap of the class attribute. The figures then
start over (tasks' counts, loops' rate samples, the untimed watch), so measured and estimated
figures never mix; a timed step still running when it is turned off ends as any other.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from asyncio import events
from collections.abc import Callable
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

from taskscope.agent.loops import MAX_STALLS
from taskscope.agent.web_requests import request_in_stack, request_of
from taskscope.protocol import WireFrame, WireRequest, WireStall

if TYPE_CHECKING:
    from taskscope.agent.loops import LoopRecord
    from taskscope.agent.tracker import TaskMeta, Tracker


class StepFigures:
    """A task's step timing (taskscope.agent.steps), written by the loop thread after each
    step: steps, busy seconds, the longest step, the last step's start and end (perf
    counter); and the steps its last record counted (written by the snapshot builder; -1:
    none). Made for a task only once one of its steps is timed (`time_steps`, off by
    default): other tasks' metadata carries one empty field instead of six."""

    __slots__ = ("busy", "last_end", "last_ran", "longest", "rec_steps", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.busy = 0.0
        self.longest = 0.0
        self.last_ran = 0.0
        self.last_end = 0.0
        self.rec_steps = -1

    def add(self, start: float, end: float, took: float) -> None:
        """One more step (the timed `Handle._run` does this inline: it runs every step)."""
        self.steps += 1
        self.busy += took
        if took > self.longest:
            self.longest = took
        self.last_ran, self.last_end = start, end


#: Steps longer than this many seconds are stalls, unless set otherwise (`install()`,
#: `taskscope run --stall-threshold`, $TASKSCOPE_STALL_THRESHOLD).
DEFAULT_STALL_THRESHOLD = 0.1
#: Frames kept of a stall's stack, the innermost.
MAX_STALL_FRAMES = 40
#: The window of a loop's steps per second and busy share, about.
RATE_WINDOW = 1.0
#: How often the watchdog notes a loop's counters for those figures, and the shortest span
#: they are given over (an estimated busy share, from the watchdog's looks: 0.2 s).
RATE_SAMPLE_INTERVAL = 0.25
MIN_RATE_SPAN = 0.05
#: The watchdog's longest sleep, whatever the threshold, and its shortest (while it follows
#: a long step of a loop whose steps are not timed, to tell when it ends).
MAX_WATCH_INTERVAL = 0.25
MIN_WATCH_INTERVAL = 0.005
#: Different stacks counted per step (a step that moves through more keeps the first ones).
MAX_DISTINCT_SAMPLES = 64
#: Frames a look at a loop thread's stack walks at most.
MAX_LOCATE_DEPTH = 400

_clock = time.perf_counter
_NEVER = float("inf")
_wall = time.time

#: A stall as the loop thread notes it: perf-counter start, seconds, task id, task name,
#: callback's qualified name, the sampled stack ((code, line) pairs, outermost first).
Sampled = tuple[tuple[CodeType, int], ...]
StallNote = tuple[float, float, str | None, str | None, str | None, Sampled, WireRequest | None]
#: What a task's steps came to before the agent looked at it (no `TaskMeta` yet): its
#: creation note's weak reference (to know it is the same task), steps, busy seconds, longest
#: step, last step's start and end (perf counter).
UnmetNote = tuple[Any, int, float, float, float, float]


def time_steps_setting(value: bool | None) -> bool:
    """Whether to time every step: the value given, else $TASKSCOPE_TIME_STEPS (off unless
    it says 1, yes, on or true)."""
    if value is None:
        text = os.environ.get("TASKSCOPE_TIME_STEPS", "").strip().lower()
        return text in ("1", "yes", "on", "true")
    return bool(value)


def stall_threshold_setting(value: float | None) -> float:
    """The threshold given, else $TASKSCOPE_STALL_THRESHOLD, else the default; a value that is
    not a positive number of seconds falls back to the default (the host's output is not the
    agent's to write to)."""
    if value is None:
        text = os.environ.get("TASKSCOPE_STALL_THRESHOLD", "").strip()
        if not text:
            return DEFAULT_STALL_THRESHOLD
        try:
            value = float(text)
        except ValueError:
            return DEFAULT_STALL_THRESHOLD
    if isinstance(value, bool) or not isinstance(value, int | float):
        return DEFAULT_STALL_THRESHOLD
    if not 0 < value < float("inf"):  # also NaN
        return DEFAULT_STALL_THRESHOLD
    return float(value)


def _task_types() -> tuple[type[Any], ...]:
    """The task classes of asyncio: the C one and the Python one (subclasses are tasks too)."""
    kinds: list[type[Any]] = [asyncio.Task]
    python_task = getattr(asyncio.tasks, "_PyTask", None)
    if isinstance(python_task, type) and python_task is not asyncio.Task:
        kinds.append(python_task)
    return tuple(kinds)


class Samples:
    """The stacks the watchdog sampled in one step, counted: the one seen most often is where
    the step spent its time (the blocking line), not what it did in its last moments."""

    __slots__ = ("counts", "latest")

    def __init__(self) -> None:
        self.counts: dict[Sampled, int] = {}
        self.latest: Sampled = ()

    def add(self, stack: Sampled) -> None:
        counts = self.counts
        if stack in counts or len(counts) < MAX_DISTINCT_SAMPLES:
            counts[stack] = counts.get(stack, 0) + 1
        self.latest = stack

    def most_seen(self) -> Sampled:
        """The stack seen most often (the first of those seen as often)."""
        best: Sampled = ()
        most = 0
        # A copy (made in one C call): the agent's thread may be adding to it meanwhile.
        for stack, count in list(self.counts.items()):
            if count > most:
                best, most = stack, count
        return best


class Sighting:
    """A step the watchdog has seen at one look or more: when it first and last saw it, its
    look before the first (None: it never looked before), and the stacks it sampled. What
    a step is depends on the loop (`StepWatch`, `trio_steps.TrioStep`); how long it ran, as
    well as looks can tell, does not."""

    __slots__ = ("before", "first_seen", "last_seen", "stack")

    def __init__(self, before: float | None, now: float) -> None:
        self.before = before
        self.first_seen = now
        self.last_seen = now
        self.stack = Samples()

    def started(self) -> float:
        """When the step began, as well as the watchdog can tell."""
        if self.before is None:
            return self.first_seen
        return (self.before + self.first_seen) / 2

    def length(self, now: float) -> float:
        """How long it ran, ended between its last sighting and `now`: the middle of what it
        may have been."""
        return ((self.last_seen - self.first_seen) + (now - (self.before or self.first_seen))) / 2


class StepWatch(Sighting):
    """A step the watchdog sees running on a loop whose steps are not timed: it is told from
    the next one by its `Handle._run` frame object (held until the next sighting), or on a
    loop that runs its callbacks in C by the key `StepTimer.locate_on` gives it."""

    __slots__ = ("frame", "request", "task", "task_name")

    def __init__(self, frame: Any, before: float | None, now: float) -> None:
        super().__init__(before, now)
        self.frame: Any = frame
        self.task: str | None = None
        self.task_name: str | None = None
        #: The web request the step's task serves, if any (`web_requests`).
        self.request: WireRequest | None = None


class StepTimer:
    """Stalls, for every loop a `Tracker` knows, and with `timed` the steps' figures (see the
    module docstring). Hot path: `_make_timed_run`'s function; everything else is rare or
    runs on the agent's thread."""

    def __init__(self, tracker: Tracker, threshold: float, timed: bool) -> None:
        self.tracker = tracker
        self.threshold = threshold
        #: Whether every step is timed (`Handle._run` replaced), or stalls only are watched.
        self.timed = timed
        #: id(task) -> what its steps came to before the agent looked at it (see `UnmetNote`).
        self.unmet: dict[int, UnmetNote] = {}
        self._original_run: Callable[[events.Handle], None] = events.Handle._run
        self._timed_run: Callable[[events.Handle], None] | None = None
        self._installed = False
        #: The wire form of each stall, made once (id(note) -> (note, record)).
        self._stall_records: dict[int, tuple[StallNote, WireStall]] = {}
        self.next_watch = 0.0
        #: Held while a step is followed: by the watchdog (the agent's thread), and by a
        #: look that brings the watch up to date first (any thread: `agent.snapshot()`).
        self.watch_lock = threading.Lock()
        self.task_types = _task_types()
        #: perf counter -> wall clock, refreshed by the watchdog.
        self.wall_offset = _wall() - _clock()
        #: The code objects that mark where a loop's step begins, and the loop's own frame.
        self._step_codes = _wrapped_codes(self._original_run)
        self._loop_code = _run_once_code()

    # --- installing --------------------------------------------------------------------------

    def install(self) -> None:
        if self._installed:
            return
        self._installed = True
        # The watchdog looks at once: a look made before this one (the server's thread runs
        # from before the agent hooks asyncio) found nothing installed and went to sleep
        # until a loop starts, and the loops already running (an attach) may have been
        # adopted meanwhile: nothing would wake it again, and every stall would go unseen.
        self.next_watch = 0.0
        if self.timed:
            original = events.Handle._run
            self._original_run = original
            self._timed_run = self._make_timed_run(original)
            self._step_codes = _wrapped_codes(self._timed_run)
            events.Handle._run = self._timed_run  # type: ignore[method-assign,assignment]

    def set_timed(self, on: bool) -> str | None:
        """Turn step timing on or off in a running process (agent thread; the `time_steps`
        request). On: a timed `Handle._run` goes on the class around whatever is there; the
        tasks' figures count from now. Off: asyncio's (or whoever's was there) goes back.
        Each loop's rate samples and untimed watch start over, so busy shares never mix
        measured and estimated seconds, and the cached task records are made again. Returns
        why it cannot be done (None: done, or already so)."""
        on = bool(on)
        if on == self.timed:
            return None
        if on and not self.tracker.track_tasks:
            return "step timing needs task tracking, which is off in this process"
        if not self._installed:  # not hooked yet: `install` does it
            self.timed = on
            return None
        if on:
            original = events.Handle._run
            timed_run = self._make_timed_run(original)
            self._original_run = original
            self._timed_run = timed_run
            self._step_codes = self._step_codes | _wrapped_codes(timed_run)
            self._restart_figures()
            self.timed = True
            events.Handle._run = timed_run  # type: ignore[method-assign,assignment]
            return None
        if events.Handle.__dict__.get("_run") is not self._timed_run:
            return "another tool has wrapped Handle._run since the timing was turned on"
        events.Handle._run = self._original_run  # type: ignore[method-assign,assignment]
        # The timed one's code stays in `_step_codes`: a step it began may still be running.
        self._timed_run = None
        self.timed = False
        self._restart_figures()
        return None

    def _restart_figures(self) -> None:
        """After timing was turned on or off: what was noted the other way is left behind."""
        self.unmet.clear()
        for record in list(self.tracker.loops.values()):
            record.rate_samples.clear()
            record.step_watch = None
            record.last_look = None
            record.stall_sample = None
        for meta in list(self.tracker.task_metas().values()):
            if meta.timing is not None:
                # Counts from zero, and its record is made again (with, or without, figures:
                # a fresh one's `rec_steps` matches no count), even by a look under way.
                meta.timing = StepFigures()
        self.next_watch = 0.0

    def uninstall(self) -> None:
        """Put `Handle._run` back; when someone has wrapped ours since, leave theirs and stop
        timing (ours then only calls the original)."""
        if not self._installed:
            return
        self._installed = False
        if self._timed_run is not None:
            if events.Handle.__dict__.get("_run") is self._timed_run:
                events.Handle._run = self._original_run  # type: ignore[method-assign,assignment]
            else:  # wrapped since: ours stays in the chain, and times nothing (no loop known)
                self.tracker.loops.clear()
        self.unmet.clear()
        for record in list(self.tracker.loops.values()):
            record.step_watch = None

    @property
    def installed(self) -> bool:
        return self._installed

    def _make_timed_run(
        self, original: Callable[[events.Handle], None]
    ) -> Callable[[events.Handle], None]:
        tracker = self.tracker
        loops = tracker.loops
        metas = tracker.task_metas()
        loops_get, metas_get = loops.get, metas.get
        clock = _clock
        note_unmet, note_stall = self._note_unmet, self._note_stall
        task_types = self.task_types
        threshold = self.threshold

        def _run(self: events.Handle) -> None:
            record = loops_get(id(self._loop))  # type: ignore[attr-defined]
            if record is None:
                return original(self)
            owner = getattr(self._callback, "__self__", None)  # type: ignore[attr-defined]
            outer = record.step_started
            start = clock()
            record.step_started = start
            try:
                original(self)
            finally:
                end = clock()
                record.step_started = outer
                took = end - start
                record.steps += 1
                record.busy += took
                if owner is not None:
                    meta = metas_get(id(owner))
                    if meta is not None and meta() is owner:
                        # StepFigures.add, inlined: a call per step is the host's time.
                        timing = meta.timing
                        if timing is None:
                            timing = meta.timing = StepFigures()
                        timing.steps += 1
                        timing.busy += took
                        if took > timing.longest:
                            timing.longest = took
                        timing.last_ran = start
                        timing.last_end = end
                    elif isinstance(owner, task_types):
                        note_unmet(owner, start, end, took)
                if took > threshold:
                    note_stall(record, self, owner, start, took)

        _run.__wrapped__ = original  # type: ignore[attr-defined]
        _run.__qualname__ = original.__qualname__
        return _run

    # --- the loop thread's rare paths -------------------------------------------------------

    def _note_unmet(self, task: Any, start: float, end: float, took: float) -> None:
        """A step of a task the agent has not looked at yet. The first step of a task made
        since the agent came is kept by id(task) (most short tasks finish in their second
        step, and never need more); at its second step, the task gets its `TaskMeta`
        (`adopt_unmet` moves the note there). The creation note's weak reference tells a
        task from a later one that got the same id."""
        try:
            key = id(task)
            unmet = self.unmet
            if task.done():
                unmet.pop(key, None)
                return
            if key not in unmet:
                born = self.tracker.birth_note(task)
                if born is not None:
                    unmet[key] = (born[0], 1, took, took, start, end)
                    return
            # A task still pending after a second step, or made before the agent came (or
            # not through `create_task`): it gets its `TaskMeta` now, which the agent's first
            # look would have made, and with it the steps noted so far.
            meta = self.tracker.ensure_meta(task)
            if meta.timing is None:
                meta.timing = StepFigures()
            meta.timing.add(start, end, took)
        except Exception:
            pass

    def adopt_unmet(self, task: Any, meta: TaskMeta) -> None:
        """Give a task's first look (`Tracker.ensure_meta`) the steps it ran before."""
        note = self.unmet.pop(id(task), None)
        if note is not None and note[0]() is task:
            timing = meta.timing = StepFigures()
            timing.steps, timing.busy, timing.longest = note[1], note[2], note[3]
            timing.last_ran, timing.last_end = note[4], note[5]

    def _note_stall(
        self, record: LoopRecord, handle: events.Handle, task: Any, start: float, took: float
    ) -> None:
        """A step longer than the threshold has just ended: keep it, with the stack the
        watchdog sampled while it ran."""
        try:
            sample = record.stall_sample
            record.stall_sample = None
            sampled = sample is not None and sample[0] == start
            frames = sample[1].most_seen() if sample is not None and sampled else ()
            task_id = task_name = callback = request = None
            if isinstance(task, self.task_types):
                task_id = str(self.tracker.ensure_meta(task).task_id)
                task_name = str(task.get_name())
                if sample is not None and sampled:
                    request = sample[2]
                if request is None:  # the step is over: its coroutine waits, or has ended
                    request = request_of(getattr(task, "_coro", None))
            else:
                callback = callback_name(handle)
            record.stalls.append(
                (start + self.wall_offset, took, task_id, task_name, callback, frames, request)
            )
        except Exception:
            pass

    # --- the agent's thread ----------------------------------------------------------------

    def watch(self, now_monotonic: float) -> None:
        """The watchdog (agent thread). Timed steps: sample the stack of each loop whose
        current step is half a threshold old, and note the loops' counters for their rates.
        Untimed: follow the step each loop runs, from one look to the next, by its frame."""
        threshold = self.threshold
        self.next_watch = now_monotonic + watch_interval(threshold, False, self.timed)
        if not self._installed:
            self.next_watch = _NEVER
            return
        running = False
        now = _clock()
        self.wall_offset = _wall() - now
        frames: dict[int, FrameType] | None = None
        for record in list(self.tracker.loops.values()):
            thread_id = record.thread_id
            loop = record.loop_ref()
            if loop is None or not loop.is_running():
                record.step_watch = None
                continue
            running = True
            if self.timed and not self.compiled(record):
                started = record.step_started
                if started and now - started >= threshold / 2 and thread_id is not None:
                    if frames is None:
                        frames = sys._current_frames()
                    sampled = self.locate(frames.get(thread_id))[1]
                    held = record.stall_sample
                    if held is None or held[0] != started:
                        # the request is read while the step runs: it may end with the step
                        held = (started, Samples(), request_in_stack(frames.get(thread_id)))
                    held[1].add(sampled)
                    if record.step_started == started:
                        record.stall_sample = held
            elif thread_id is not None:
                if frames is None:
                    frames = sys._current_frames()
                with self.watch_lock:
                    following = self._follow(record, frames.get(thread_id), now)
                if following:
                    fine = watch_interval(threshold, True)
                    self.next_watch = min(self.next_watch, now_monotonic + fine)
            rates = record.rate_samples
            if not rates or now - rates[-1][0] >= RATE_SAMPLE_INTERVAL:
                rates.append((now, record.steps, record.busy))
        frames = None
        if not running:  # nothing to watch: the agent's thread sleeps until a loop starts
            self.next_watch = _NEVER

    def loop_started(self) -> None:
        """A loop starts (on its thread): the watchdog looks again (the server is woken)."""
        self.next_watch = 0.0

    def _follow(self, record: LoopRecord, top: FrameType | None, now: float) -> bool:
        """One look at an untimed loop: is it in the step it was in at the last look? A step
        that is over is kept as a stall when it lasted longer than the threshold. Returns
        whether a step has been seen at two looks in a row (worth looking at more often)."""
        step_frame, inner = self.locate_on(record, top)
        if step_frame is not None and type(step_frame) is tuple and not record.mark_outstanding:
            _send_mark(record)
        watch: StepWatch | None = record.step_watch
        before = record.last_look
        record.last_look = now
        if step_frame is not None and before is not None:
            # The busy time, estimated: the time since the last look, when in a step now.
            record.busy += now - before
        if watch is not None and step_frame is not None and watch.frame == step_frame:
            watch.last_seen = now
            watch.stack.add(inner)
            if watch.task is None and watch.task_name is None:
                self._name_step(record, watch)
            return True
        if watch is not None:
            record.step_watch = None
            duration = watch.length(now)
            if duration > self.threshold:
                stack = watch.stack.most_seen()
                callback = None if watch.task is not None else _callback_of(stack)
                record.stalls.append(
                    (
                        watch.started() + self.wall_offset,
                        duration,
                        watch.task,
                        watch.task_name,
                        callback,
                        stack,
                        watch.request,
                    )
                )
        if step_frame is not None:
            watch = record.step_watch = StepWatch(step_frame, before, now)
            watch.stack.add(inner)
        return False

    def _name_step(self, record: LoopRecord, watch: StepWatch) -> None:
        """The task whose step it is (the loop's current task), when it is a task's."""
        loop = record.loop_ref()
        if loop is None:
            return
        try:
            task = asyncio.current_task(loop)
        except Exception:
            return
        if task is not None:
            watch.task = str(self.tracker.ensure_meta(task).task_id)
            try:
                watch.task_name = str(task.get_name())
            except Exception:
                watch.task_name = None
            watch.request = request_in_stack(sys._current_frames().get(record.thread_id or 0))

    def compiled(self, record: LoopRecord) -> bool:
        """Whether the loop runs its callbacks in C (uvloop): its heartbeat was not called by
        a `Handle._run` the agent knows."""
        caller = record.beat_caller
        return caller is not None and caller not in self._step_codes

    def locate_on(self, record: LoopRecord, top: FrameType | None) -> tuple[Any, Sampled]:
        """`locate` for the loop of `record`: on a loop that runs its callbacks in C, a step
        has no frame of its own: it is the frames above the one that runs the loop (the
        heartbeat's caller), told from the next step by (the id of its outermost frame, the
        loop's step marks). A mark is a callback the watchdog sends the loop while it sees a
        step: it runs after the loop's batch of callbacks under way, and the step's own next
        step (a task's, made when this one ends) comes after it, so a mark that has run since
        means the step seen before is over."""
        if not self.compiled(record):
            return self.locate(top)
        entry = record.beat_caller
        inner: list[tuple[CodeType, int]] = []
        frame, above = top, None
        depth = 0
        while frame is not None and depth < MAX_LOCATE_DEPTH:
            code = frame.f_code
            if code is entry:
                if above is None:
                    return None, ()  # the loop waits in C: no step
                del inner[:-MAX_STALL_FRAMES]
                inner.reverse()
                return (id(above), record.step_marks), tuple(inner)
            inner.append((code, frame.f_lineno or 0))
            above, frame = frame, frame.f_back
            depth += 1
        return None, ()

    def locate(self, frame: FrameType | None) -> tuple[FrameType | None, Sampled]:
        """Where a loop thread is: the frame of the step it runs (`Handle._run`; None when it
        runs none), and the frames inside that step, outermost first, as (code, line) pairs
        (the loop's own frames, the same for every step, are left out)."""
        inner: list[tuple[CodeType, int]] = []
        step_codes, loop_code = self._step_codes, self._loop_code
        depth = 0
        while frame is not None and depth < MAX_LOCATE_DEPTH:
            code = frame.f_code
            if code in step_codes:
                del inner[:-MAX_STALL_FRAMES]
                inner.reverse()
                return frame, tuple(inner)
            if code is loop_code:
                break
            inner.append((code, frame.f_lineno or 0))
            frame = frame.f_back
            depth += 1
        return None, ()

    def loop_figures(self, record: LoopRecord, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
        """The loop's runtime figures for its wire record (agent thread)."""
        now = _clock()
        figures: dict[str, Any] = {}
        ongoing: WireStall | None = None
        base = None
        for sample in record.rate_samples:
            if now - sample[0] <= RATE_WINDOW + RATE_SAMPLE_INTERVAL:
                base = sample
                break
        if self.timed and not self.compiled(record):
            started = record.step_started
            busy = record.busy + (now - started if started else 0.0)
            if base is not None and now - base[0] >= MIN_RATE_SPAN:
                span = now - base[0]
                figures["steps_per_s"] = round((record.steps - base[1]) / span, 1)
                figures["busy_share"] = round(min(1.0, max(0.0, (busy - base[2]) / span)), 3)
            if started and now - started > self.threshold and record.thread_id is not None:
                ongoing = self._ongoing_stall(record, loop, started, now)
        else:
            thread_id = record.thread_id
            if thread_id not in (None, threading.get_ident()) and loop.is_running():
                # A look of its own first: a step over since the watchdog's last look is
                # kept now, so that a look right after a block lists it. (Not from the
                # loop's own thread: the look is its step, and its own frame in a local
                # would keep the look's frames and lists alive in a cycle.)
                top = sys._current_frames().get(thread_id)
                with self.watch_lock:
                    self._follow(record, top, now)
            last_look = record.last_look
            if base is not None and last_look is not None and last_look - base[0] >= 0.2:
                span = last_look - base[0]
                busy_share = (record.busy - base[2]) / span
                figures["busy_share"] = round(min(1.0, max(0.0, busy_share)), 2)
            watch: StepWatch | None = record.step_watch
            if watch is not None and now - watch.started() > self.threshold:
                ongoing = self._ongoing_stall(record, loop, watch.started(), now, watch.frame)
        figures["stall_threshold"] = self.threshold
        stalls = [self.stall_record(note) for note in list(record.stalls)]
        if ongoing is not None:
            stalls.append(ongoing)
        figures["stalls"] = stalls
        return figures

    def stall_record(self, note: StallNote) -> WireStall:
        cached = self._stall_records.get(id(note))
        if cached is not None and cached[0] is note:
            return cached[1]
        started_at, duration, task_id, task_name, callback, frames, request = note
        record: WireStall = {
            "started_at": round(started_at, 6),
            "duration": round(duration, 6),
            "task": task_id,
            "task_name": task_name,
            "callback": callback,
            "stack": [stall_frame(code, line) for code, line in frames],
        }
        if request is not None:
            record["request"] = request
        if len(self._stall_records) > 4 * MAX_STALLS * max(1, len(self.tracker.loops)):
            self._stall_records.clear()
        self._stall_records[id(note)] = (note, record)
        return record

    def _ongoing_stall(
        self,
        record: LoopRecord,
        loop: asyncio.AbstractEventLoop,
        started: float,
        now: float,
        watched: Any = None,
    ) -> WireStall | None:
        """The step running now, past the threshold: its task (or callback) and its stack.
        `watched`: the step the watchdog follows (untimed), None when it is over by now."""
        seen, frames = self.locate_on(record, sys._current_frames().get(record.thread_id or 0))
        if watched is not None and seen != watched:
            return None  # over since the watchdog's last look: kept at its next one
        task: Any = None
        try:
            task = asyncio.current_task(loop)
        except Exception:
            task = None
        task_id = task_name = callback = request = None
        if task is not None:
            task_id = str(self.tracker.ensure_meta(task).task_id)
            try:
                task_name = str(task.get_name())
            except Exception:
                task_name = None
            request = request_in_stack(sys._current_frames().get(record.thread_id or 0))
        else:
            callback = _callback_of(frames)
        stall: WireStall = {
            "started_at": round(started + self.wall_offset, 6),
            "duration": round(now - started, 6),
            "task": task_id,
            "task_name": task_name,
            "callback": callback,
            "stack": [stall_frame(code, line) for code, line in frames],
            "ongoing": True,
        }
        if request is not None:
            stall["request"] = request
        return stall


def watch_interval(threshold: float, following: bool, timed: bool = False) -> float:
    """Seconds to the watchdog's next look: a quarter of the threshold (half, with timed
    steps, whose stalls the loop thread notes itself), a twentieth while it follows a step."""
    if following:
        return max(MIN_WATCH_INTERVAL, threshold / 20)
    return min(threshold / (2 if timed else 4), MAX_WATCH_INTERVAL)


def _send_mark(record: LoopRecord) -> None:
    """A step mark to a loop that runs its callbacks in C (see `StepTimer.locate_on`)."""
    loop = record.loop_ref()
    if loop is None:
        return
    record.mark_outstanding = True
    try:
        loop.call_soon_threadsafe(_mark_ran, record)
    except Exception:  # closed meanwhile
        record.mark_outstanding = False


def _mark_ran(record: LoopRecord) -> None:
    record.step_marks += 1
    record.mark_outstanding = False


def _callback_of(frames: Sampled) -> str | None:
    """The callback a step ran, from its sampled stack: the outermost frame's function."""
    return frames[0][0].co_qualname if frames else None


def _wrapped_codes(function: Any) -> set[CodeType]:
    """The code of `Handle._run` as it is, and of what it wraps (ours, another tool's, and
    asyncio's own at the end): where a loop thread's stack enters a step."""
    codes: set[CodeType] = set()
    for _depth in range(16):
        code = getattr(function, "__code__", None)
        if isinstance(code, CodeType):
            codes.add(code)
        function = getattr(function, "__wrapped__", None)
        if function is None:
            break
    return codes


def _run_once_code() -> CodeType | None:
    """The code of the loop's turn (`BaseEventLoop._run_once`): where a loop thread's stack
    leaves asyncio's machinery for the steps."""
    run_once = getattr(asyncio.base_events.BaseEventLoop, "_run_once", None)
    return getattr(run_once, "__code__", None)


def callback_name(handle: events.Handle) -> str | None:
    """The qualified name of what a handle runs (a partial's function; a method's)."""
    callback: Any = getattr(handle, "_callback", None)
    for _depth in range(4):
        inner = getattr(callback, "func", None)  # functools.partial
        if inner is None:
            break
        callback = inner
    if callback is None:
        return None
    name = getattr(callback, "__qualname__", None)
    if isinstance(name, str):
        return name
    return type(callback).__qualname__


def stall_frame(code: CodeType, line: int) -> WireFrame:
    return {"function": code.co_qualname, "file": code.co_filename, "line": line}
