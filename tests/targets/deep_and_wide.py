"""Tasks as a recursion makes them and as other languages name them: a chain of coroutines
deeper than the agent sends whole (`DEEP`), one that it sends whole (`SHALLOW`), and tasks
named in characters that take two terminal cells each."""

from __future__ import annotations

import asyncio

from target_kit import signal_ready, until_stopped

DEEP = 300
SHALLOW = 20


async def descend(levels: int) -> None:
    if levels == 0:
        await asyncio.sleep(3600)
    else:
        await descend(levels - 1)


async def main() -> None:
    asyncio.create_task(descend(DEEP), name="deep")
    asyncio.create_task(descend(SHALLOW), name="shallow")
    asyncio.create_task(asyncio.sleep(3600), name="名前の長いタスク")
    asyncio.create_task(asyncio.sleep(3600), name="plain")
    await asyncio.sleep(0)
    signal_ready()
    await until_stopped()


asyncio.run(main())
