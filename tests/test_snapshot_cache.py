"""The snapshot builder reuses what it found about tasks that have not moved since the last
snapshot (same `_fut_waiter`): these tests fail if a stale entry were served."""

from __future__ import annotations

import asyncio
import gc
import itertools
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from taskscope.agent import introspect
from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.tracker import Tracker
from taskscope.protocol import WireSnapshot, WireTask
from taskscope.words import schema_text
from tests.helpers import with_tracker


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _record(snapshot: WireSnapshot, name: str) -> WireTask:
    for record in snapshot["tasks"]:
        if record["name"] == name and record["state"] == "pending":
            return record
    raise AssertionError(f"no pending task {name}")


def _build(tracker: Tracker) -> WireSnapshot:
    return SnapshotBuilder(tracker).build()


def _cached_numbers(tracker: Tracker) -> set[int]:
    """The tasks whose chain the builder noted (in their metadata) for its next look."""
    return {meta.task_id for meta in tracker.task_metas().values() if meta.chain_fut is not None}


def _cached_entry(tracker: Tracker, number: int) -> Any:
    """The note's weak reference to the task's awaited future: the same object while the
    note is reused."""
    for meta in tracker.task_metas().values():
        if meta.task_id == number and meta.chain_fut is not None:
            return meta.chain_fut
    raise AssertionError(f"no cache entry for task {number}")


def test_unmoved_task_is_served_from_the_cache() -> None:
    async def scenario(tracker: Tracker) -> None:
        event = asyncio.Event()
        task = asyncio.create_task(event.wait(), name="waiter")
        await _settle()
        first = _record(_build(tracker), "waiter")
        number = int(first["id"])
        assert number in _cached_numbers(tracker)
        entry = _cached_entry(tracker, number)
        second = _record(_build(tracker), "waiter")
        # THEN the same entry is kept, and the record says the same
        assert _cached_entry(tracker, number) is entry
        assert second["stack"] == first["stack"]
        assert second["awaiting"] == first["awaiting"]
        event.set()
        await task

    with_tracker(scenario)


def test_task_moving_to_another_await_gets_a_new_stack_and_description() -> None:
    async def scenario(tracker: Tracker) -> None:
        first_event, second_event = asyncio.Event(), asyncio.Event()
        lock = asyncio.Lock()

        async def mover() -> None:
            await first_event.wait()
            async with lock:
                await second_event.wait()

        task = asyncio.create_task(mover(), name="mover")
        await _settle()
        before = _record(_build(tracker), "mover")
        assert before["awaiting"] is not None and before["awaiting"]["kind"] == "event"
        await lock.acquire()
        first_event.set()
        await _settle()
        after = _record(_build(tracker), "mover")
        assert after["awaiting"] is not None and after["awaiting"]["kind"] == "lock"
        assert after["stack"] != before["stack"]
        assert after["stack"][-1]["function"] == "Lock.acquire"
        lock.release()
        await _settle()
        last = _record(_build(tracker), "mover")
        assert last["awaiting"] is not None and last["awaiting"]["kind"] == "event"
        assert last["stack"][0]["line"] != before["stack"][0]["line"]
        second_event.set()
        await task

    with_tracker(scenario)


def test_queue_size_change_without_the_getter_moving_is_seen() -> None:
    async def scenario(tracker: Tracker) -> None:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=2)
        getter_queue: asyncio.Queue[int] = asyncio.Queue()
        full: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        full.put_nowait(0)
        putter = asyncio.create_task(full.put(1), name="putter")
        getter = asyncio.create_task(getter_queue.get(), name="getter")
        await _settle()
        _build(tracker)  # fills the cache: the builds below are served from it
        before = _record(_build(tracker), "putter")
        assert before["awaiting"] is not None
        assert "full, 1/1" in schema_text(before["awaiting"])
        # the putter does not move when another item is squeezed in behind its back
        full._queue.append(2)  # type: ignore[attr-defined]
        after = _record(_build(tracker), "putter")
        assert after["awaiting"] is not None
        assert "full, 2/1" in schema_text(after["awaiting"])
        assert after["awaiting"]["object"]["size"] == 2
        # a getter whose queue gains an item stays suspended until the loop runs it
        get_before = _record(_build(tracker), "getter")
        assert get_before["awaiting"] is not None and "(0 items)" in schema_text(
            get_before["awaiting"]
        )
        getter_queue._queue.append(7)  # type: ignore[attr-defined]
        get_after = _record(_build(tracker), "getter")
        assert get_after["awaiting"] is not None and "(1 item)" in schema_text(
            get_after["awaiting"]
        )
        putter.cancel()
        getter.cancel()
        await asyncio.gather(putter, getter, return_exceptions=True)
        del queue

    with_tracker(scenario)


