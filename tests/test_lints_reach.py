"""The agent's reach facts (taskscope/agent/reach.py): a pending task nothing references is
`unreferenced` (and the collector truly destroys it), a task waiting on an object nothing but
the waiting tasks can reach is `never_woken`; a task whose object something else holds (a
producer, a variable of a live frame, a timer, a TaskGroup) is neither. In-process looks,
built on another thread as the agent does, then the same through `taskscope lint` on real
processes."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from taskscope.agent import introspect
from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.reach import MAX_WAITERS
from taskscope.agent.tracker import Tracker
from taskscope.lints import find_warnings
from taskscope.model import TaskModel
from tests.helpers import Target, run_cli, wait_for


@pytest.fixture(autouse=True)
def _no_automatic_collection() -> Iterator[None]:
    # A leaked task is garbage: the collector must not take it before the look does.
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def snapshot_of(setup: Callable[[], Awaitable[Any]]) -> Any:
    """The snapshot of a look from the agent's thread after `setup` built the situation."""

    async def main() -> Any:
        tracker = Tracker()
        tracker.install()
        try:
            kept = await setup()
            await asyncio.sleep(0.02)
            snapshot = await asyncio.to_thread(SnapshotBuilder(tracker).build)
            del kept
        finally:
            tracker.uninstall()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()
        return snapshot

    return asyncio.run(main())


