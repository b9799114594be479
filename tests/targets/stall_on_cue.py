"""A target that blocks its loop on cue, for recording tests of stalls: `indexer` waits for a
`stall-PID` file, then holds the loop 300 ms in `rebuild_index` (a blocking `time.sleep`) and
writes `stalled-PID`; `ticker` wakes every 0.05 s so that every update has a change."""

from __future__ import annotations

import asyncio
import os
import time

from target_kit import WORKDIR, signal_ready, stop_requested


def rebuild_index() -> None:
    time.sleep(0.3)  # the blocking line


async def indexer() -> None:
    cue = WORKDIR / f"stall-{os.getpid()}"
    while not cue.exists():
        await asyncio.sleep(0.02)
    rebuild_index()
    (WORKDIR / f"stalled-{os.getpid()}").write_text("ok")
    await asyncio.sleep(3600)


async def tick() -> None:
    while True:
        await asyncio.sleep(0.05)


async def main() -> None:
    tasks = [
        asyncio.create_task(indexer(), name="indexer"),
        asyncio.create_task(tick(), name="ticker"),
    ]
    signal_ready()
    while not stop_requested():
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()


asyncio.run(main())
