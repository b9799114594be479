"""Step timing inside one process (taskscope.agent.steps): `Handle._run` does exactly what it
did (exceptions, debug-mode warnings, context variables), is put back on uninstall, and the
records of tasks whose steps moved are new while the others stay the same objects."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
import time
from asyncio import events
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.loops import LoopTracker
from taskscope.agent.steps import stall_threshold_setting, time_steps_setting
from taskscope.agent.tracker import Tracker
from taskscope.model import TaskModel
from taskscope.protocol import WireSnapshot, WireTask

ORIGINAL_RUN = events.Handle._run


def _with_tracker(
    scenario: Callable[[Tracker], Awaitable[None]],
    timed: bool = True,
    debug: bool = False,
    restores: Callable[[events.Handle], None] = ORIGINAL_RUN,
) -> None:
    """Run `scenario` in a new loop with a tracker installed, then check that uninstalling
    put back `restores` (asyncio's own `Handle._run` unless another tool's was there)."""

    async def main() -> None:
        tracker = Tracker(time_steps=timed)
        tracker.install()
        try:
            await scenario(tracker)
        finally:
            tracker.uninstall()

    asyncio.run(main(), debug=debug)
    assert events.Handle._run is restores


@contextlib.contextmanager
def _watchdog(tracker: Tracker) -> Iterator[None]:
    """Look for stalls every 10 ms from another thread while the block runs, as the agent's
    server thread does."""
    timer = tracker.steps
    assert timer is not None
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            timer.watch(time.monotonic())
            time.sleep(0.01)

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def _another_tools_wrapper() -> Iterator[Callable[[events.Handle], None]]:
    """Wrap `Handle._run` for the block as another tool would (`functools.wraps` around what
    is there now), and put back what was there after it. Yields their wrapper."""
    before = events.Handle._run

    @functools.wraps(before)
    def their_run(self: events.Handle) -> None:
        before(self)

    events.Handle._run = their_run  # type: ignore[method-assign]
    try:
        yield their_run
    finally:
        events.Handle._run = before  # type: ignore[method-assign]


def hold_the_loop() -> None:
    """A callback that blocks its loop for 150 ms: a stall at the default threshold."""
    time.sleep(0.15)


async def _stall_once(tracker: Tracker) -> None:
    """Run `hold_the_loop` once in this loop while a watchdog looks for stalls."""
    with _watchdog(tracker):
        asyncio.get_running_loop().call_soon(hold_the_loop)
        await asyncio.sleep(0.2)


def _record(snapshot: WireSnapshot, name: str) -> WireTask:
    for record in snapshot["tasks"]:
        if record["name"] == name and record["state"] == "pending":
            return record
    raise AssertionError(f"no pending task {name}")


def test_timed_steps_replace_handle_run_and_uninstall_restores_it() -> None:
    async def scenario(tracker: Tracker) -> None:
        assert events.Handle._run is not ORIGINAL_RUN
        assert events.Handle._run.__wrapped__ is ORIGINAL_RUN  # type: ignore[attr-defined]

    _with_tracker(scenario)


def test_the_watchdog_looks_once_installed_even_if_it_went_to_sleep_before() -> None:
    # The race of an attach, forced in order: the server's thread runs before the agent hooks
    # asyncio; the running loop is adopted (its start noted: the watchdog is due), then the
    # server's first watchdog pass finds the stall watch not installed yet and sleeps until
    # a loop starts, then the stall watch is installed. No loop starts after that.
    async def scenario() -> None:
        tracker = Tracker(stall_threshold=0.1, time_steps=False)
        steps = tracker.steps
        assert steps is not None
        try:
            LoopTracker.install(tracker)  # the loop hooks and the adoption, not the steps
            steps.watch(time.monotonic())
            assert steps.next_watch > time.monotonic() + 3600  # asleep until a loop starts
            steps.install()
            # THEN the watchdog is due at once, rather than asleep for good (every stall of
            # the program would go unseen)
            assert steps.next_watch <= time.monotonic()
        finally:
            tracker.uninstall()

    asyncio.run(scenario())


def test_untimed_agent_leaves_handle_run_alone() -> None:
    async def scenario(tracker: Tracker) -> None:
        assert events.Handle._run is ORIGINAL_RUN

    _with_tracker(scenario, timed=False)


def test_a_failing_callback_reaches_the_exception_handler_as_before() -> None:
    contexts: list[dict[str, Any]] = []

    async def scenario(tracker: Tracker) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: contexts.append(context))

        def boom() -> None:
            raise ValueError("boom")

        handle = loop.call_soon(boom)
        await asyncio.sleep(0.01)
        assert len(contexts) == 1
        context = contexts[0]
        assert isinstance(context["exception"], ValueError)
        assert context["handle"] is handle
        assert context["message"].startswith("Exception in callback ")
        assert "boom" in context["message"]

    _with_tracker(scenario)


def test_system_exit_from_a_callback_still_stops_the_loop() -> None:
    async def main() -> None:
        tracker = Tracker(time_steps=True)
        tracker.install()
        try:
            asyncio.get_running_loop().call_soon(_exit)
            await asyncio.sleep(1)
        finally:
            tracker.uninstall()

    with pytest.raises(SystemExit):
        asyncio.run(main())
    assert events.Handle._run is ORIGINAL_RUN


def _exit() -> None:
    raise SystemExit(3)


def test_debug_mode_still_warns_of_slow_callbacks(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(tracker: Tracker) -> None:
        loop = asyncio.get_running_loop()
        loop.slow_callback_duration = 0.01
        loop.call_soon(time.sleep, 0.03)
        await asyncio.sleep(0.05)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        _with_tracker(scenario, debug=True)
    assert any("Executing" in record.getMessage() for record in caplog.records)


def test_callbacks_run_in_their_context_as_before() -> None:
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("variable", default="unset")
    seen: list[str] = []

    async def scenario(tracker: Tracker) -> None:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        context.run(variable.set, "in its context")
        loop.call_soon(lambda: seen.append(variable.get()), context=context)
        loop.call_soon(lambda: seen.append(variable.get()))
        await asyncio.sleep(0.01)
        assert seen == ["in its context", "unset"]

    _with_tracker(scenario)


def test_records_change_when_the_steps_move_and_only_then() -> None:
    async def scenario(tracker: Tracker) -> None:
        go = asyncio.Event()
        still = asyncio.Event()

        async def stepper() -> None:
            while True:
                await go.wait()
                go.clear()

        moving = asyncio.create_task(stepper(), name="moving")
        resting = asyncio.create_task(still.wait(), name="resting")
        await asyncio.sleep(0)
        first = SnapshotBuilder(tracker).build()
        # WHEN one task runs a step and the other does not
        go.set()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        second = SnapshotBuilder(tracker).build()
        # THEN the one that ran has a new record with one more step; the other the same one
        assert _record(second, "resting") is _record(first, "resting")
        before, after = _record(first, "moving"), _record(second, "moving")
        assert after is not before
        assert after["steps"] == before["steps"] + 1
        assert after["busy_s"] >= before["busy_s"]
        assert after["waiting_since"] >= after["last_ran_at"] >= before["waiting_since"]
        assert list(after)[-1] == "created_from"  # still last
        moving.cancel()
        still.set()
        await resting

    _with_tracker(scenario)


def test_steps_before_the_first_look_are_counted() -> None:
    async def scenario(tracker: Tracker) -> None:
        async def fifty() -> None:
            for _ in range(50):
                await asyncio.sleep(0)
            await asyncio.sleep(3600)

        task = asyncio.create_task(fifty(), name="fifty")
        for _ in range(60):
            await asyncio.sleep(0)
        record = _record(SnapshotBuilder(tracker).build(), "fifty")
        assert record["steps"] == 51
        task.cancel()

    _with_tracker(scenario)


def test_a_blocking_callback_is_a_stall_with_its_name() -> None:
    async def scenario(tracker: Tracker) -> None:
        await _stall_once(tracker)
        snapshot = SnapshotBuilder(tracker).build()
        stalls = snapshot["loops"][0]["stalls"]
        assert len(stalls) == 1, stalls
        assert stalls[0]["callback"] == hold_the_loop.__qualname__
        assert stalls[0]["task"] is None
        assert stalls[0]["stack"][-1]["function"] == hold_the_loop.__qualname__
        # AND the client's model has it
        (loop,) = TaskModel.from_snapshot(snapshot).loops.values()
        (stall,) = loop.stalls
        assert stall.callback == hold_the_loop.__qualname__
        assert stall.duration == stalls[0]["duration"] > 0.1
        assert stall.stack[-1].function == hold_the_loop.__qualname__
        assert loop.stall_threshold == 0.1

    _with_tracker(scenario, timed=True)
    _with_tracker(scenario, timed=False)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKSCOPE_STALL_THRESHOLD", "0.25")
    assert stall_threshold_setting(None) == 0.25
    assert stall_threshold_setting(0.5) == 0.5
    monkeypatch.setenv("TASKSCOPE_STALL_THRESHOLD", "soon")
    assert stall_threshold_setting(None) == 0.1
    assert stall_threshold_setting(-1) == 0.1
    monkeypatch.setenv("TASKSCOPE_TIME_STEPS", "1")
    assert time_steps_setting(None) is True
    assert time_steps_setting(False) is False
    monkeypatch.delenv("TASKSCOPE_TIME_STEPS")
    assert time_steps_setting(None) is False


def test_another_tools_wrapper_of_handle_run_is_no_step_of_its_own() -> None:
    # GIVEN another tool that wrapped Handle._run before the agent came
    with _another_tools_wrapper() as their_run:

        async def scenario(tracker: Tracker) -> None:
            await _stall_once(tracker)
            # THEN the stall names the callback, not their wrapper or asyncio's method
            (stall,) = SnapshotBuilder(tracker).build()["loops"][0]["stalls"]
            assert stall["callback"] == hold_the_loop.__qualname__
            assert [frame["function"] for frame in stall["stack"]] == [hold_the_loop.__qualname__]
            # AND with steps timed, the agent's wrapper goes around theirs
            assert events.Handle._run is their_run or tracker.steps.timed

        _with_tracker(scenario, timed=False, restores=their_run)
        _with_tracker(scenario, timed=True, restores=their_run)


def test_an_untimed_loops_busy_share_is_estimated_from_the_watchdogs_looks() -> None:
    shares: list[float] = []

    async def scenario(tracker: Tracker) -> None:
        with _watchdog(tracker):
            await asyncio.sleep(0.6)  # idle
            shares.append(SnapshotBuilder(tracker).build()["loops"][0]["busy_share"])
            time.sleep(1.2)  # noqa: ASYNC251 (busy: the loop thread is in this step all along)
            shares.append(SnapshotBuilder(tracker).build()["loops"][0]["busy_share"])

    _with_tracker(scenario, timed=False)
    idle, busy = shares
    assert idle < 0.2
    assert busy > 0.8


def test_timing_is_turned_on_and_off_while_the_loop_runs() -> None:
    async def scenario(tracker: Tracker) -> None:
        timer = tracker.steps
        assert timer is not None and not timer.timed

        async def ticker() -> None:
            for _ in range(1_000_000):
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker(), name="ticker")
        await asyncio.sleep(0.01)
        assert "steps" not in _record(SnapshotBuilder(tracker).build(), "ticker")
        # WHEN it is turned on: the agent's Handle._run goes around asyncio's
        assert timer.set_timed(True) is None and timer.timed
        assert events.Handle._run.__wrapped__ is ORIGINAL_RUN  # type: ignore[attr-defined]
        assert timer.set_timed(True) is None  # again: nothing changes
        await asyncio.sleep(0.01)
        on = _record(SnapshotBuilder(tracker).build(), "ticker")
        assert on["steps"] >= 1
        # WHEN it is turned off: asyncio's own again, and no figures (the records are new)
        assert timer.set_timed(False) is None and not timer.timed
        assert events.Handle._run is ORIGINAL_RUN
        await asyncio.sleep(0.01)
        off = _record(SnapshotBuilder(tracker).build(), "ticker")
        assert "steps" not in off and "busy_s" not in off
        # AND on again: the figures count from then, not from the first time
        meta = tracker.meta_of(task)
        assert meta is not None
        timer.set_timed(True)
        timing = meta.timing
        assert timing is not None
        assert (timing.steps, timing.busy, timing.longest) == (0, 0, 0.0)
        before = time.perf_counter()
        await asyncio.sleep(0.01)
        again = _record(SnapshotBuilder(tracker).build(), "ticker")
        assert again["steps"] >= 1 and meta.timing is not None and meta.timing.last_ran >= before
        timer.set_timed(False)
        task.cancel()

    _with_tracker(scenario, timed=False)


def test_timing_is_not_taken_off_from_under_another_tools_wrapper() -> None:
    async def scenario(tracker: Tracker) -> None:
        timer = tracker.steps
        assert timer is not None
        with _another_tools_wrapper() as their_run:
            # THEN turning it off is refused, saying why, and theirs stays
            refusal = timer.set_timed(False)
            assert refusal is not None and "another tool" in refusal
            assert timer.timed and events.Handle._run is their_run

    _with_tracker(scenario, timed=True)


def test_timing_needs_task_tracking() -> None:
    async def main() -> None:
        tracker = Tracker(track_tasks=False)
        tracker.install()
        try:
            timer = tracker.steps
            assert timer is not None
            refusal = timer.set_timed(True)
            assert refusal is not None and "task tracking" in refusal
            assert events.Handle._run is ORIGINAL_RUN
        finally:
            tracker.uninstall()

    asyncio.run(main())
