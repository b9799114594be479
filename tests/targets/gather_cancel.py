"""asyncio.run drives `main`, which gathers `serve`; `serve` gathers two children, both
without `return_exceptions=True`: cancelling a child passes the cancel up to `main`."""

from __future__ import annotations

import asyncio

from target_kit import note, signal_ready


async def child() -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        note("child cancelled")
        raise


async def serve() -> None:
    await asyncio.gather(
        asyncio.create_task(child(), name="child-1"), asyncio.create_task(child(), name="child-2")
    )


async def main() -> None:
    server = asyncio.create_task(serve(), name="serve")
    await asyncio.sleep(0.05)
    signal_ready()
    try:
        await asyncio.gather(server)
    except asyncio.CancelledError:
        note("main cancelled")
        raise


asyncio.run(main())
