"""A look's large containers that leave it are kept and filled again, so that the host's
collector finds them old (`_HandedOutLists`, `_SPARE_SLEEPS` in taskscope/agent/introspect.py),
and never while somebody still holds them."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import threading
import weakref
from types import FrameType

import pytest

from taskscope.agent.introspect import SnapshotBuilder, _HandedOutLists
from taskscope.agent.tracker import Tracker
from taskscope.protocol import CompactEncoder, countdown_parts
from tests.helpers import with_tracker


def _ids(snapshot: dict[str, object]) -> list[str]:
    return [record["id"] for record in snapshot["tasks"]]  # type: ignore[attr-defined,index]


def test_a_snapshot_still_held_keeps_its_tasks_through_later_looks() -> None:
    async def scenario(tracker: Tracker) -> None:
        builder = SnapshotBuilder(tracker)
        sleepers = [asyncio.create_task(asyncio.sleep(3600)) for _ in range(5)]
        await asyncio.sleep(0)
        held = builder.build_raw()  # GIVEN a snapshot a client still holds
        held_ids = _ids(held)
        # WHEN tasks come and go and the agent looks three times more
        for round_ in range(3):
            sleepers.append(asyncio.create_task(asyncio.sleep(3600), name=f"late-{round_}"))
            sleepers.pop(0).cancel()
            await asyncio.sleep(0)
            later = builder.build_raw()
            assert later["tasks"] is not held["tasks"]
        # THEN the held snapshot lists the very tasks it listed
        assert _ids(held) == held_ids
        for task in sleepers:
            task.cancel()

    with_tracker(scenario)


def test_a_snapshot_nobody_holds_gives_its_list_to_a_later_look() -> None:
    async def scenario(tracker: Tracker) -> None:
        from taskscope.agent import introspect

        builder = SnapshotBuilder(tracker)
        sleepers = [asyncio.create_task(asyncio.sleep(3600)) for _ in range(5)]
        await asyncio.sleep(0)
        first = builder.build_raw()
        second = builder.build_raw()
        del first, second  # GIVEN the snapshots' holders are done with them
        kept = [id(kept) for kept in introspect._HANDED_OUT[tracker]._lists]  # the pool holds them
        extra = asyncio.create_task(asyncio.sleep(3600), name="extra")
        await asyncio.sleep(0)
        # WHEN the agent looks again
        third = builder.build_raw()
        # THEN a kept list holds this look's tasks, and only them
        assert id(third["tasks"]) in kept
        names = [record["name"] for record in third["tasks"]]  # type: ignore[attr-defined]
        assert "extra" in names
        assert len(names) == len(set(_ids(third))) == len(asyncio.all_tasks())
        extra.cancel()
        for task in sleepers:
            task.cancel()

    with_tracker(scenario)


def test_an_uninstalled_agent_keeps_no_tracker_and_no_records_with_trio_imported() -> None:
    """A trio watch holds its tracker, and the registry of watches (weak keys) held the watch:
    once trio was imported and the agent had looked, an uninstalled agent's tracker, its
    history, task metadata and kept lists lived on for ever."""
    pytest.importorskip("trio", reason="this test needs trio (pip install trio)")
    import taskscope
    from taskscope.agent import _state, introspect

    left: list[weakref.ref[object]] = []

    async def main() -> None:
        taskscope.install()
        tracker = _state["tracker"]
        sleeper = asyncio.create_task(asyncio.sleep(3600))
        await asyncio.sleep(0)
        SnapshotBuilder(tracker).build_raw()  # GIVEN an agent that looked, trio imported
        left.extend([weakref.ref(tracker), weakref.ref(introspect._HANDED_OUT[tracker])])
        taskscope.uninstall()  # WHEN it is uninstalled
        sleeper.cancel()

    asyncio.run(main())
    gc.collect()
    # THEN neither its tracker nor the records of its last looks are kept
    assert [ref() for ref in left] == [None, None]


def test_the_pool_fills_a_list_only_when_nobody_else_holds_it() -> None:
    pool = _HandedOutLists()
    first = pool.filled_with([{"id": "1"}])  # type: ignore[list-item]
    second = pool.filled_with([{"id": "2"}])  # type: ignore[list-item]
    assert second is not first  # `first` is still held here
    third = pool.filled_with([{"id": "3"}])  # type: ignore[list-item]
    assert third is not first and third is not second
    assert first == [{"id": "1"}] and second == [{"id": "2"}]
    kept = id(second)  # the pool holds it: the id stays its own
    del first, second
    fourth = pool.filled_with([{"id": "4"}])  # type: ignore[list-item]
    assert id(fourth) == kept  # the kept list nobody holds now; `third` is still held
    assert third == [{"id": "3"}] and fourth == [{"id": "4"}]


def test_a_sleeps_description_is_untracked_and_its_end_travels_as_the_pair() -> None:
    """A look makes a description per new sleep end (one per task that moved, on a server):
    holding the end alone, not in a tuple, it is no object more for the young collections
    and the full collection's count on 3.11-3.13, where a dictionary of untracked values is
    untracked (from 3.14 every dictionary is tracked)."""

    async def scenario(tracker: Tracker) -> None:
        builder = SnapshotBuilder(tracker)
        sleeper = asyncio.create_task(asyncio.sleep(3600), name="sleeper")
        await asyncio.sleep(0)
        snap = builder.build_raw()
        [record] = [r for r in snap["tasks"] if r["name"] == "sleeper"]  # type: ignore[attr-defined]
        awaiting = record["awaiting"]
        assert awaiting["kind"] == "sleep" and type(awaiting["countdown"]) is float
        if sys.version_info < (3, 14):
            assert not gc.is_tracked(awaiting)
        # AND on the wire it is the pair, [end, null], as before
        text = CompactEncoder().encode({"type": "snapshot", "snapshot": snap})
        wire = json.loads(text)["snapshot"]["awaits"]
        assert [awaiting["countdown"], None] in [item.get("countdown") for item in wire]
        sleeper.cancel()

    with_tracker(scenario)


def test_a_look_reuses_the_sleeps_map_of_the_look_before_last() -> None:
    async def scenario(tracker: Tracker) -> None:
        from taskscope.agent import introspect

        builder = SnapshotBuilder(tracker)
        sleepers = [asyncio.create_task(asyncio.sleep(3600 + index)) for index in range(4)]
        await asyncio.sleep(0)
        builder.build_raw()
        first_sleeps = introspect._DESCRIPTION_CACHE[tracker][1]
        assert len(first_sleeps) == 4
        builder.build_raw()
        assert introspect._SPARE_SLEEPS[tracker] is first_sleeps and not first_sleeps
        # WHEN a third look runs, with a new sleeper
        sleepers.append(asyncio.create_task(asyncio.sleep(7200), name="new-sleeper"))
        await asyncio.sleep(0)
        third = builder.build_raw()
        # THEN it fills that map again, and every sleep is described by its own end
        assert introspect._DESCRIPTION_CACHE[tracker][1] is first_sleeps
        assert len(first_sleeps) == 5
        ends = sorted(
            countdown_parts(record["awaiting"]["countdown"])[0]  # type: ignore[index]
            for record in third["tasks"]  # type: ignore[attr-defined]
            if record["awaiting"] and record["awaiting"]["kind"] == "sleep"  # type: ignore[index]
        )
        assert len(set(ends)) == 5
        for task in sleepers:
            task.cancel()

    with_tracker(scenario)


def _look_frames() -> list[FrameType]:
    return [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, FrameType) and obj.f_code.co_name in ("_build_raw", "build_raw")
    ]


def _look_without_frames_left(tracker: Tracker, expect_in_record: str) -> None:
    """A look, with the collector off; none of the look's frames may outlive it."""
    gc.collect()
    gc.disable()  # no collection frees a cycle behind the test's back
    try:
        snapshot = SnapshotBuilder(tracker).build_raw()
        assert expect_in_record in str(snapshot["tasks"])
        del snapshot
        assert _look_frames() == []
    finally:
        gc.enable()


