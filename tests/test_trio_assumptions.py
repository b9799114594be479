"""What taskscope.agent.trio_runs reads of trio's private objects, checked against trio's own
public answers on this Python: when trio changes one of them, a test here fails by name.

Each check runs inside a real `trio.run` (on a thread of its own, as the agent sees it) with
tasks parked in the waits the agent describes."""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import socket
import sys
import threading
import time
import weakref
from typing import Any

import pytest

trio = pytest.importorskip("trio", reason="these tests need trio (pip install trio)")

trio_testing = pytest.importorskip("trio.testing")

from taskscope.agent import trio_runs, trio_starts  # noqa: E402
from taskscope.agent.failures import format_failure  # noqa: E402
from taskscope.agent.tracker import Tracker  # noqa: E402
from taskscope.protocol import materialize_awaiting  # noqa: E402


class Parked:
    """A trio run on a thread of its own with tasks parked in every wait the agent reads;
    `facts` is what the run's own code saw through trio's public API."""

    def __init__(self) -> None:
        self.facts: dict[str, Any] = {}
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=trio.run, args=(self.main,), name="trio-thread")

    async def main(self) -> None:
        event, lock, gate = trio.Event(), trio.Lock(), trio.Semaphore(1)
        outbox, _unread = trio.open_memory_channel[int](0)
        _unwritten, inbox = trio.open_memory_channel[int](0)
        one, _two = socket.socketpair()
        quiet = trio.socket.from_stdlib_socket(one)
        release = threading.Event()
        facts = self.facts

        async def holder() -> None:
            async with lock, gate:
                await trio.sleep_forever()

        async def scoped() -> None:
            with trio.CancelScope(deadline=trio.current_time() + 1000) as scope:
                facts["scope"] = scope
                facts["scoped_task"] = trio.lowlevel.current_task()
                await event.wait()

        async def parent() -> None:
            async with trio.open_nursery() as inner:
                facts["inner"] = inner
                inner.start_soon(trio.sleep_forever, name="child")

        async with trio.open_nursery() as nursery:
            facts["nursery"] = nursery
            facts["main"] = trio.lowlevel.current_task()
            facts["root"] = trio.lowlevel.current_root_task()
            facts["token"] = trio.lowlevel.current_trio_token()
            nursery.start_soon(trio.sleep, 1000, name="sleeper")
            nursery.start_soon(event.wait, name="waiter")
            nursery.start_soon(holder, name="holder")
            await trio.sleep(0.01)
            nursery.start_soon(lock.acquire, name="lock-waiter")
            nursery.start_soon(gate.acquire, name="gate-waiter")
            nursery.start_soon(outbox.send, 1, name="sender")
            nursery.start_soon(inbox.receive, name="receiver")
            nursery.start_soon(quiet.recv, 10, name="reader")
            nursery.start_soon(trio.to_thread.run_sync, release.wait, name="threaded")
            nursery.start_soon(scoped, name="scoped")
            nursery.start_soon(parent, name="parent")
            await trio_testing.wait_all_tasks_blocked()
            facts["now"] = trio.current_time()
            facts["perf"] = time.perf_counter()
            facts["tasks"] = {task.name: task for task in _all_tasks(facts["root"])}
            facts["event_stats"] = event.statistics()
            facts["lock_stats"] = lock.statistics()
            facts["gate_value"] = gate.value
            facts["gate_stats"] = gate.statistics()
            facts["out_stats"] = outbox.statistics()
            facts["in_stats"] = inbox.statistics()
            facts["objects"] = (event, lock, gate, outbox, inbox)
            self.ready.set()
            await trio.to_thread.run_sync(self.stop.wait)
            release.set()
            nursery.cancel_scope.cancel()

    def __enter__(self) -> Parked:
        self.thread.start()
        assert self.ready.wait(10), "the trio run never got ready"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def _all_tasks(task: Any) -> list[Any]:
    found = [task]
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            found.extend(_all_tasks(child))
    return found


@pytest.fixture
def parked() -> Any:
    with Parked() as run:
        yield run


