"""An exhausted connection pool: a BoundedSemaphore(3) whose permits `conn-0` and `conn-1`
hold in the body of `async with pool:` (one of them a call deeper) and `leaky` took with
`acquire()` and never gave back, and two tasks, `request-0` and `request-1`, waiting to enter.
Ready once both wait."""

from __future__ import annotations

import asyncio

from target_kit import signal_ready, until_stopped


async def use(pool: asyncio.BoundedSemaphore, forever: asyncio.Event) -> None:
    async with pool:
        await forever.wait()


async def use_deeper(pool: asyncio.BoundedSemaphore, forever: asyncio.Event) -> None:
    await use(pool, forever)


async def leak(pool: asyncio.BoundedSemaphore, forever: asyncio.Event) -> None:
    await pool.acquire()
    await forever.wait()


async def main() -> None:
    pool = asyncio.BoundedSemaphore(3)
    forever = asyncio.Event()
    tasks = [
        asyncio.create_task(use(pool, forever), name="conn-0"),
        asyncio.create_task(use_deeper(pool, forever), name="conn-1"),
        asyncio.create_task(leak(pool, forever), name="leaky"),
    ]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(use(pool, forever), name=f"request-{i}") for i in range(2)]
    while len(pool._waiters or ()) != 2:  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)
    signal_ready()
    await until_stopped()
    for task in tasks:
        task.cancel()


asyncio.run(main())
