"""A busy service's tasks: a hundred short requests every few milliseconds, and among them a
task that fails and is never awaited (`lost-failure`). It is ready once far more tasks have
ended after the failure than the history keeps (the test sets TASKSCOPE_HISTORY=50), and
goes on ending tasks at that pace."""

from __future__ import annotations

import asyncio

from target_kit import signal_ready, until_stopped


async def request() -> None:
    await asyncio.sleep(0)


async def fail() -> None:
    raise ValueError("a row nobody reads")


async def serve() -> None:
    while True:
        for _ in range(100):
            asyncio.create_task(request())
        await asyncio.sleep(0.005)


async def main() -> None:
    asyncio.create_task(fail(), name="lost-failure")
    server = asyncio.create_task(serve(), name="server")
    await asyncio.sleep(0.5)  # 10,000 requests ended since the failure
    signal_ready()
    await until_stopped()
    server.cancel()


asyncio.run(main())