def _runner(parked: Parked) -> tuple[trio_runs.TrioWatch, trio_runs.TrioRun, Any]:
    watch = trio_runs.TrioWatch(Tracker())
    [(run, runner)] = watch.live_runs()
    return watch, run, runner


def test_the_run_frame_holds_the_runner_and_its_tasks(parked: Parked) -> None:
    # The frame of trio's `run` on the run's thread holds the Runner as `runner`; its `tasks`
    # are every task of the run, `main_task` the one running the main function.
    _watch, run, runner = _runner(parked)
    assert run.thread_id == parked.thread.ident
    tasks = parked.facts["tasks"]
    assert set(runner.tasks) == set(tasks.values())
    assert runner.main_task is parked.facts["main"]
    assert parked.facts["main"]._runner is runner


def test_the_clock_is_perf_counter_plus_its_offset(parked: Parked) -> None:
    _watch, _run, runner = _runner(parked)
    assert type(runner.clock).__name__ == "SystemClock"
    assert abs(runner.clock.offset + parked.facts["perf"] - parked.facts["now"]) < 0.01


def test_the_entry_queue_runs_callbacks_on_the_run_thread(parked: Parked) -> None:
    # `entry_queue.run_sync_soon` is what the TrioToken's does: thread-safe, runs on trio's.
    _watch, _run, runner = _runner(parked)
    assert parked.facts["token"]._reentry_queue is runner.entry_queue
    ran_on: list[int] = []
    done = threading.Event()
    runner.entry_queue.run_sync_soon(lambda: (ran_on.append(threading.get_ident()), done.set()))
    assert done.wait(5) and ran_on == [parked.thread.ident]
    assert runner.entry_queue.done is False


def test_parents_nurseries_and_cancel_statuses(parked: Parked) -> None:
    tasks = parked.facts["tasks"]
    main, child, parent = parked.facts["main"], tasks["child"], tasks["parent"]
    # a task's `_parent_nursery` is its public `parent_nursery`, whose `_parent_task` is the
    # public `parent_task`; `_children` its `child_tasks`
    assert child._parent_nursery is child.parent_nursery is parked.facts["inner"]
    assert child._parent_nursery._parent_task is parent
    assert set(parked.facts["inner"]._children) == set(parked.facts["inner"].child_tasks)
    # a parent waiting in the nursery's `__aexit__` has `_parent_waiting_in_aexit` set
    assert parked.facts["inner"]._parent_waiting_in_aexit is True
    assert parked.facts["nursery"]._parent_waiting_in_aexit is False  # main awaits a thread
    # the innermost cancel status's `_scope` is the innermost CancelScope, `_tasks` the tasks
    # directly under it, `_parent` the enclosing status, `_registered_deadline` its deadline
    scoped, scope = parked.facts["scoped_task"], parked.facts["scope"]
    status = scoped._cancel_status
    assert status._scope is scope and set(status._tasks) == {scoped}
    assert status._parent is parked.facts["nursery"].cancel_scope._cancel_status
    assert scope._registered_deadline == scope.deadline
    chain, status = [], main._cancel_status
    while status is not None:
        chain.append(status)
        status = status._parent
    assert parked.facts["nursery"].cancel_scope._cancel_status in chain
    # so: `scoped` has a scope of its own, `waiter` (under the nursery's) has none
    assert trio_runs.own_scope(scoped) == (scope, None)
    assert trio_runs.own_scope(tasks["waiter"])[0] is None
    # a task's `_child_nurseries` are the nurseries it opened (its public `child_nurseries`):
    # the scope of the one `parent` opened is its own, only it and its child run under it
    assert parent._child_nurseries == parent.child_nurseries == [parked.facts["inner"]]
    assert trio_runs.own_scope(parent) == (parked.facts["inner"].cancel_scope, None)
    # trio's own tasks and the main one run in nurseries of the init task
    runner = main._runner
    assert runner.init_task is parked.facts["root"]
    assert main._parent_nursery._parent_task is runner.init_task
    assert runner.system_nursery._parent_task is runner.init_task
    entry = tasks["<TrioToken.run_sync_soon task>"]
    assert entry._parent_nursery._parent_task is runner.init_task
    assert trio_runs._trio_own(runner, entry) and trio_runs._trio_own(runner, runner.init_task)
    assert not trio_runs._trio_own(runner, main) and not trio_runs._trio_own(runner, child)