def records_of(setup: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    """Task name -> its record after `setup` built the situation."""
    return {record["name"]: record for record in snapshot_of(setup)["tasks"]}


def object_facts(record: Any) -> dict[str, Any]:
    return dict((record["awaiting"] or {}).get("object") or {})


def facts_of(setup: Callable[[], Awaitable[Any]]) -> dict[str, tuple[bool, bool]]:
    """Task name -> (unreferenced, never_woken) after `setup` built the situation."""
    return {
        name: (bool(record.get("unreferenced")), bool(object_facts(record).get("never_woken")))
        for name, record in records_of(setup).items()
    }


async def forever() -> None:
    await asyncio.Future()


async def wait_on(event: asyncio.Event) -> None:
    await event.wait()


def test_waits_written_to_last_until_cancelled_are_said_so() -> None:
    # `await asyncio.Future()` is how a server waits until it is cancelled ("run forever",
    # as websockets' documentation writes it): never woken, and meant to be.
    class Box:
        def __init__(self) -> None:
            self.waiters: list[asyncio.Future[None]] = []

        async def wait_registered(self) -> None:
            future = asyncio.get_running_loop().create_future()
            self.waiters.append(future)
            await future

    async def made_future() -> None:
        await asyncio.Future()

    async def made_by_the_loop() -> None:
        await asyncio.get_running_loop().create_future()

    async def made_event() -> None:
        await asyncio.Event().wait()

    async def setup() -> list[Any]:
        box = Box()
        tasks = [
            asyncio.create_task(made_future(), name="made-future"),
            asyncio.create_task(made_by_the_loop(), name="made-by-the-loop"),
            asyncio.create_task(made_event(), name="made-event"),
            asyncio.create_task(wait_on(asyncio.Event()), name="given-event"),
            asyncio.create_task(box.wait_registered(), name="registered"),
        ]
        await asyncio.sleep(0.01)
        box.waiters.clear()  # its waker dropped: a bug, as is an Event nobody else was given
        return tasks

    snapshot = snapshot_of(setup)
    records = {record["name"]: record for record in snapshot["tasks"]}
    said = {
        name: (object_facts(record).get("never_woken"), object_facts(record).get("made_by_await"))
        for name, record in records.items()
        if not name.startswith("Task-")  # the test's own main task
    }
    assert said == {
        "made-future": (True, True),
        "made-by-the-loop": (True, True),
        "made-event": (True, True),
        "given-event": (True, None),
        "registered": (True, None),
    }
    model = TaskModel.from_snapshot(snapshot)
    warned = {model.tasks[f.tasks[0]].name for f in find_warnings(model)}
    assert warned == {"given-event", "registered"}


def test_a_task_nobody_references_is_unreferenced() -> None:
    async def setup() -> None:
        asyncio.create_task(forever(), name="leak")  # noqa: RUF006 (nothing keeps it)

    assert facts_of(setup)["leak"] == (True, True)


def test_the_same_task_kept_in_a_list_is_neither() -> None:
    async def setup() -> list[Any]:
        return [asyncio.create_task(forever(), name="kept")]

    # kept, and awaiting a bare future that nothing but its own frame holds: never woken
    assert facts_of(setup)["kept"] == (False, True)


def test_a_future_held_by_someone_else_can_still_be_set() -> None:
    async def setup() -> list[Any]:
        future = asyncio.get_running_loop().create_future()

        async def wait_for_it() -> None:
            await future

        return [future, asyncio.create_task(wait_for_it(), name="waiter")]

    assert facts_of(setup)["waiter"] == (False, False)


def test_an_event_nobody_else_holds_is_never_woken() -> None:
    async def setup() -> list[Any]:
        return [asyncio.create_task(wait_on(asyncio.Event()), name="waiter")]

    assert facts_of(setup)["waiter"] == (False, True)


def test_an_event_in_a_weak_registry_can_still_be_set() -> None:
    async def setup() -> list[Any]:
        registry: weakref.WeakValueDictionary[str, asyncio.Event] = weakref.WeakValueDictionary()
        gate = asyncio.Event()
        registry["gate"] = gate
        task = asyncio.create_task(wait_on(gate), name="waiter")
        del gate  # only the task and the registry's weak reference
        return [registry, task]

    assert facts_of(setup)["waiter"] == (False, False)


def test_an_event_held_by_a_live_frame_or_a_list_can_be_set() -> None:
    async def setup() -> list[Any]:
        gate = asyncio.Event()
        return [gate, asyncio.create_task(wait_on(gate), name="waiter")]

    assert facts_of(setup)["waiter"] == (False, False)


def test_several_waiters_on_an_event_only_they_hold_are_all_never_woken() -> None:
    async def setup() -> list[Any]:
        gate = asyncio.Event()
        return [asyncio.create_task(wait_on(gate), name=f"waiter-{n}") for n in range(3)]

    facts = facts_of(setup)
    assert [facts[f"waiter-{n}"] for n in range(3)] == [(False, True)] * 3


def test_a_consumer_whose_queue_a_live_producer_holds_is_not_never_woken() -> None:
    async def consumer(queue: asyncio.Queue[int]) -> None:
        await queue.get()

    async def producer(queue: asyncio.Queue[int]) -> None:
        await asyncio.sleep(3600)
        queue.put_nowait(1)

    async def setup() -> list[Any]:
        jobs: asyncio.Queue[int] = asyncio.Queue()
        return [
            asyncio.create_task(consumer(jobs), name="consumer"),
            asyncio.create_task(producer(jobs), name="producer"),
        ]

    assert facts_of(setup)["consumer"] == (False, False)


def test_a_consumer_whose_producer_is_gone_is_never_woken() -> None:
    async def consumer(queue: asyncio.Queue[int]) -> None:
        await queue.get()

    async def setup() -> list[Any]:
        return [asyncio.create_task(consumer(asyncio.Queue()), name="consumer")]

    assert facts_of(setup)["consumer"] == (False, True)


def test_a_join_on_a_queue_only_its_joiner_holds_is_never_woken_one_a_consumer_holds_is_not() -> (
    None
):
    async def joiner(queue: asyncio.Queue[int]) -> None:
        await queue.join()

    async def consumer(queue: asyncio.Queue[int]) -> None:
        await queue.get()
        await asyncio.sleep(3600)  # holds the queue: it may call task_done() later

    async def setup() -> list[Any]:
        lonely: asyncio.Queue[int] = asyncio.Queue()
        served: asyncio.Queue[int] = asyncio.Queue()
        lonely.put_nowait(1)
        served.put_nowait(1)
        return [
            asyncio.create_task(joiner(lonely), name="lonely"),
            asyncio.create_task(joiner(served), name="served"),
            asyncio.create_task(consumer(served), name="consumer"),
        ]

    records = records_of(setup)
    assert records["lonely"]["awaiting"]["kind"] == "queue_join"
    assert object_facts(records["lonely"])["never_woken"] is True
    assert "never_woken" not in object_facts(records["served"])


def test_a_lock_whose_holder_ended_without_releasing_it_is_never_woken() -> None:
    lock_ref: list[weakref.ref[asyncio.Lock]] = []

    async def take_and_leave(lock: asyncio.Lock) -> None:
        await lock.acquire()  # never released

    async def wants(lock: asyncio.Lock) -> None:
        async with lock:
            pass

    async def setup() -> list[Any]:
        lock = asyncio.Lock()
        lock_ref.append(weakref.ref(lock))
        await asyncio.create_task(take_and_leave(lock))
        return [asyncio.create_task(wants(lock), name="wants")]

    assert facts_of(setup)["wants"] == (False, True)


def test_a_lock_a_sleeping_holder_keeps_is_not_never_woken() -> None:
    async def holder(lock: asyncio.Lock) -> None:
        async with lock:
            await asyncio.sleep(3600)

    async def wants(lock: asyncio.Lock) -> None:
        async with lock:
            pass

    async def setup() -> list[Any]:
        lock = asyncio.Lock()
        tasks = [asyncio.create_task(holder(lock), name="holder")]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(wants(lock), name="wants"))
        return tasks

    assert facts_of(setup)["wants"] == (False, False)


