"""A target whose tasks wait where they are for different lengths of time: `stuck` waits on an
Event nobody sets, `worker` takes items off a queue, one each time the test writes a
`feed-PID` file (then notes `took N`), `holder` sits in a lock another task holds, `bounded`
waits on the Event through `asyncio.wait_for` and `timed` inside `asyncio.timeout`, both with
an hour to go."""

from __future__ import annotations

import asyncio
import os

from target_kit import WORKDIR, note, signal_ready, until_stopped


async def stuck(never: asyncio.Event) -> None:
    await never.wait()


async def worker(jobs: asyncio.Queue[int]) -> None:
    while True:
        item = await jobs.get()
        note(f"took {item}")


async def feeder(jobs: asyncio.Queue[int]) -> None:
    cue = WORKDIR / f"feed-{os.getpid()}"
    fed = 0
    while True:
        await asyncio.sleep(0.02)
        if cue.exists():
            cue.unlink()
            fed += 1
            jobs.put_nowait(fed)


async def holder(lock: asyncio.Lock) -> None:
    async with lock:
        pass


async def bounded(never: asyncio.Event) -> None:
    await asyncio.wait_for(never.wait(), 3600)


async def timed(never: asyncio.Event) -> None:
    async with asyncio.timeout(3600):
        await never.wait()


async def main() -> None:
    never, jobs, lock = asyncio.Event(), asyncio.Queue[int](), asyncio.Lock()
    await lock.acquire()
    tasks = [
        asyncio.create_task(stuck(never), name="stuck"),
        asyncio.create_task(worker(jobs), name="worker"),
        asyncio.create_task(feeder(jobs), name="feeder"),
        asyncio.create_task(holder(lock), name="holder"),
        asyncio.create_task(bounded(never), name="bounded"),
        asyncio.create_task(timed(never), name="timed"),
    ]
    await asyncio.sleep(0)
    signal_ready()
    await until_stopped()
    for task in tasks:
        task.cancel()


asyncio.run(main())