def test_the_primitives_state(parked: Parked) -> None:
    event, lock, gate, outbox, inbox = parked.facts["objects"]
    assert event._flag is event.is_set() and len(event._tasks) == 2  # waiter, scoped
    assert parked.facts["event_stats"].tasks_waiting == 2
    assert lock._owner is parked.facts["lock_stats"].owner is parked.facts["tasks"]["holder"]
    assert len(lock._lot._parked) == parked.facts["lock_stats"].tasks_waiting == 1
    assert gate._value == parked.facts["gate_value"] == 0
    assert len(gate._lot._parked) == parked.facts["gate_stats"].tasks_waiting == 1
    assert outbox._state.max_buffer_size == parked.facts["out_stats"].max_buffer_size == 0
    assert len(outbox._state.data) == parked.facts["out_stats"].current_buffer_used == 0
    assert len(inbox._state.data) == parked.facts["in_stats"].current_buffer_used == 0


def test_every_wait_is_read_from_the_frames_the_agent_knows(parked: Parked) -> None:
    # The functions named in `_READERS`, in trio's files, are where these tasks wait, with
    # the locals the readers read (self, fd and attr_name, sync_fn).
    watch, _run, _unused = _runner(parked)
    loops: list[Any] = []
    records: list[Any] = []
    watch.add_to_snapshot(loops, records)
    now = time.monotonic()
    kinds = {
        record["name"]: materialize_awaiting(record["awaiting"], now)
        for record in records
        if record["awaiting"] is not None
    }
    assert kinds["sleeper"]["kind"] == "sleep" and 900 < kinds["sleeper"]["seconds_left"] <= 1000
    assert kinds["child"] == {
        "kind": "sleep",
        "tasks": (),
        "call": "trio.sleep_forever",
        "object": {"forever": True},
    }
    assert kinds["waiter"]["call"] == "Event.wait" and kinds["waiter"]["object"]["waiters"] == 2
    assert kinds["lock-waiter"]["object"]["holder_names"] == ("holder",)
    assert kinds["gate-waiter"]["object"]["value"] == 0
    assert kinds["sender"]["kind"] == "queue_put" and kinds["receiver"]["kind"] == "queue_get"
    assert kinds["reader"]["call"] == "wait_readable"
    assert isinstance(kinds["reader"]["object"]["fd"], int)
    assert kinds["threaded"]["object"]["function"] == "Event.wait"
    assert kinds["parent"]["kind"] == "taskgroup" and kinds["parent"]["object"]["size"] == 1
    run_frame = trio_runs._run_frame(sys._current_frames()[parked.thread.ident])
    assert run_frame is not None and run_frame.f_code.co_filename.endswith(
        os.path.join("trio", "_core", "_run.py")
    )
    [loop] = loops
    assert loop["type"] == "trio" and loop["thread_name"] == "trio-thread"


def test_a_sleeping_task_has_the_same_record_from_one_look_to_the_next(parked: Parked) -> None:
    # A sleep's end travels as a countdown (an end time, not seconds left): a task that
    # sleeps on is not sent again to a subscribed client.
    watch, _run, _unused = _runner(parked)
    looks = []
    for _look in range(2):
        records: list[Any] = []
        watch.add_to_snapshot([], records)
        looks.append({record["name"]: record for record in records})
        time.sleep(0.02)
    assert looks[0]["sleeper"] == looks[1]["sleeper"], looks
    assert "countdown" in looks[0]["sleeper"]["awaiting"]


