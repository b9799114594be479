"""Tasks that end before the agent's first look, so that the agent never sees them pending:
their history records come from the notes taken at their creation and end alone. Made two
calls deep (main -> spawn), with a result, none, a cancellation and a failure."""

from __future__ import annotations

import asyncio

from target_kit import signal_ready, until_stopped


async def answer() -> int:
    await asyncio.sleep(0)
    return 42


async def nothing() -> None:
    await asyncio.sleep(0)


async def stuck() -> None:
    await asyncio.sleep(3600)


async def failing() -> None:
    await asyncio.sleep(0)
    raise ValueError("bad row")


async def spawn() -> list[asyncio.Task[object]]:
    made = [
        asyncio.create_task(answer(), name="unseen-answer"),
        asyncio.create_task(nothing(), name="unseen-none"),
        asyncio.create_task(stuck(), name="unseen-cancelled"),
        asyncio.create_task(failing(), name="unseen-failing"),
    ]
    await asyncio.sleep(0)
    made[2].cancel()
    await asyncio.gather(*made, return_exceptions=True)
    return made


async def main() -> None:
    await spawn()
    signal_ready()
    await until_stopped()


asyncio.run(main())
