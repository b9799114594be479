"""Counts the agent's whole reads of the task registry (`asyncio.all_tasks`, which it calls
through the package) as notes, and makes tasks on request: `spawn-PID` makes two through
create_task, `direct-PID` one by calling asyncio.Task() (no create_task), which then makes one
through create_task, `loop-PID` starts a second event loop in a thread with a task of its own.

    registry_reads.py WORKDIR
"""

from __future__ import annotations

import asyncio
import os
import threading

from target_kit import WORKDIR, note, signal_ready, until_stopped

whole_read = asyncio.all_tasks


def counted(loop: asyncio.AbstractEventLoop | None = None) -> set[asyncio.Task[object]]:
    note("whole read")
    return whole_read(loop)


asyncio.all_tasks = counted  # the agent's look calls it as asyncio.all_tasks


async def sleeper() -> None:
    await asyncio.sleep(3600)


async def direct_parent() -> None:
    await asyncio.sleep(0.05)
    asyncio.create_task(sleeper(), name="child-of-direct")
    await asyncio.sleep(3600)


def second_loop() -> None:
    async def side() -> None:
        asyncio.create_task(sleeper(), name="side-sleeper")
        await asyncio.sleep(3600)

    asyncio.run(side())


async def main() -> None:
    asyncio.create_task(sleeper(), name="first-sleeper")
    short = asyncio.create_task(asyncio.sleep(0), name="short-lived")
    await short
    signal_ready()
    spawn, loop = WORKDIR / f"spawn-{os.getpid()}", WORKDIR / f"loop-{os.getpid()}"
    direct = WORKDIR / f"direct-{os.getpid()}"
    made: list[asyncio.Task[None]] = []
    while True:
        if spawn.exists():
            spawn.unlink()
            for n in (1, 2):
                asyncio.create_task(sleeper(), name=f"spawned-{n}")
            note("spawned")
        if direct.exists():
            direct.unlink()
            made.append(asyncio.Task(direct_parent(), name="direct-parent"))
            note("direct made")
        if loop.exists():
            loop.unlink()
            threading.Thread(target=second_loop, name="side-loop", daemon=True).start()
            note("loop started")
        await asyncio.sleep(0.02)
        if (WORKDIR / f"stop-{os.getpid()}").exists():
            break
    await until_stopped()


asyncio.run(main())
