"""A loop that blocks itself: once ready, a coroutine calls time.sleep (argv[2] seconds)."""

from __future__ import annotations

import asyncio
import sys
import time

from target_kit import signal_ready, until_stopped


async def hog(seconds: float) -> None:
    await asyncio.sleep(0.3)  # let the agent's heartbeat run once first
    time.sleep(seconds)


async def main() -> None:
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    hog_task = asyncio.create_task(hog(seconds), name="hog")
    asyncio.create_task(asyncio.sleep(3600), name="bystander")
    signal_ready()
    await hog_task
    print("unblocked")
    await until_stopped()


asyncio.run(main())
