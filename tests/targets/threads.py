"""Several threads, each running its own event loop, started after the agent is installed
(the agent is installed here explicitly, before any loop exists)."""

from __future__ import annotations

import asyncio
import threading

from target_kit import signal_ready, stop_requested

import taskscope

taskscope.install()
started = threading.Barrier(4)


async def idle(index: int) -> None:
    child = asyncio.create_task(asyncio.sleep(3600), name=f"child-{index}")
    started.wait()
    while not stop_requested():
        await asyncio.sleep(0.05)
    child.cancel()


def run_loop(index: int) -> None:
    asyncio.run(idle(index))


threads = [threading.Thread(target=run_loop, args=(i,), name=f"loop-{i}") for i in range(3)]
for thread in threads:
    thread.start()
started.wait()
signal_ready()
for thread in threads:
    thread.join()
print("all loops finished")