def test_lock_state_and_waiter_count_are_read_again() -> None:
    async def scenario(tracker: Tracker) -> None:
        lock = asyncio.Lock()
        await lock.acquire()
        first = asyncio.create_task(lock.acquire(), name="first")
        await _settle()
        _build(tracker)  # fills the cache: the builds below are served from it
        before = _record(_build(tracker), "first")
        assert before["awaiting"] is not None and "1 waiting" in schema_text(before["awaiting"])
        second = asyncio.create_task(lock.acquire(), name="second")
        await _settle()
        after = _record(_build(tracker), "first")
        assert after["awaiting"] is not None and "2 waiting" in schema_text(after["awaiting"])
        first.cancel()
        second.cancel()
        await asyncio.gather(first, second, return_exceptions=True)

    with_tracker(scenario)


def test_sleep_countdown_decreases() -> None:
    async def scenario(tracker: Tracker) -> None:
        sleeper = asyncio.create_task(asyncio.sleep(60), name="sleeper")
        await _settle()
        _build(tracker)  # fills the cache: the builds below are served from it
        before = _record(_build(tracker), "sleeper")
        await asyncio.sleep(0.2)
        after = _record(_build(tracker), "sleeper")
        assert before["awaiting"] is not None and after["awaiting"] is not None
        left_before = before["awaiting"]["seconds_left"]
        left_after = after["awaiting"]["seconds_left"]
        assert left_before is not None and left_after is not None
        assert left_after <= left_before - 0.15
        sleeper.cancel()
        await asyncio.gather(sleeper, return_exceptions=True)

    with_tracker(scenario)


def test_a_sleeping_task_is_noted_by_its_timer_and_known_unmoved_by_it() -> None:
    async def scenario(tracker: Tracker) -> None:
        sleeper = asyncio.create_task(asyncio.sleep(60), name="sleeper")
        await _settle()
        first = _record(_build(tracker), "sleeper")
        number = int(first["id"])
        # THEN the look noted the future the task sleeps on by its timer's end, the float
        # the loop's TimerHandle holds, and keeps no weak reference to that future
        note = _cached_entry(tracker, number)
        loop: Any = asyncio.get_running_loop()
        fut = sleeper._fut_waiter  # type: ignore[attr-defined]
        timer = next(handle for handle in loop._scheduled if handle._args[:1] == (fut,))
        assert type(note) is float and note is timer.when()
        assert not weakref.getweakrefcount(fut)
        # AND the next look knows it has not moved: the same record, its wait since the first
        await asyncio.sleep(0.05)
        second = _record(_build(tracker), "sleeper")
        assert _cached_entry(tracker, number) is note
        assert second["waiting_seen_at"] == first["waiting_seen_at"]  # type: ignore[typeddict-item]
        assert second["stack"] == first["stack"]
        sleeper.cancel()
        await asyncio.gather(sleeper, return_exceptions=True)

    with_tracker(scenario)


def test_a_task_sleeping_again_at_the_same_place_is_seen_to_have_moved() -> None:
    # Its new future is often made at the address of the last one, freed: a note by the
    # future's id alone would take it for the same sleep
    async def scenario(tracker: Tracker) -> None:
        async def ticker() -> None:
            for _ in range(1000):
                await asyncio.sleep(0.1)

        task = asyncio.create_task(ticker(), name="ticker")
        await _settle()
        looks = []
        for _ in range(4):
            looks.append(_record(_build(tracker), "ticker"))
            await asyncio.sleep(0.15)
        # THEN each look found a new sleep: it waits there since that look
        for before, after in itertools.pairwise(looks):
            assert after is not before
            assert after["awaiting"] is not None and after["awaiting"]["kind"] == "sleep"
            assert after["waiting_seen_at"] > before["waiting_seen_at"]  # type: ignore[typeddict-item]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with_tracker(scenario)


def test_timeout_deadline_counts_down() -> None:
    async def scenario(tracker: Tracker) -> None:
        event = asyncio.Event()

        async def bounded() -> None:
            async with asyncio.timeout(60):
                await event.wait()

        task = asyncio.create_task(bounded(), name="bounded")
        await _settle()
        _build(tracker)  # fills the cache: the builds below are served from it
        before = _record(_build(tracker), "bounded")
        await asyncio.sleep(0.2)
        after = _record(_build(tracker), "bounded")
        assert before["awaiting"] is not None and after["awaiting"] is not None
        assert after["awaiting"]["deadline_in"] <= before["awaiting"]["deadline_in"] - 0.15
        event.set()
        await task

    with_tracker(scenario)


