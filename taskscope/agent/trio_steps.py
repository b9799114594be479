"""Stalls of trio runs: task steps that held a run's thread longer than the stall threshold,
kept with their task and the line they were blocked on, as the watchdog keeps asyncio's
(taskscope.agent.steps). Nothing of the agent runs on trio's thread for them, and they need
no instrument: they are kept with task tracking off too.

The agent's thread looks at each run's thread's stack every quarter of the threshold (every
twentieth while it follows a step seen twice). A task step is what runs above trio's
`unrolled_run` frame: the frame right above it is the task's outermost coroutine frame
(trio calls `coro.send` from there, through `Context.run`: both C). The run's current task
is the one whose coroutine runs (`cr_running`: one task's at a time on a run's thread), read
once per step seen twice, and never through `cr_frame` (which would make a frame object for
every suspended coroutine). One step of a task is told from its next by trio's count of the
task's steps, `Task._schedule_points`, one more after each step that yields (checked by
tests/test_trio_assumptions.py): a task that checkpoints every 60 ms is not said to stall a
100 ms threshold. A step first seen before its task is known is told from a later one by the
run's heartbeat: one is sent at that first sighting, and when it has run by the next look, the
run turned in between (an agent starved of the GIL may look a second later); when no
heartbeat tells and the look came late, it is taken for another step, and a step begun or
ended during a late look's wait is counted from what the looks saw of it. Starts and lengths
are good to about a quarter of the threshold. The same looks estimate the run's busy share,
as for asyncio loops whose steps are not timed: the time since the last look counts as busy
when a look finds a task step.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Iterable
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

from taskscope.agent.steps import (
    MAX_LOCATE_DEPTH,
    MAX_STALL_FRAMES,
    RATE_SAMPLE_INTERVAL,
    RATE_WINDOW,
    Sampled,
    Sighting,
    StepTimer,
    stall_frame,
)
from taskscope.agent.threadframes import thread_tops
from taskscope.protocol import WireStall

if TYPE_CHECKING:
    from taskscope.agent.trio_runs import TrioRun

_RUN_FILE = os.sep + os.path.join("trio", "_core", "_run.py")


class TrioStep(Sighting):
    """A task step the watchdog sees running on a trio run: its task's outermost frame (by
    id: a frame object held would keep the coroutine's locals past its end), its task once
    seen twice, and trio's count of that task's steps then."""

    __slots__ = ("frame_id", "points", "task")

    def __init__(self, frame_id: int, before: float | None, now: float) -> None:
        super().__init__(before, now)
        self.frame_id = frame_id
        self.task: weakref.ref[Any] | None = None
        self.points: int | None = None


def watch_steps(runs: Iterable[TrioRun], threshold: float, now: float, task_id: Any) -> bool:
    """One look at the thread of each run (agent thread): a step that is over is kept as a
    stall when it lasted longer than `threshold`. `task_id(run, task)` gives a task's id.
    Returns whether a step has been seen at two looks in a row (worth looking at sooner)."""
    runs = list(runs)
    if not runs:
        return False
    tops = thread_tops()
    # Seen at: after the stacks were read (a heartbeat that ran before then ran before the
    # steps seen, see `_same_step`).
    now = max(now, time.monotonic())
    following = False
    for run in runs:
        following |= _follow(run, tops.get(run.thread_id), threshold, now, task_id)
    return following


def _follow(
    run: TrioRun, top: FrameType | None, threshold: float, now: float, task_id: Any
) -> bool:
    outer, inner = locate(top)
    step: TrioStep | None = run.step
    before, run.last_look = run.last_look, now
    if outer is not None and before is not None:
        run.busy += now - before
    samples = run.busy_samples
    if not samples or now - samples[-1][0] >= RATE_SAMPLE_INTERVAL:
        samples.append((now, run.busy))
    if (
        step is not None
        and outer is not None
        and id(outer) == step.frame_id
        and _same_step(run, step, outer, threshold, now)
    ):
        step.last_seen = now
        step.stack.add(inner)
        return True
    task, ended_at = None, None
    if step is not None:
        run.step = None
        task, ended_at = (step.task() if step.task is not None else None), step.frame_id
        # After a late look (the agent was kept from the GIL), what the step may have been
        # spans the whole wait: only what the looks saw of it is counted.
        late = now - step.last_seen > threshold / 2
        length = step.last_seen - step.started() if late else step.length(now)
        if length > threshold and task is not None:
            _keep(run, step, task, length, task_id)
    if outer is not None:
        if before is not None and now - before > threshold / 2:
            before = None  # (the same: it began at any time since that look)
        fresh = run.step = TrioStep(id(outer), before, now)
        fresh.stack.add(inner)
        if task is not None and id(outer) == ended_at:
            # The same task's next step: its task is known, and where trio's count stands.
            fresh.task = weakref.ref(task)
            fresh.points = getattr(task, "_schedule_points", None)
    return False


def _same_step(
    run: TrioRun, step: TrioStep, outer: FrameType, threshold: float, now: float
) -> bool:
    """Whether the step seen now at `outer` is the one seen before (the same frame is)."""
    turned = _turned_since(run, step.last_seen)
    if turned:
        return False  # that step ended: the run went back to its scheduler since
    task = step.task() if step.task is not None else None
    if task is None:
        if turned is None and now - step.last_seen > threshold / 2:
            # Nothing tells, and a look this late (the agent was kept from the GIL) taken
            # for the same step could make one of many short steps a stall.
            return False
        # Seen twice: its task is the run's whose coroutine runs, if that is this frame's.
        task = _running_task(run)
        coro = getattr(task, "coro", None)
        if task is None or getattr(coro, "cr_frame", None) is not outer:
            return True  # not to be told: the same frame, so the same step as far as known
        step.task = weakref.ref(task)
        step.points = getattr(task, "_schedule_points", None)
        return True
    if getattr(getattr(task, "coro", None), "cr_frame", None) is not outer:
        return False  # another coroutine's frame at the same address
    points = getattr(task, "_schedule_points", None)
    if step.points is None:
        step.points = points
        return True
    return points == step.points


def _turned_since(run: TrioRun, seen_at: float) -> bool | None:
    """Whether the run went back to its scheduler since `seen_at` (monotonic), as its heartbeat
    tells: yes when one ran after then, no when one sent by then has not run yet, None when
    no heartbeat tells."""
    if run.beat_ran is not None and run.beat_ran > seen_at:
        return True
    sent = run.beat_sent
    if sent is not None and sent <= seen_at:
        return False
    return None


def _running_task(run: TrioRun) -> Any:
    runner = run.runner_ref()
    if runner is None:
        return None
    try:
        tasks = list(getattr(runner, "tasks", ()))
    except RuntimeError:  # changed size during the copy: the run's thread spawned meanwhile
        return None
    for task in tasks:
        if getattr(getattr(task, "coro", None), "cr_running", False):
            return task
    return None


def _keep(run: TrioRun, step: TrioStep, task: Any, length: float, task_id: Any) -> None:
    try:
        name: str | None = str(task.name)
    except Exception:
        name = None
    started_at = time.time() - (time.monotonic() - step.started())
    run.stalls.append(
        (started_at, length, str(task_id(run, task)), name, None, step.stack.most_seen(), None)
    )


def ongoing_stall(run: TrioRun, threshold: float, now: float, task_id: Any) -> WireStall | None:
    """The step running now on the run's thread, when the watchdog has followed it past the
    threshold: its task and its stack."""
    step: TrioStep | None = run.step
    if step is None or step.task is None or now - step.started() <= threshold:
        return None
    task = step.task()
    outer, inner = locate(thread_tops().get(run.thread_id))
    if task is None or outer is None or id(outer) != step.frame_id:
        return None
    try:
        name: str | None = str(task.name)
    except Exception:
        name = None
    return {
        "started_at": round(time.time() - (now - step.started()), 6),
        "duration": round(now - step.started(), 6),
        "task": str(task_id(run, task)),
        "task_name": name,
        "callback": None,
        "stack": [stall_frame(code, line) for code, line in inner],
        "ongoing": True,
    }


def busy_share(run: TrioRun, now: float) -> float | None:
    """The share of about the last second the run spent in task steps, as the watchdog's
    looks estimate it (None: it has not looked long enough)."""
    last_look = run.last_look
    for sampled_at, busy in list(run.busy_samples):
        if now - sampled_at <= RATE_WINDOW + RATE_SAMPLE_INTERVAL:
            span = (last_look or sampled_at) - sampled_at
            if span < 0.2:
                return None
            return round(min(1.0, max(0.0, (run.busy - busy) / span)), 2)
    return None


def stall_records(run: TrioRun, steps: StepTimer) -> list[WireStall]:
    return [steps.stall_record(note) for note in list(run.stalls)]


def locate(top: FrameType | None) -> tuple[FrameType | None, Sampled]:
    """Where a trio run's thread is: the outermost frame of the task step it runs (None when
    it runs none: it waits for I/O, or runs trio's own code), and the frames of that step,
    outermost first, as (code, line) pairs."""
    inner: list[tuple[CodeType, int]] = []
    frame, above = top, None
    depth = 0
    while frame is not None and depth < MAX_LOCATE_DEPTH:
        code = frame.f_code
        if _is_unrolled_run(code):
            if above is None:
                return None, ()
            del inner[:-MAX_STALL_FRAMES]
            inner.reverse()
            return above, tuple(inner)
        if code.co_name == "run" and code.co_filename.endswith(_RUN_FILE):
            return None, ()  # waiting for I/O (`get_events`, called from `run`)
        inner.append((code, frame.f_lineno or 0))
        above, frame = frame, frame.f_back
        depth += 1
    return None, ()


_UNROLLED: list[CodeType] = []


def _is_unrolled_run(code: CodeType) -> bool:
    if _UNROLLED:
        return code is _UNROLLED[0]
    if code.co_name == "unrolled_run" and code.co_filename.endswith(_RUN_FILE):
        _UNROLLED.append(code)
        return True
    return False
