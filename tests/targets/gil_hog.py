"""A loop thread that holds the GIL in one C call (libc sleep through ctypes.PyDLL, which
keeps the GIL) for argv[2] seconds once a `hog-PID` file appears; notes when it starts."""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys

from target_kit import WORKDIR, note, signal_ready, until_stopped

SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 4


async def hog() -> None:
    request = WORKDIR / f"hog-{os.getpid()}"
    while not request.exists():
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # a heartbeat on time first
    note("hogging")
    ctypes.PyDLL(None).sleep(SECONDS)
    note("released")


async def main() -> None:
    asyncio.create_task(hog(), name="hog")
    asyncio.create_task(asyncio.sleep(3600), name="bystander")
    signal_ready()
    await until_stopped()


asyncio.run(main())
