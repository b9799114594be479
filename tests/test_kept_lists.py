"""A look's large containers that leave it are kept and filled again, so that the host's
collector finds them old (`_HandedOutLists`, `_SPARE_SLEEPS` in taskscope/agent/introspect.py),
and never while somebody still holds them."""

from __future__ import annotations

import asyncio
import gc
import threading
from types import FrameType

import pytest

from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.tracker import Tracker
from tests.helpers import with_tracker


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
    pytest.importorskip("trio")  # a look searches for trio's runs only once it is imported

    async def scenario(tracker: Tracker) -> None:
        sleeper = asyncio.create_task(asyncio.sleep(3600), name="sleeper")
        await asyncio.sleep(0)
        _look_without_frames_left(tracker, "sleeper")
        sleeper.cancel()

    with_tracker(scenario)
