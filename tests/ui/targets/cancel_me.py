"""A target for the end-to-end test: a few named tasks, one of which ("victim") writes a file
when it is cancelled, so the test can check the cancellation in the target itself.

Usage: cancel_me.py WORKDIR. Writes WORKDIR/ready-PID when its tasks run, and
WORKDIR/cancelled-PID when "victim" gets CancelledError. Runs until killed.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path


async def victim(workdir: Path) -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        (workdir / f"cancelled-{os.getpid()}").write_text("victim cancelled\n")
        raise


async def bystander() -> None:
    ticks = 0
    while True:
        await asyncio.sleep(0.2)
        ticks += 1


async def main(workdir: Path) -> None:
    tasks = [asyncio.create_task(bystander(), name=f"bystander-{n}") for n in range(1, 4)]
    tasks.append(asyncio.create_task(victim(workdir), name="victim"))
    await asyncio.sleep(0)
    (workdir / f"ready-{os.getpid()}").write_text("ready\n")
    await asyncio.gather(*tasks, return_exceptions=True)
    # The victim is gone; keep the process alive for the dashboard until the test kills it.
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
