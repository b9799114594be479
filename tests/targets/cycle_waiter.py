"""A task C awaiting a member of an await cycle (A awaits B, B awaits A), and how each ends."""

from __future__ import annotations

import asyncio
import os

from target_kit import note, signal_ready, until_stopped

tasks: dict[str, asyncio.Task[None]] = {}


async def partner(me: str, other: str) -> None:
    await asyncio.sleep(0)
    try:
        await tasks[other]
    except asyncio.CancelledError:
        note(f"{me} cancelled")
        raise
    except BaseException as error:
        note(f"{me} saw {type(error).__name__}")


async def waiter() -> None:
    try:
        await tasks["cycle-a"]
    except asyncio.CancelledError:
        note("waiter-c cancelled")
        raise
    except BaseException as error:
        note(f"waiter-c saw {type(error).__name__}")


async def main() -> None:
    tasks["cycle-a"] = asyncio.create_task(partner("cycle-a", "cycle-b"), name="cycle-a")
    tasks["cycle-b"] = asyncio.create_task(partner("cycle-b", "cycle-a"), name="cycle-b")
    tasks["waiter-c"] = asyncio.create_task(waiter(), name="waiter-c")
    await asyncio.sleep(0.05)
    signal_ready()
    await until_stopped()
    note(f"main still healthy, cycle-a cancelling={tasks['cycle-a'].cancelling()}")
    # asyncio.run would cancel the cycle on the way out, and recurse: leave at once instead.
    os._exit(0)


asyncio.run(main())
