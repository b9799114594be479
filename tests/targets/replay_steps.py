"""Tasks that change on cue, for recording and replay tests: `keeper` sleeps 90 s (so its
countdown is said to a tenth), `waiter` awaits an Event that a `finish-PID` file sets
(then it finishes and `finished-PID` appears), `ticker` wakes every 0.05 s so that every
update of a subscription has a change."""

from __future__ import annotations

import asyncio
import os

from target_kit import WORKDIR, signal_ready, stop_requested


async def wait_for_cue(cue: asyncio.Event) -> str:
    await cue.wait()
    return "cued"


async def tick() -> None:
    while True:
        await asyncio.sleep(0.05)


async def main() -> None:
    cue = asyncio.Event()
    keeper = asyncio.create_task(asyncio.sleep(90), name="keeper")
    waiter = asyncio.create_task(wait_for_cue(cue), name="waiter")
    ticker = asyncio.create_task(tick(), name="ticker")
    signal_ready()
    finish = WORKDIR / f"finish-{os.getpid()}"
    while not stop_requested():
        await asyncio.sleep(0.02)
        if finish.exists() and not cue.is_set():
            cue.set()
            await waiter
            (WORKDIR / f"finished-{os.getpid()}").write_text("ok")
    for task in (keeper, ticker):
        task.cancel()


asyncio.run(main())
