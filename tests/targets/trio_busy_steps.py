"""A trio run busy in steps of Python of a few milliseconds back to back (argv[2]: their length
in ms), a checkpoint (`trio.sleep(0)`) between them: the program that keeps a second thread
from the GIL, with no asyncio loop whose heartbeat would see it. It notes its switch interval
when it starts and whenever it changes (`interval 0.005`)."""

from __future__ import annotations

import sys
import time

import trio
from target_kit import note, signal_ready, stop_requested

STEP = float(sys.argv[2]) / 1000


async def busy() -> None:
    noted = sys.getswitchinterval()
    note(f"interval {noted}")
    checked = stop_checked = time.perf_counter()
    while True:
        until = time.perf_counter() + STEP
        while time.perf_counter() < until:
            pass
        await trio.sleep(0)
        if time.perf_counter() - checked > 0.05:  # its interval every 50 ms
            checked = time.perf_counter()
            if sys.getswitchinterval() != noted:
                noted = sys.getswitchinterval()
                note(f"interval {noted}")
        # The stop file every 2 s only: a system call drops the GIL long enough for the
        # agent's thread to take it, which would end its starvation for a while.
        if time.perf_counter() - stop_checked > 2:
            stop_checked = time.perf_counter()
            if stop_requested():
                return


async def main() -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(busy, name="busy")
        signal_ready()


trio.run(main)