def test_each_run_is_a_loop_of_its_own_thread() -> None:
    # Two trio.run at once, each on its thread: two loops, each with its own tasks.
    with Parked() as first, Parked() as second:
        watch = trio_runs.TrioWatch(Tracker())
        loops: list[Any] = []
        records: list[Any] = []
        watch.add_to_snapshot(loops, records)
        assert sorted(loop["thread_id"] for loop in loops) == sorted(
            [first.thread.ident, second.thread.ident]
        )
        assert len({loop["id"] for loop in loops}) == 2
        for loop, run in zip(
            sorted(loops, key=lambda loop: loop["thread_id"]),
            sorted([first, second], key=lambda run: run.thread.ident or 0),
            strict=True,
        ):
            mine = [record for record in records if record["loop"] == loop["id"]]
            assert sorted(record["name"] for record in mine) == sorted(run.facts["tasks"])
            assert loop["main_task"] in {record["id"] for record in mine}


@pytest.mark.skipif(
    sys.version_info < (3, 12), reason="3.11 has no sys.monitoring: runs are found by looks"
)
def test_setup_runner_hands_trio_run_its_runner_before_any_task() -> None:
    # What trio_starts reports: the return of trio's `setup_runner`, on the run's thread,
    # with the run's Runner (no task in it yet, the run context this thread's), to `run`.
    if trio_starts.run_starts_watched():
        pytest.skip("an agent in this process already watches for runs")
    seen: list[dict[str, Any]] = []

    def started(runner: Any, caller: Any) -> None:
        seen.append(
            {
                "thread": threading.get_ident(),
                "runner": runner,
                "tasks": len(runner.tasks),
                "from run": trio_runs._is_run_code(caller.f_code),
                "in the run": trio.lowlevel.in_trio_run(),
            }
        )

    facts: dict[str, Any] = {}

    async def main() -> None:
        facts["thread"] = threading.get_ident()
        facts["runner"] = trio.lowlevel.current_task()._runner

    assert trio_starts.watch_run_starts(started)
    try:
        thread = threading.Thread(target=trio.run, args=(main,))
        thread.start()
        thread.join()
    finally:
        trio_starts.stop_watching_run_starts()
    assert seen == [
        {
            "thread": facts["thread"],
            "runner": facts["runner"],
            "tasks": 0,
            "from run": True,
            "in the run": True,
        }
    ]
    # AND, stopped, it reports nothing more and holds no tool id
    trio.run(main)
    assert len(seen) == 1
    monitoring: Any = getattr(sys, "monitoring", None)
    assert "taskscope" not in map(monitoring.get_tool, range(6))


def test_what_says_a_run_acts_on_idleness() -> None:
    # A MockClock's autojump threshold is the runner's `clock_autojump_threshold` (inf on
    # trio's own clock); a task in wait_all_tasks_blocked is in `waiting_for_idle`.
    seen: dict[str, Any] = {}

    async def main() -> None:
        runner = trio.lowlevel.current_task()._runner
        seen["threshold"] = runner.clock_autojump_threshold
        seen["quiet"] = trio_runs.waits_for_idle(runner)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio_testing.wait_all_tasks_blocked, 1000.0)
            await trio.sleep(0)
            await trio.sleep(0)
            seen["waiting"] = bool(runner.waiting_for_idle)
            seen["waits"] = trio_runs.waits_for_idle(runner)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert seen == {"threshold": math.inf, "quiet": False, "waiting": True, "waits": True}

    async def jumping() -> None:
        runner = trio.lowlevel.current_task()._runner
        seen["jump"] = runner.clock_autojump_threshold
        seen["jumps"] = trio_runs.waits_for_idle(runner)

    trio.run(jumping, clock=trio_testing.MockClock(autojump_threshold=7.0))
    assert seen["jump"] == 7.0 and seen["jumps"] is True