def test_waits_with_a_timer_or_a_group_are_not_judged_never_woken() -> None:
    async def under_timeout() -> None:
        async with asyncio.timeout(3600):
            await asyncio.Event().wait()

    async def group() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(asyncio.sleep(3600))

    async def setup() -> list[Any]:
        return [
            asyncio.create_task(under_timeout(), name="timed"),
            asyncio.create_task(group(), name="group"),
            asyncio.create_task(asyncio.sleep(3600), name="sleeper"),
        ]

    facts = facts_of(setup)
    assert facts["timed"] == facts["group"] == facts["sleeper"] == (False, False)


def test_a_crowd_of_waiters_is_left_unjudged() -> None:
    async def setup() -> list[Any]:
        gate = asyncio.Event()
        return [asyncio.create_task(wait_on(gate), name=f"w-{n}") for n in range(MAX_WAITERS + 1)]

    assert set(facts_of(setup).values()) == {(False, False)}


def test_the_collector_truly_destroys_an_unreferenced_task() -> None:
    # The control: what the agent says is garbage is garbage (the agent installed, as above).
    async def main() -> bool:
        tracker = Tracker()
        tracker.install()
        try:
            alive = weakref.ref(asyncio.create_task(forever(), name="leak"))
            await asyncio.sleep(0.02)
            await asyncio.to_thread(SnapshotBuilder(tracker).build)
            gc.collect()
            return alive() is None
        finally:
            tracker.uninstall()

    assert asyncio.run(main())


def test_facts_are_kept_between_looks_and_the_record_stays_the_same_object() -> None:
    async def main() -> None:
        tracker = Tracker()
        tracker.install()
        try:
            kept = [asyncio.create_task(wait_on(asyncio.Event()), name="waiter")]
            await asyncio.sleep(0.02)
            builder = SnapshotBuilder(tracker)
            first = await asyncio.to_thread(builder.build_raw)
            second = await asyncio.to_thread(builder.build_raw)
            one = next(r for r in first["tasks"] if r["name"] == "waiter")
            two = next(r for r in second["tasks"] if r["name"] == "waiter")
            assert one is two
            assert one["awaiting"]["object"]["never_woken"] is True
            kept[0].cancel()
        finally:
            tracker.uninstall()

    asyncio.run(main())


def test_a_task_that_caught_its_cancel_has_cancelling_since_until_it_ends() -> None:
    async def main() -> None:
        tracker = Tracker()
        tracker.install()
        try:

            async def ignores() -> None:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    pass  # goes on (a second cancel ends it)
                await asyncio.sleep(3600)

            task = asyncio.create_task(ignores(), name="stubborn")
            calm = asyncio.create_task(asyncio.sleep(3600), name="calm")
            await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.sleep(0.01)
            builder = SnapshotBuilder(tracker)
            first = await asyncio.to_thread(builder.build_raw)
            second = await asyncio.to_thread(builder.build_raw)
            records = {r["name"]: r for r in first["tasks"]}
            assert records["stubborn"]["cancelling_since"] > 0
            assert "cancelling_since" not in records["calm"]
            assert (
                next(r for r in second["tasks"] if r["name"] == "stubborn") is (records["stubborn"])
            )
            task.uncancel()  # withdrawn: no longer counted as cancelled
            state = introspect._REACH_STATES[tracker]
            state.scanned_at = None  # the next look scans (as one does every 2 s)
            third = await asyncio.to_thread(builder.build_raw)
            assert "cancelling_since" not in next(
                r for r in third["tasks"] if r["name"] == "stubborn"
            )
            for each in (task, calm):
                each.cancel()
        finally:
            tracker.uninstall()

    asyncio.run(main())


def test_the_lints_say_them() -> None:
    async def setup() -> list[Any]:
        asyncio.create_task(forever(), name="leak")  # noqa: RUF006 (nothing keeps it)
        return [asyncio.create_task(wait_on(asyncio.Event()), name="waiter")]

    async def main() -> list[str]:
        tracker = Tracker()
        tracker.install()
        try:
            kept = await setup()
            await asyncio.sleep(0.02)
            snapshot = await asyncio.to_thread(SnapshotBuilder(tracker).build)
            kept[0].cancel()
        finally:
            tracker.uninstall()
        model = TaskModel.from_snapshot(snapshot)
        names = {task.id: task.name for task in model.tasks.values()}
        return [f"{f.kind} {names[f.tasks[0]]}" for f in find_warnings(model)]

    assert asyncio.run(main()) == ["never_woken waiter", "unreferenced leak"]


# --- real processes ---------------------------------------------------------------------------


def lint_lines(target: Target) -> list[str]:
    result = run_cli("lint", str(target.pid), "--no-inject")
    assert result.returncode in (0, 4), result.stderr
    return result.stdout.splitlines()


