"""Finishes many short tasks (argv[2], default 20) before signalling ready, then starts one
more long task each time the test drops a `spawn-PID` file: for history and id tests. With
argv[3], that many more sleepers whose end times are spread over fractions of a second."""

from __future__ import annotations

import asyncio
import os
import sys

from target_kit import WORKDIR, signal_ready, stop_requested


async def short(index: int) -> int:
    await asyncio.sleep(0)
    return index


async def main() -> None:
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    await asyncio.gather(*(asyncio.create_task(short(i), name=f"short-{i}") for i in range(count)))
    asyncio.create_task(asyncio.sleep(3600), name="long-0")
    sleepers = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    for index in range(sleepers):
        asyncio.create_task(asyncio.sleep(3600 + index * 0.0137), name=f"sleeper-{index}")
    # One turn of the loop: every task made above runs its first step, so that a look taken
    # once ready finds the sleepers asleep (not about to be, which a later look would resend).
    await asyncio.sleep(0)
    signal_ready()
    spawn = WORKDIR / f"spawn-{os.getpid()}"
    spawned = 0
    while not stop_requested():
        await asyncio.sleep(0.02)
        if spawn.exists():
            spawn.unlink()
            spawned += 1
            asyncio.create_task(asyncio.sleep(3600), name=f"long-{spawned}")
            (WORKDIR / f"spawned-{os.getpid()}-{spawned}").write_text("ok")


asyncio.run(main())
