"""Two tasks that await each other (a deadlock), and notes of how each one ends."""

from __future__ import annotations

import asyncio

from target_kit import note, signal_ready, until_stopped

tasks: dict[str, asyncio.Task[None]] = {}


async def partner(me: str, other: str) -> None:
    await asyncio.sleep(0)
    try:
        await tasks[other]
    except asyncio.CancelledError:
        note(f"{me} cancelled")
        raise
    except BaseException as error:  # the partner's cancellation arrives as its exception
        note(f"{me} saw {type(error).__name__}")


async def main() -> None:
    tasks["cycle-a"] = asyncio.create_task(partner("cycle-a", "cycle-b"), name="cycle-a")
    tasks["cycle-b"] = asyncio.create_task(partner("cycle-b", "cycle-a"), name="cycle-b")
    await asyncio.sleep(0.05)
    signal_ready()
    await until_stopped()
    note("main still healthy")


asyncio.run(main())