def test_renamed_task_shows_its_new_name() -> None:
    async def scenario(tracker: Tracker) -> None:
        event = asyncio.Event()
        task = asyncio.create_task(event.wait(), name="old name")
        await _settle()
        _build(tracker)  # fills the cache: the builds below are served from it
        _record(_build(tracker), "old name")
        task.set_name("new name")
        snapshot = _build(tracker)
        assert _record(snapshot, "new name")["awaiting"] is not None
        assert all(record["name"] != "old name" for record in snapshot["tasks"])
        event.set()
        await task

    with_tracker(scenario)


def test_gather_child_finishing_changes_awaiting_tasks() -> None:
    async def scenario(tracker: Tracker) -> None:
        first_event, second_event = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(first_event.wait(), name="child one")
        second = asyncio.create_task(second_event.wait(), name="child two")

        async def parent() -> None:
            await asyncio.gather(first, second)

        task = asyncio.create_task(parent(), name="parent")
        await _settle()
        _build(tracker)  # fills the cache: the builds below are served from it
        before = _build(tracker)
        parent_before = _record(before, "parent")
        ids = {_record(before, "child one")["id"], _record(before, "child two")["id"]}
        assert parent_before["awaiting"] is not None
        assert set(parent_before["awaiting"]["tasks"]) == ids
        assert "0 done" in schema_text(parent_before["awaiting"])
        first_event.set()
        await _settle()
        after = _build(tracker)
        parent_after = _record(after, "parent")
        assert parent_after["awaiting"] is not None
        assert list(parent_after["awaiting"]["tasks"]) == [_record(after, "child two")["id"]]
        assert "1 done" in schema_text(parent_after["awaiting"])
        second_event.set()
        await task

    with_tracker(scenario)


def test_awaited_by_follows_new_waiters() -> None:
    async def scenario(tracker: Tracker) -> None:
        event = asyncio.Event()
        target = asyncio.create_task(event.wait(), name="target")
        await _settle()
        assert list(_record(_build(tracker), "target")["awaited_by"]) == []

        async def waiter() -> None:
            await target

        waiting = asyncio.create_task(waiter(), name="waiting")
        await _settle()
        snapshot = _build(tracker)
        waiting_id = _record(snapshot, "waiting")["id"]
        assert list(_record(snapshot, "target")["awaited_by"]) == [waiting_id]
        event.set()
        await waiting

    with_tracker(scenario)


def test_cache_drops_finished_tasks_and_keeps_nothing_alive() -> None:
    async def scenario(tracker: Tracker) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut_ref = weakref.ref(fut)

        async def holder(waited: asyncio.Future[None]) -> None:
            await waited

        task = asyncio.create_task(holder(fut), name="holder")
        await _settle()
        number = int(_record(_build(tracker), "holder")["id"])
        assert number in _cached_numbers(tracker)
        fut.set_result(None)
        await task
        del fut, task
        gc.collect()
        # THEN the cache kept no strong reference to the future
        assert fut_ref() is None
        _build(tracker)
        assert number not in _cached_numbers(tracker)

    with_tracker(scenario)


def test_cancelled_then_resuspended_task_is_described_again() -> None:
    async def scenario(tracker: Tracker) -> None:
        event = asyncio.Event()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def stubborn() -> None:
            try:
                await event.wait()
            except asyncio.CancelledError:
                await queue.get()

        task = asyncio.create_task(stubborn(), name="stubborn")
        await _settle()
        before = _record(_build(tracker), "stubborn")
        assert before["awaiting"] is not None and before["awaiting"]["kind"] == "event"
        task.cancel()
        await _settle()
        after = _record(_build(tracker), "stubborn")
        assert after["awaiting"] is not None and after["awaiting"]["kind"] == "queue_get"
        assert after["stack"] != before["stack"]
        queue.put_nowait(None)
        await task

    with_tracker(scenario)


def _forget_notes(tracker: Tracker) -> None:
    """What the builder noted for its next look, dropped: the next look starts afresh."""
    for meta in tracker.task_metas().values():
        meta.chain_fut = meta.record = None
    introspect._DESCRIPTION_CACHE.pop(tracker, None)


