"""asyncio on the main thread and trio on another, in one process: `asyncio-sleeper` and
`trio-sleeper` each sleep for an hour; ends when the stop file appears."""

from __future__ import annotations

import asyncio
import threading

import trio
import trio.testing
from target_kit import signal_ready, stop_requested, until_stopped


async def trio_main(started: threading.Event) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep, 3600, name="trio-sleeper")
        # Ready once the sleeper sleeps (start_soon only schedules it)
        await trio.testing.wait_all_tasks_blocked()
        started.set()
        while not stop_requested():
            await trio.sleep(0.05)
        nursery.cancel_scope.cancel()


async def main() -> None:
    started = threading.Event()
    thread = threading.Thread(target=trio.run, args=(trio_main, started), name="trio-thread")
    thread.start()
    sleeper = asyncio.create_task(asyncio.sleep(3600), name="asyncio-sleeper")
    await asyncio.to_thread(started.wait)
    signal_ready()
    await until_stopped()
    sleeper.cancel()
    await asyncio.to_thread(thread.join)


asyncio.run(main())
