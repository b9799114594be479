"""The host the fuzzing benchmark attacks: 50 tasks, one of which writes a counter line to
stdout every 100 ms (the benchmark checks that no line is lost or late). Writes argv[1] when
ready; stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path


async def idler(number: int) -> None:
    await asyncio.sleep(3600 + number)


async def counter() -> None:
    count = 0
    while True:
        count += 1
        sys.stdout.write(f"{count}\n")
        sys.stdout.flush()
        await asyncio.sleep(0.1)


async def main() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [asyncio.create_task(idler(number), name=f"idler-{number}") for number in range(49)]
    tasks.append(asyncio.create_task(counter(), name="counter"))
    Path(sys.argv[1]).write_text("ready")  # noqa: ASYNC240 - once, before any client
    await stop.wait()
    for task in tasks:
        task.cancel()


asyncio.run(main())
