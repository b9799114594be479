"""A trio program on a `MockClock` that jumps ahead once the run has been idle for 0.5 s:
three sleeps of 100 s end within about 1.5 s, then it notes `slept` and waits for the stop
file. A run woken more often than every 0.5 s (by a heartbeat) would never jump."""

from __future__ import annotations

import time

import trio
import trio.testing
from target_kit import note, signal_ready, stop_requested


async def main() -> None:
    signal_ready()
    for _ in range(3):
        await trio.sleep(100)
    note("slept")
    while not stop_requested():
        await trio.to_thread.run_sync(time.sleep, 0.05)


trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0.5))
