"""A process pool of one worker process with two calls (`crunch`) run through
`loop.run_in_executor`: `proc-1` and `proc-2` await them. The calls last until the program is
asked to stop. Signals ready once both are submitted."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from target_kit import WORKDIR, signal_ready, until_stopped


def crunch(stop_file: str) -> int:
    while not os.path.exists(stop_file):
        time.sleep(0.05)
    return 1


async def wait_for(future: asyncio.Future[int]) -> int:
    return await future


async def main() -> None:
    loop = asyncio.get_running_loop()
    stop_file = str(WORKDIR / f"stop-{os.getpid()}")
    with ProcessPoolExecutor(max_workers=1) as pool:
        calls = [loop.run_in_executor(pool, crunch, stop_file) for _ in range(2)]
        waiting = [
            asyncio.create_task(wait_for(call), name=f"proc-{number}")
            for number, call in enumerate(calls, 1)
        ]
        await asyncio.sleep(0.3)
        signal_ready()
        await until_stopped()
        await asyncio.gather(*waiting)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