def test_a_run_found_by_a_look_gets_its_heartbeat_at_the_next_turn(
    parked: Parked, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The agent's thread last looked while trio was imported but ran nothing: its next look
    # for a run is `_IDLE_LOOK` away. A snapshot that finds the run brings the heartbeat forward, so
    # that a run blocked right after that snapshot reads as blocked a quarter second later.
    monkeypatch.setattr(trio_runs, "_next_beat", time.monotonic() + trio_runs._IDLE_LOOK)
    watch = trio_runs.watch_of(Tracker())
    watch.add_to_snapshot([], [])
    assert trio_runs.next_trio_beat() == 0.0
    # (and that heartbeat runs on the run's thread)
    now = time.monotonic()
    trio_runs.beat_trio_runs(watch.tracker, now)
    [run] = watch.runs.values()
    deadline = time.monotonic() + 5
    while (run.beat_ran is None or run.beat_sent is not None) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run.beat_ran is not None and run.beat_ran >= now and run.lag is not None, run


def test_a_runs_heartbeat_since_a_wait_began_says_the_run_turned_meanwhile(parked: Parked) -> None:
    # The agent's thread, back from a wait that ended far later than asked, asks whether a
    # loop turned meanwhile (then the loops starved it, and it lowers the switch interval; a
    # trio run busy in short steps is such a loop): a trio run's heartbeat that ran on the
    # run's thread after the wait began says it did.
    watch = trio_runs.watch_of(Tracker())
    watch.add_to_snapshot([], [])
    began = time.monotonic()
    assert not trio_runs.trio_turned_since(watch.tracker, began)  # no heartbeat ran yet
    trio_runs.beat_trio_runs(watch.tracker, began)
    [run] = watch.runs.values()
    deadline = time.monotonic() + 5
    while run.beat_ran is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert trio_runs.trio_turned_since(watch.tracker, began)
    assert not trio_runs.trio_turned_since(watch.tracker, time.monotonic())  # none since now
    assert not trio_runs.trio_turned_since(Tracker(), began)  # a tracker that saw no run


def test_a_run_found_by_a_look_is_said_watched_from_its_next_turn_until_it_takes_it(
    parked: Parked,
) -> None:
    # GIVEN a run that was going on before the agent, its thread busy in a callback (a look
    # right after an attach, before the run's next turn)
    tracker = Tracker()
    tracker.install()
    try:
        watch = trio_runs.watch_of(tracker)
        blocked = threading.Event()

        def busy() -> None:
            blocked.set()
            time.sleep(0.5)

        parked.facts["token"].run_sync_soon(busy)
        assert blocked.wait(5)
        loops: list[Any] = []
        watch.add_to_snapshot(loops, [])
        # THEN its loop says the watch is asked for and not in place: creators unknown for now,
        # not untracked
        [loop] = loops
        assert loop.get("spawns_watch_pending") is True and "spawns_seen_since" not in loop, loop
        # WHEN the run takes its turn THEN it is watched from then on
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            loops = []
            watch.add_to_snapshot(loops, [])
            if "spawns_seen_since" in loops[0]:
                break
            time.sleep(0.05)
        assert "spawns_seen_since" in loops[0] and "spawns_watch_pending" not in loops[0], loops
    finally:
        trio_runs.stop_watching_trio(tracker)
        tracker.uninstall()


def test_how_a_task_ended_is_the_outcome_local_of_trios_task_exited() -> None:
    # trio hands instruments no outcome: the agent reads it from the frame of trio's
    # `Runner.task_exited` that calls them (its local `outcome`; for the main task, which that
    # local stands in for with `Value(None)`, the runner's `main_task_outcome`). What it reads
    # is what each task did, as trio's public answers tell it.
    endings: dict[str, tuple[str, str | None]] = {}
    tracebacks: dict[str, str] = {}
    caught: list[BaseException] = []

    class Probe:
        def __init__(self, run: trio_runs.TrioRun) -> None:
            self.run = run

        def task_exited(self, task: Any) -> None:  # at the depth of the agent's own hook
            state, summary, note = trio_runs._ending(trio_runs._exit_outcome(task, self.run))
            endings[task.name] = (state, summary)
            if note is not None:
                tracebacks[task.name] = format_failure(note)

    async def returns() -> int:
        return 42

    async def fails() -> None:
        raise ValueError("boom")

    async def nested() -> None:  # its nursery's child and its own body are cancelled
        async with trio.open_nursery() as inner:
            inner.start_soon(trio.sleep_forever, name="nested-child")
            await trio.sleep_forever()

    async def main() -> str:
        [(run, _runner)] = trio_runs.TrioWatch(Tracker()).live_runs()
        trio.lowlevel.add_instrument(Probe(run))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(returns, name="returns")
            nursery.start_soon(trio.sleep_forever, name="sleeps")
            nursery.start_soon(nested, name="nested")
            await trio_testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fails, name="fails")
        except* ValueError as group:
            caught.extend(group.exceptions)
        return "main-result"

    assert trio.run(main) == "main-result"
    assert endings["returns"] == ("done", "42")
    assert endings["sleeps"] == endings["nested"] == endings["nested-child"] == ("cancelled", None)
    assert [repr(error) for error in caught] == ["ValueError('boom')"]
    assert endings["fails"] == ("failed", "ValueError('boom')")
    # (and only a failed task's outcome has a traceback: where it raised, as Python prints it)
    assert list(tracebacks) == ["fails"], tracebacks
    assert tracebacks["fails"].splitlines()[-3:] == [
        f'  File "{__file__}", line {fails.__code__.co_firstlineno + 1}, in {fails.__qualname__}',
        '    raise ValueError("boom")',
        "ValueError: boom",
    ], tracebacks["fails"]
    [main_ending] = [ending for name, ending in endings.items() if name.endswith(".main")]
    assert main_ending == ("done", "'main-result'")