def test_a_look_at_a_task_waiting_on_an_executor_leaves_none_of_its_frames_alive() -> None:
    """The search of the threads' stacks for executor work items kept its own thread's frame
    in a local: a reference cycle, by which the look's frames and their locals (its snapshot,
    the host's loops) lived until the collector's next full pass."""

    async def scenario(tracker: Tracker) -> None:
        release = threading.Event()
        loop = asyncio.get_running_loop()
        waiter = asyncio.create_task(asyncio.wait_for(loop.run_in_executor(None, release.wait), 60))
        await asyncio.sleep(0.05)
        try:
            _look_without_frames_left(tracker, "executor")
        finally:
            release.set()
            await waiter

    with_tracker(scenario)


def test_a_look_with_trio_imported_leaves_none_of_its_frames_alive() -> None:
    """The same for the search of the threads' stacks for trio's runs."""
    # A look searches for trio's runs only once trio is imported.
    pytest.importorskip("trio", reason="this test needs trio (pip install trio)")

    async def scenario(tracker: Tracker) -> None:
        sleeper = asyncio.create_task(asyncio.sleep(3600), name="sleeper")
        await asyncio.sleep(0)
        _look_without_frames_left(tracker, "sleeper")
        sleeper.cancel()

    with_tracker(scenario)
