"""What keeps the agent's looks from stalling the host's loop: the GIL is given away between
slices of work, and a large snapshot is encoded and sent in pieces (no call makes the whole
line at once). The figures are benchmarks/host_cost.py's; these tests check the mechanisms."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from taskscope import protocol
from taskscope.agent import introspect
from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.tracker import Tracker
from taskscope.protocol import CompactDecoder, CompactEncoder, encode, slicing


async def _many_tasks(count: int) -> tuple[Tracker, list[asyncio.Task[Any]], asyncio.Event]:
    tracker = Tracker()
    tracker.install()
    gate = asyncio.Event()
    queue: asyncio.Queue[int] = asyncio.Queue()

    async def waiter() -> None:
        await gate.wait()

    async def sleeper(seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def consumer() -> None:
        await queue.get()

    tasks = []
    for index in range(count):
        kind = index % 3
        coro = waiter() if kind == 0 else sleeper(100 + index) if kind == 1 else consumer()
        tasks.append(asyncio.create_task(coro, name=f"t{index}"))
    await asyncio.sleep(0.01)
    return tracker, tasks, gate


async def _finish(tracker: Tracker, tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tracker.uninstall()


def _count_give_ways(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every `time.sleep` of the agent, with a slice so short that each check gives way."""
    calls: list[float] = []
    real_sleep = time.sleep

    def recording_sleep(seconds: float) -> None:
        calls.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(slicing, "SLICE_SECONDS", 0.0)
    monkeypatch.setattr(time, "sleep", recording_sleep)
    return calls


def test_a_look_gives_the_gil_away_between_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        tracker, tasks, _gate = await _many_tasks(3000)
        calls = _count_give_ways(monkeypatch)
        # WHEN the agent builds a snapshot of 3,000 tasks and encodes it
        snapshot = SnapshotBuilder(tracker).build_raw()
        built = len(calls)
        CompactEncoder().encode({"type": "snapshot", "snapshot": snapshot})
        monkeypatch.undo()
        # THEN it gave the GIL away (sleep(0)) every 64 tasks while building, and while
        # encoding the rows too
        assert built >= 3000 // 64 - 1
        assert len(calls) > built + 3000 // 128 - 1
        assert set(calls) == {0}
        await _finish(tracker, tasks)

    asyncio.run(main())


def test_a_large_snapshot_goes_in_pieces_that_make_the_same_line() -> None:
    async def main() -> None:
        tracker, tasks, _gate = await _many_tasks(2 * protocol.CHUNK_ROWS + 500)
        snapshot = SnapshotBuilder(tracker).build_raw()
        message = {"type": "snapshot", "snapshot": snapshot, "re": 3}
        # WHEN a snapshot of more rows than a piece holds is encoded in pieces
        chunks = CompactEncoder().encode_chunks(message)
        # THEN there are several, none holding more than a piece's rows, and together they
        # are one line that expands to the plain records
        assert len(chunks) >= 3
        line = b"".join(chunks)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert line == CompactEncoder().encode(message)
        decoded = CompactDecoder().message(json.loads(line))
        assert decoded == json.loads(encode(protocol_plain(message)))
        assert max(len(chunk) for chunk in chunks) < len(line) / 2
        await _finish(tracker, tasks)

    asyncio.run(main())


def protocol_plain(message: dict[str, Any]) -> dict[str, Any]:
    return {**message, "snapshot": protocol.materialize_body(message["snapshot"], "tasks")}


def test_the_lists_a_look_reuses_keep_no_task_and_no_snapshot_changes() -> None:
    async def main() -> None:
        tracker, tasks, _gate = await _many_tasks(300)
        builder = SnapshotBuilder(tracker)
        # WHEN two looks are made, and the tasks then finish and are dropped
        first = builder.build_raw()
        first_ids = [record["id"] for record in first["tasks"]]
        extra = asyncio.create_task(asyncio.sleep(100), name="extra")
        await asyncio.sleep(0)
        second = builder.build_raw()
        # THEN the first snapshot is as it was (the second look did not reuse its list)
        assert [record["id"] for record in first["tasks"]] == first_ids
        assert first["tasks"] is not second["tasks"]
        assert len(second["tasks"]) == len(first["tasks"]) + 1
        # AND the lists it reuses hold no task between looks
        assert all(not scratch for scratch in introspect._SCRATCH._lists)
        await _finish(tracker, [*tasks, extra])

    asyncio.run(main())
