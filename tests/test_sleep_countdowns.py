"""A sleep's seconds left when the look did not find its timer among the loop's: a task that
began its sleep after the look read the loop's timers (the look runs beside the loop, which
goes on meanwhile) is told by the handle its sleep holds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskscope.agent.awaiting import AwaitContext
from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.tracker import Tracker
from taskscope.protocol import materialize_record
from tests.helpers import with_tracker


def test_a_sleep_begun_after_the_timers_were_read_still_counts_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a look that reads the loop's timers before the task's sleep began (made here by a
    # reading of the timers that finds none)
    monkeypatch.setattr(AwaitContext, "index_timers", lambda self, loop: None)

    async def scenario(tracker: Tracker) -> None:
        task = asyncio.create_task(asyncio.sleep(120), name="napper")
        await asyncio.sleep(0)
        snapshot: Any = SnapshotBuilder(tracker).build_raw()
        [record] = [task for task in snapshot["tasks"] if task["name"] == "napper"]
        shown = materialize_record(record, asyncio.get_running_loop().time())
        # THEN its description still says how long is left
        assert shown["awaiting"] is not None and shown["awaiting"]["kind"] == "sleep"
        assert 100 < shown["awaiting"]["seconds_left"] <= 120
        task.cancel()

    with_tracker(scenario)