class Kept:
    """A result the test holds only weakly."""


def test_the_instrument_notes_spawns_and_exits_and_keeps_nothing_alive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN the agent's instrument, added to a run through trio's public add_instrument
    tracker = Tracker(history_limit=5)
    watch = trio_runs.TrioWatch(tracker)
    refs: dict[str, Any] = {}
    seen: dict[str, Any] = {}

    async def child() -> Kept:
        refs["task"] = weakref.ref(trio.lowlevel.current_task())
        kept = Kept()
        refs["result"] = weakref.ref(kept)
        return kept

    async def failing_child() -> None:
        held = Kept()  # a local of the failing frame, which its traceback holds
        refs["local"] = weakref.ref(held)
        raise ValueError("lost")

    async def main() -> None:
        [(run, runner)] = watch.live_runs()
        instrument = trio_runs.TaskWatch(watch, run)
        trio.lowlevel.add_instrument(instrument)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child, name="child")
            seen["known"] = dict(run.task_ids)
        with contextlib.suppress(ExceptionGroup):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(failing_child, name="failing")
        gc.collect()
        # THEN once the tasks have exited, neither they nor their results are kept alive, nor
        # the locals of the frames a failed one's traceback went through
        seen["task gone"] = refs["task"]() is None
        seen["result gone"] = refs["result"]() is None
        seen["local gone"] = refs["local"]() is None
        seen["left"] = [known for known in run.task_ids.values() if known[3] is not None]
        # AND its hooks, even failing inside, never reach trio: it stays in
        instrument.history = None  # type: ignore[assignment]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child, name="child-2")
        seen["still in"] = instrument in runner.instruments["_all"]
        # AND `stop` removes it on the run's thread
        watch.runs[run.thread_id] = run
        run.instrument = instrument
        watch.stop()
        await trio.sleep(0.05)
        seen["removed"] = instrument not in runner.instruments["_all"]

    with caplog.at_level(logging.DEBUG):
        trio.run(main)
    # AND the spawn was noted then (a creation time, no first look, where: main's start_soon)
    [known] = [known for known in seen["known"].values() if known[3] is not None]
    assert known[2] is None and known[3] > 0, known
    [(code, _offset)] = known[4][:1]
    assert code.co_name == "main", known[4]
    assert seen["task gone"] and seen["result gone"] and seen["local gone"], seen
    assert seen["left"] == [], seen["left"]
    assert seen["still in"] and seen["removed"], seen
    assert not [record for record in caplog.records if record.name.startswith("trio")]
    # AND the history holds its ending as text, with the place of its spawn; the failed one's
    # with its traceback, made now from the code objects and line numbers it noted
    [finished, failed] = tracker.finished_tasks()
    assert (failed.name, failed.state, failed.summary) == (
        "failing",
        "failed",
        "ValueError('lost')",
    )
    assert failed.traceback is not None, failed
    assert failed.traceback.splitlines()[-3:] == [
        f'  File "{__file__}", line {failing_child.__code__.co_firstlineno + 3}, in '
        f"{failing_child.__qualname__}",
        '    raise ValueError("lost")',
        "ValueError: lost",
    ], failed.traceback
    assert (finished.name, finished.state) == ("child", "done"), finished
    assert finished.summary is not None and finished.summary.endswith(".Kept object>")
    assert finished.created_at == known[3] and finished.first_seen_at is None
    assert [code.co_name for code, _line in finished.created_from] == ["main"]


