"""The trio stall watchdog's looks when the agent's thread is kept from the GIL: its looks
come far apart, and a task busy in short steps must not read as one long step, while a
step that really held the run's thread between two such looks is still kept.

Each test runs a real `trio.run` on a thread of its own and makes the agent thread's turns
itself (`trio_runs.beat_trio_runs`), at the times a starved agent would."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

trio = pytest.importorskip("trio", reason="these tests need trio (pip install trio)")

from taskscope.agent import trio_runs  # noqa: E402
from taskscope.agent.tracker import Tracker  # noqa: E402

#: How far apart a starved agent's two looks come (the threshold is 0.1 s).
LATE = 0.6


class Run:
    """A trio run on a thread: `busy` checkpoints every 2 ms (a short step each time), and
    `blocker` holds the run's thread for `LATE + 0.3` s in one step once `block` is set."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.block = threading.Event()
        self.blocking = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=trio.run, args=(self.main,), name="trio-run")

    async def main(self) -> None:
        async def busy() -> None:
            while not self.stop.is_set():
                time.sleep(0.002)  # noqa: ASYNC251 (a step of 2 ms that lets the GIL go)
                await trio.sleep(0)

        async def blocker() -> None:
            while not self.stop.is_set():
                if self.block.is_set():
                    self.block.clear()
                    self.blocking.set()
                    time.sleep(LATE + 0.3)  # noqa: ASYNC251 (holds the run's thread)
                await trio.sleep(0.001)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(busy, name="busy")
            nursery.start_soon(blocker, name="blocker")
            self.ready.set()
            while not self.stop.is_set():
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()


@pytest.fixture
def run() -> Iterator[Run]:
    run = Run()
    run.thread.start()
    assert run.ready.wait(10), "the trio run never got ready"
    yield run
    run.stop.set()
    run.thread.join(10)


def _turn(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    """One turn of the agent's thread that looks at the runs' steps."""
    monkeypatch.setattr(trio_runs, "_next_step_look", 0.0)
    trio_runs.beat_trio_runs(tracker, time.monotonic())


def _looks(
    tracker: Tracker, monkeypatch: pytest.MonkeyPatch, seconds: float, until: Callable[[], bool]
) -> None:
    """Looks every 25 ms (a quarter of the threshold, as an agent not starved looks)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not until():
        _turn(tracker, monkeypatch)
        time.sleep(0.025)


def _stalls(tracker: Tracker) -> list[tuple[Any, ...]]:
    [found] = trio_runs.watch_of(tracker).runs.values()
    return list(found.stalls)


@pytest.mark.parametrize("beats", [True, False], ids=["heartbeat", "no-heartbeat"])
def test_short_steps_seen_by_looks_far_apart_are_no_stall(
    run: Run, monkeypatch: pytest.MonkeyPatch, beats: bool
) -> None:
    # GIVEN the agent's watchdog following a run whose `busy` task checkpoints every 2 ms,
    # its heartbeat working or not (a run that acts on idleness gets none)
    if not beats:
        monkeypatch.setattr(trio_runs, "_send_beat", lambda run, runner, now: None)
    tracker = Tracker()
    assert tracker.steps is not None and tracker.steps.threshold == 0.1
    monkeypatch.setattr(trio_runs, "_next_beat", 0.0)
    for _ in range(6):
        # WHEN its looks come LATE apart, each finding `busy` in a step, then quarter-
        # threshold looks after each, as after a starved agent gets the GIL back
        _turn(tracker, monkeypatch)
        time.sleep(LATE)
        _looks(tracker, monkeypatch, 0.1, until=lambda: False)
    # THEN no step of `busy` is kept as a stall: none held the run's thread for 0.1 s
    assert trio_runs.watch_of(tracker).runs, "the watchdog never found the run"
    assert _stalls(tracker) == []


def test_a_step_that_held_the_run_between_two_late_looks_is_kept(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the watchdog following the same run, and its look right after `blocker` began
    # the step where it holds the run's thread for LATE + 0.3 s (nothing else runs then)
    tracker = Tracker()
    monkeypatch.setattr(trio_runs, "_next_beat", 0.0)
    _looks(tracker, monkeypatch, 0.5, until=lambda: False)
    run.block.set()
    assert run.blocking.wait(5)
    _turn(tracker, monkeypatch)
    [found] = trio_runs.watch_of(tracker).runs.values()
    assert found.step is not None and found.step.task is None, "a step seen for the first time"
    # WHEN the next look comes LATE later (the heartbeat sent at that look has not run: the
    # run has not turned), then looks come every 25 ms until the step is over
    time.sleep(LATE)
    _looks(tracker, monkeypatch, 2.0, until=lambda: bool(_stalls(tracker)))
    # THEN that step is kept, with its task and about its length
    [stall] = _stalls(tracker)
    assert stall[3] is not None and stall[3].endswith("blocker"), stall
    assert 0.6 <= stall[1] <= 1.3, stall


def test_a_run_stays_the_same_run_while_its_thread_switches_tasks_under_a_look(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a run switching tasks every few ms, and the agent's thread handing the GIL over
    # as often as a starved agent's lowered interval makes it (its walk down the run's
    # thread's stack can be cut by that thread suspending the coroutine it started from)
    tracker = Tracker()
    watch = trio_runs.watch_of(tracker)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        # WHEN the agent finds the runs a few thousand times
        found = {run.loop_id for _ in range(3000) for run, _runner in watch.live_runs()}
    finally:
        sys.setswitchinterval(interval)
    # THEN it is the same run every time (its tasks keep their ids)
    assert len(found) == 1, f"the run was taken for ended and found again {len(found) - 1} times"
