"""A loop busy in steps of Python of a few milliseconds back to back (argv[2]: their length
in ms), an `await asyncio.sleep(0)` between them: the program that keeps a second thread from
the GIL. A length of 0 makes it idle instead: it sleeps 50 ms between its looks. argv[3],
when given, is a switch interval the program sets first. The program notes its switch
interval when it starts and whenever it changes (`interval 0.005`)."""

from __future__ import annotations

import asyncio
import sys
import time

from target_kit import note, signal_ready, stop_requested

STEP = float(sys.argv[2]) / 1000
if len(sys.argv) > 3:
    sys.setswitchinterval(float(sys.argv[3]))


async def busy() -> None:
    noted = sys.getswitchinterval()
    note(f"interval {noted}")
    checked = time.perf_counter()
    while True:
        until = time.perf_counter() + STEP
        while time.perf_counter() < until:
            pass
        await asyncio.sleep(0 if STEP else 0.05)
        if time.perf_counter() - checked > 0.05:  # a look at the world every 50 ms
            checked = time.perf_counter()
            if sys.getswitchinterval() != noted:
                noted = sys.getswitchinterval()
                note(f"interval {noted}")
            if stop_requested():
                return


async def main() -> None:
    task = asyncio.create_task(busy(), name="busy")
    signal_ready()
    await task


asyncio.run(main())