def test_a_task_step_runs_right_above_unrolled_run_and_trio_counts_its_steps() -> None:
    """What trio_steps reads: while a task step runs, the frame right below the task's
    outermost coroutine frame is trio's `unrolled_run`; that task's coroutine is the only one
    of the run's that runs (`cr_running`); trio adds one to `Task._schedule_points` after each
    step that yields; and a run waiting for I/O shows no task step."""
    from taskscope.agent.trio_steps import locate

    seen: dict[str, Any] = {}
    in_step = threading.Event()
    go_on = threading.Event()

    async def stepper() -> None:
        task = trio.lowlevel.current_task()
        seen["task"] = task
        seen["points"] = [task._schedule_points]
        await trio.lowlevel.checkpoint()
        seen["points"].append(task._schedule_points)
        await trio.sleep(0)
        seen["points"].append(task._schedule_points)
        in_step.set()
        go_on.wait(10)  # holds the run's thread: a step seen from the test's thread

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            nursery.start_soon(stepper)
            await trio.sleep(0.01)
            await trio.sleep(0.3)  # the run waits for I/O meanwhile (read below)
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(main,))
    thread.start()
    try:
        assert in_step.wait(10)
        task = seen["task"]
        top = sys._current_frames()[thread.ident or 0]
        outer, inner = locate(top)
        assert outer is not None and outer is task.coro.cr_frame
        assert outer.f_back is not None and outer.f_back.f_code.co_name == "unrolled_run"
        assert inner[0][0].co_name == "stepper"
        runner = trio_runs._runner_of(trio_runs._run_frame(top))  # type: ignore[arg-type]
        running = [t for t in runner.tasks if t.coro.cr_running]
        assert running == [task]
        # One more after each step that yields (the step running now is not counted yet).
        first = seen["points"][0]
        assert seen["points"] == [first, first + 1, first + 2]
        assert task._schedule_points == first + 2
    finally:
        go_on.set()
    time.sleep(0.1)
    # AND a run waiting for I/O shows no task step
    assert locate(sys._current_frames().get(thread.ident or 0)) == (None, ())
    thread.join(10)
    assert not thread.is_alive()


def test_a_worker_threads_call_holds_the_waiting_tasks_call_context() -> None:
    # What `trio_runs._worker_thread_calls` reads: `to_thread.run_sync` runs its call in a
    # nested `worker_fn` whose `context` is the very object its own frame (the task's) holds.
    code = trio_runs._worker_fn_code()
    assert code is not None and "context" in code.co_freevars
    release = threading.Event()
    seen: dict[str, Any] = {}

    def call() -> None:
        frame: Any = sys._getframe(1)
        while frame is not None and frame.f_code is not code:
            frame = frame.f_back
        seen["worker_context"] = frame.f_locals.get("context") if frame is not None else None
        release.wait(5)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, call)
            await trio.sleep(0.2)
            [child] = nursery.child_tasks
            # down the task's chain of coroutines to `to_thread_run_sync`'s
            inner = child.coro
            while getattr(inner, "cr_await", None) is not None and inner.cr_code.co_name != (
                "to_thread_run_sync"
            ):
                inner = inner.cr_await
            seen["task_context"] = inner.cr_frame.f_locals.get("context")
            seen["found"] = trio_runs._worker_thread_calls()
            release.set()

    trio.run(main)
    assert seen["worker_context"] is not None
    assert seen["worker_context"] is seen["task_context"]
    [(key, (_thread, _function, stack))] = seen["found"].items()
    assert key == id(seen["task_context"])
    # the call's frames, outermost first: the program's function, then what it blocks in
    assert stack[0]["function"].endswith("call") and stack[1]["function"] == "Event.wait", stack
