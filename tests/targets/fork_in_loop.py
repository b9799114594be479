"""A plain program (no agent) that forks from inside a coroutine; the child starts a loop of
its own there, leaving the parent's loop frozen in its memory. Notes the child's pid; both
signal ready and run until asked to stop."""

from __future__ import annotations

import asyncio
import os

from target_kit import note, signal_ready, until_stopped


async def child_main() -> None:
    asyncio.create_task(asyncio.sleep(3600), name="child-worker")
    signal_ready()
    await until_stopped()


async def main() -> None:
    asyncio.create_task(asyncio.sleep(3600), name="parent-worker")
    await asyncio.sleep(0.05)
    pid = os.fork()
    if pid == 0:
        asyncio.run(child_main())
        os._exit(0)
    note(f"forked {pid}")
    signal_ready()
    await until_stopped()
    os.waitpid(pid, 0)


asyncio.run(main())
