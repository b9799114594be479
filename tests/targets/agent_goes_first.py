"""A program whose agent stops first: on a `detach-PID` file it uninstalls the agent (which
closes its clients' connections) and lives on until its stop file. A client sees what it sees
when a process killed with SIGKILL closes its descriptors a moment before it is gone: the
connection ends while the process still runs, and the process exits afterwards."""

from __future__ import annotations

import asyncio
import os

from target_kit import WORKDIR, note, signal_ready, until_stopped

import taskscope.agent


async def worker() -> None:
    while True:
        await asyncio.sleep(0.05)


async def main() -> None:
    asyncio.create_task(worker(), name="worker")
    signal_ready()
    request = WORKDIR / f"detach-{os.getpid()}"
    while not request.exists():
        await asyncio.sleep(0.02)
    taskscope.agent.uninstall()
    note("detached")
    await until_stopped()


asyncio.run(main())
