"""A program that already runs aiomonitor, with its task factory hooked
(`hook_task_factory=True`: every task is aiomonitor's `TracedTask`, its coroutine run inside
`Monitor._coro_wrapper`): `spawner` creates `child-of-spawner`, `victim` sleeps and notes its
cancellation. Arguments: the working directory, then aiomonitor's three ports (its monitor,
console and web UI), which it writes to `ports-PID` once it listens."""

from __future__ import annotations

import asyncio
import os
import sys

import aiomonitor
from target_kit import WORKDIR, signal_ready, spawner, until_stopped, victim


async def main() -> None:
    port, console_port, webui_port = (int(value) for value in sys.argv[2:5])
    loop = asyncio.get_running_loop()
    with aiomonitor.start_monitor(
        loop,
        hook_task_factory=True,
        port=port,
        console_port=console_port,
        webui_port=webui_port,
    ):
        tasks = [
            asyncio.create_task(spawner(), name="spawner"),
            asyncio.create_task(victim(), name="victim"),
        ]
        (WORKDIR / f"ports-{os.getpid()}").write_text(f"{webui_port}")
        signal_ready()
        await until_stopped()
        for task in tasks:
            task.cancel()


asyncio.run(main())