def test_a_leaked_task_in_a_real_process_is_unreferenced(start: Any) -> None:
    target = start("lint_cases.py", "leak").wait_ready()
    assert lint_lines(target) == [
        "unreferenced: leak is pending and nothing references it: the garbage collector may "
        "destroy it mid-run (keep a reference to the task)"
    ]


def test_the_collector_destroys_that_task_in_a_real_process(start: Any) -> None:
    target = start("lint_cases.py", "leak_control").wait_ready()
    notes = wait_for(
        lambda: (
            target.file(f"notes-{target.pid}").exists()
            and target.file(f"notes-{target.pid}").read_text()
        ),
        what="the control's note",
    )
    assert notes.split() == ["collected"]


def test_an_event_nobody_else_holds_in_a_real_process_is_never_woken(start: Any) -> None:
    target = start("lint_cases.py", "event").wait_ready()
    assert lint_lines(target) == [
        "never woken: waiter waits on event, which no other task, callback, timer or file can "
        "reach: it will never be set"
    ]


def test_waits_until_cancelled_in_a_real_process_are_said_so_and_no_warning(start: Any) -> None:
    target = start("lint_cases.py", "until_cancelled").wait_ready()
    lines = wait_for(
        lambda: (found := lint_lines(target)) and found,  # the first scan may come late
        what="the lost waiter's warning",
    )
    assert lines == [
        "never woken: dropped waits on future, which no other task, callback, timer or file "
        "can reach: it will never get a result"
    ]
    table = run_cli("ps", str(target.pid), "--no-inject")
    assert table.returncode == 0, table.stderr
    doing = {}
    for line in table.stdout.splitlines():
        words = line.split()
        if "pending" in words:
            doing[words[words.index("pending") + 1]] = line
    for name in ("made-future", "made-by-the-loop"):
        assert doing[name].rstrip().endswith("Future, until cancelled"), doing[name]
    assert doing["made-event"].rstrip().endswith("Event.wait (not set, 1 waiting), until cancelled")
    assert not doing["dropped"].rstrip().endswith("until cancelled")


@pytest.mark.parametrize("case", ["event_held", "queue"])
def test_the_same_with_a_holder_in_a_real_process_is_no_warning(start: Any, case: str) -> None:
    target = start("lint_cases.py", case).wait_ready()
    assert lint_lines(target) == []


def test_a_failure_in_the_reach_step_never_fails_the_look(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskscope.agent import reach

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("an object of a shape nobody expected")

    monkeypatch.setattr(reach, "_build_cluster", broken)

    async def setup() -> list[Any]:
        return [asyncio.create_task(wait_on(asyncio.Event()), name="waiter")]

    assert facts_of(setup)["waiter"] == (False, False)


def test_a_negative_verdict_is_a_number_kept_until_the_wait_changes_or_it_is_old(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A negative verdict (most waiting tasks) is kept as an int, which the host's collector
    # does not track (a first look at 100,000 tasks made one per task); it spares judging the
    # task again while it waits on the same future, for `RECHECK` seconds.
    from types import SimpleNamespace

    from taskscope.agent import reach

    judged: list[Any] = []
    build_cluster = reach._build_cluster

    def counting(task: Any, held: set[int]) -> Any:
        judged.append(task)
        return build_cluster(task, held)

    monkeypatch.setattr(reach, "_build_cluster", counting)

    async def main() -> None:
        event = asyncio.Event()
        task = asyncio.create_task(wait_on(event))
        await asyncio.sleep(0)
        state = reach.ReachState()
        metas = [SimpleNamespace(task_id=7)]
        # A look "of 10 s": a budget of 1 s, which a loaded machine's pause cannot use up
        # before the one task is judged (the budget is not what this test is about)
        look = 10.0
        assert reach.judge_tasks(state, [task], metas, [0], look, now=1000.0) == {}
        verdict = state.verdicts[7]
        assert type(verdict) is int and not gc.is_tracked(verdict)
        # THEN not judged again on the same future within RECHECK, judged once older
        reach.judge_tasks(state, [task], metas, [0], look, now=1000.0 + reach.RECHECK - 1)
        assert len(judged) == 1
        reach.judge_tasks(state, [task], metas, [0], look, now=1000.0 + reach.RECHECK + 1)
        assert len(judged) == 2
        # AND judged again at once when it waits on another future (the first one held here:
        # a freed future's address may be the next one's, see `reach.Cleared`)
        first_future = task._fut_waiter  # type: ignore[attr-defined]
        event.set()
        await asyncio.sleep(0)
        other = asyncio.Event()
        moved = asyncio.create_task(wait_on(other))
        await asyncio.sleep(0)
        reach.judge_tasks(state, [moved], metas, [0], look, now=1000.0 + reach.RECHECK + 2)
        assert len(judged) == 3
        del first_future
        other.set()
        await asyncio.gather(task, moved)

    asyncio.run(main())