def _comparable(snapshot: WireSnapshot, seen: bool = True) -> list[Any]:
    """The pending records, without the task taking the snapshot (its line moves); without
    `seen`, also without when a look first found each task where it waits (a look without
    notes finds every task there for the first time)."""
    records = sorted(
        (
            record
            for record in snapshot["tasks"]
            if record["state"] == "pending" and not record.get("running")
        ),
        key=lambda record: int(record["id"]),
    )
    if seen:
        return records
    return [{k: v for k, v in record.items() if k != "waiting_seen_at"} for record in records]


def test_a_look_with_notes_says_what_a_look_afresh_says() -> None:
    """Whatever moved or not, the records a look reuses or rebuilds from its notes are the
    records a look without notes makes, waiters, cycles and countdowns included."""

    async def scenario(tracker: Tracker) -> None:
        gate, queue, lock = asyncio.Event(), asyncio.Queue[int](), asyncio.Lock()
        await lock.acquire()
        peers: dict[str, asyncio.Task[Any]] = {}

        async def waiter() -> None:
            await gate.wait()
            await queue.get()

        async def sleeper(seconds: float) -> None:
            async with asyncio.timeout(seconds * 2):
                await asyncio.sleep(seconds)

        async def awaits(name: str) -> None:
            await gate.wait()
            await peers[name]

        async def locker() -> None:
            async with lock:
                pass

        relay_gate = asyncio.Event()

        async def owner() -> None:
            async with asyncio.TaskGroup() as group:

                async def relay() -> None:  # ends by handing over to a new child
                    await relay_gate.wait()
                    group.create_task(sleeper(150))

                for index in range(3):
                    group.create_task(sleeper(100 + index))
                group.create_task(relay())

        child_gate = asyncio.Event()

        async def gatherer() -> None:
            children = [asyncio.create_task(sleeper(200)), asyncio.create_task(child_gate.wait())]
            await asyncio.gather(*children, return_exceptions=True)

        tasks = [asyncio.create_task(waiter(), name=f"waiter-{index}") for index in range(4)]
        tasks += [asyncio.create_task(sleeper(300 + index)) for index in range(4)]
        tasks += [asyncio.create_task(locker()), asyncio.create_task(owner())]
        tasks.append(asyncio.create_task(gatherer()))
        peers["a"] = asyncio.create_task(asyncio.sleep(500), name="target")
        tasks += [peers["a"], asyncio.create_task(awaits("a"), name="late-waiter")]

        def steps() -> list[Callable[[], None]]:
            return [
                lambda: None,
                gate.set,
                lambda: queue.put_nowait(1),
                child_gate.set,  # a gather child ends: its owner now waits on one task
                relay_gate.set,  # a group's child ends and another starts: as many as before
                lambda: tasks[0].set_name("renamed"),
                lambda: tasks[4].cancel(),
                lambda: lock.release(),
            ]

        for step in steps():
            step()
            await _settle()
            with_notes = SnapshotBuilder(tracker).build_raw()
            _forget_notes(tracker)
            afresh = SnapshotBuilder(tracker).build_raw()
            assert _comparable(with_notes, seen=False) == _comparable(afresh, seen=False)
            assert with_notes["cycles"] == afresh["cycles"]
            # And a second look with the notes just made agrees too, to when the look
            # afresh first found each task where it waits (nothing ran in between).
            again = SnapshotBuilder(tracker).build_raw()
            assert _comparable(again) == _comparable(afresh)
            assert [r["waiting_seen_at"] for r in _comparable(again) if r["awaiting"]] == [
                afresh["taken_at"] for r in _comparable(afresh) if r["awaiting"]
            ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    with_tracker(scenario)


def test_a_look_at_unmoved_tasks_reuses_their_records_without_describing_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The common case of a live server: tasks suspended where they were at the last look
    (asleep, on an event, a queue, a lock, in a TaskGroup) get their last record again, the
    very object, without their chain being walked or a record being compared field by field;
    a task that did change (renamed, under a timeout that counts down, newly awaited) still
    goes the long way and says so."""

    async def scenario(tracker: Tracker) -> None:
        gate, queue, lock = asyncio.Event(), asyncio.Queue[int](), asyncio.Lock()
        await lock.acquire()

        async def locker() -> None:
            async with lock:
                pass

        async def bounded() -> None:
            async with asyncio.timeout(60):
                await gate.wait()

        async def owner() -> None:
            async with asyncio.TaskGroup() as group:
                for _ in range(3):
                    group.create_task(asyncio.sleep(3600))

        plain = [asyncio.create_task(asyncio.sleep(3600 + index)) for index in range(3)]
        plain += [asyncio.create_task(gate.wait()) for _ in range(3)]
        plain += [asyncio.create_task(queue.get()) for _ in range(3)]
        plain += [asyncio.create_task(locker()) for _ in range(3)]
        others = [asyncio.create_task(owner(), name="owner")]
        others.append(asyncio.create_task(bounded(), name="bounded"))
        renamed = asyncio.create_task(gate.wait(), name="before")
        await _settle()
        builder = SnapshotBuilder(tracker)
        builder.build_raw()
        last = {record["id"]: record for record in builder.build_raw()["tasks"]}
        described: list[int] = []
        long_way = introspect._stack_and_awaiting

        def counting(ctx: Any, meta: Any, task: Any, running: bool) -> Any:
            described.append(meta.task_id)
            return long_way(ctx, meta, task, running)

        monkeypatch.setattr(introspect, "_stack_and_awaiting", counting)
        renamed.set_name("after")
        now = SnapshotBuilder(tracker).build_raw()
        ids = {tracker.meta_of(task).task_id for task in plain}  # type: ignore[union-attr]
        names = {record["id"]: record["name"] for record in now["tasks"]}
        # THEN the unmoved tasks, the group's children among them, went the short way
        children = {
            int(record["id"])
            for record in now["tasks"]
            if "owner" in {names[number] for number in record["awaited_by"]}
        }
        assert len(children) == 3
        short_way = ids | children
        # (but the first task waiting on each shared object, which describes it for the rest)
        kinds = [
            record["awaiting"]["kind"]  # type: ignore[index]
            for record in now["tasks"]
            if int(record["id"]) in short_way & set(described)
        ]
        assert len(kinds) == len(set(kinds)) and set(kinds) <= {"event", "queue_get", "lock"}
        assert len(short_way - set(described)) >= len(short_way) - 3
        for record in now["tasks"]:
            if int(record["id"]) in short_way:
                assert record is last[record["id"]]
        # AND the owner (it awaits tasks), the task under a timeout and the renamed one did not
        assert {"owner", "bounded", "after"} <= {names[str(number)] for number in described}
        # AND a look that had to start afresh says the same
        _forget_notes(tracker)
        afresh = SnapshotBuilder(tracker).build_raw()
        assert _comparable(now, seen=False) == _comparable(afresh, seen=False)
        for task in (*plain, *others, renamed):
            task.cancel()
        await asyncio.gather(*plain, *others, renamed, return_exceptions=True)

    with_tracker(scenario)


def test_the_children_of_a_task_group_are_resolved_once_per_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Who awaits a TaskGroup's child is its owner for every child of the group: found once
    per group in a look, and still told apart for an owner that awaits its children (an
    edge, listed in its description) and one still in its `async with` body (no edge)."""

    async def scenario(tracker: Tracker) -> None:
        gate = asyncio.Event()

        async def waiting_owner() -> None:
            async with asyncio.TaskGroup() as group:
                for _ in range(3):
                    group.create_task(gate.wait())

        async def busy_owner() -> None:
            async with asyncio.TaskGroup() as group:
                for _ in range(3):
                    group.create_task(gate.wait())
                await asyncio.sleep(3600)  # still in the body: owns them, awaits no task

        owners = [
            asyncio.create_task(waiting_owner(), name="waiting"),
            asyncio.create_task(busy_owner(), name="busy"),
        ]
        await _settle()
        SnapshotBuilder(tracker).build_raw()
        resolved: list[Any] = []
        resolve = introspect._resolve_waiters

        def counting(fut: Any, *args: Any, **kwargs: Any) -> Any:
            resolved.append(fut)
            return resolve(fut, *args, **kwargs)

        monkeypatch.setattr(introspect, "_resolve_waiters", counting)
        for _look in range(2):
            resolved.clear()
            snapshot = SnapshotBuilder(tracker).build_raw()
            # THEN one resolution per group (and one for the task `asyncio.run` drives)
            assert len([fut for fut in resolved if fut is not asyncio.current_task()]) == 2
            waiting, busy = _record(snapshot, "waiting"), _record(snapshot, "busy")
            children = {
                owner["id"]: sorted(
                    record["id"]
                    for record in snapshot["tasks"]
                    if list(record["awaited_by"]) == [owner["id"]]
                )
                for owner in (waiting, busy)
            }
            assert all(len(ids) == 3 for ids in children.values())
            assert waiting["awaiting"] is not None and busy["awaiting"] is not None
            assert sorted(waiting["awaiting"]["tasks"]) == children[waiting["id"]]
            assert busy["awaiting"]["kind"] == "sleep" and list(busy["awaiting"]["tasks"]) == []
        gate.set()
        for owner in owners:
            owner.cancel()
        await asyncio.gather(*owners, return_exceptions=True)

    with_tracker(scenario)
