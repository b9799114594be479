"""A process with ten event loops: the main thread's and nine in threads `side-0` to `side-8`,
each with three sleeping workers. A file `block-PID` in WORKDIR makes `side-7`'s loop call
time.sleep(seconds written in it), noting "blocking" first.

    many_loops.py WORKDIR
"""

from __future__ import annotations

import asyncio
import threading

from target_kit import blocker, signal_ready, until_stopped

SIDE_LOOPS = 9
started = threading.Barrier(SIDE_LOOPS + 1)


async def worker() -> None:
    await asyncio.sleep(3600)


def side_loop(number: int) -> None:
    async def main() -> None:
        workers = [asyncio.create_task(worker(), name=f"side-{number}-w{n}") for n in range(3)]
        if number == 7:
            workers.append(asyncio.create_task(blocker(), name="blocker"))
        started.wait()
        await asyncio.gather(*workers)

    asyncio.run(main())


async def main() -> None:
    for number in range(SIDE_LOOPS):
        threading.Thread(
            target=side_loop, args=(number,), name=f"side-{number}", daemon=True
        ).start()
    await asyncio.to_thread(started.wait)
    signal_ready()
    await until_stopped()


asyncio.run(main())
