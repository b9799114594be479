"""A target for the end-to-end test of issue 12 in the dashboard: a task (`indexer`) that
blocks its loop 300 ms once, in `rebuild_index`, and two tasks deadlocked on two locks
(`transfer-a` holds `first` and waits for `second`, `transfer-b` the other way round), and
a healthy `idler` that sleeps.

Usage: stall_and_deadlock.py WORKDIR. Writes WORKDIR/ready-PID once the stall is over and both
transfers wait. Runs until killed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path


def rebuild_index() -> None:
    time.sleep(0.3)  # the blocking line


async def indexer(done: asyncio.Event) -> None:
    await asyncio.sleep(0.2)
    rebuild_index()
    done.set()
    await asyncio.sleep(3600)


async def transfer(mine: asyncio.Lock, theirs: asyncio.Lock, both_hold: asyncio.Event) -> None:
    async with mine:
        await both_hold.wait()
        async with theirs:
            pass


async def idler() -> None:
    await asyncio.sleep(3600)


async def main(workdir: Path) -> None:
    indexed = asyncio.Event()
    first, second = asyncio.Lock(), asyncio.Lock()
    both_hold = asyncio.Event()
    tasks = [
        asyncio.create_task(indexer(indexed), name="indexer"),
        asyncio.create_task(transfer(first, second, both_hold), name="transfer-a"),
        asyncio.create_task(transfer(second, first, both_hold), name="transfer-b"),
        asyncio.create_task(idler(), name="idler"),
    ]
    while not (first.locked() and second.locked()):
        await asyncio.sleep(0.01)
    both_hold.set()
    await indexed.wait()
    while len(first._waiters or ()) != 1 or len(second._waiters or ()) != 1:
        await asyncio.sleep(0.01)
    (workdir / f"ready-{os.getpid()}").write_text("ready\n")
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
