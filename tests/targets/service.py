"""A small service: workers on a queue inside a TaskGroup, a sleeper, a task that ignores
cancellation, a victim that notes its cancellation, and deterministic output."""

from __future__ import annotations

import asyncio
import sys

from target_kit import note, signal_ready, stop_requested, until_stopped


async def worker(jobs: asyncio.Queue[int], results: list[int]) -> None:
    while True:
        job = await jobs.get()
        results.append(job * 2)
        jobs.task_done()


async def victim() -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        note("victim cancelled")
        raise


async def stubborn() -> None:
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if stop_requested():
                raise
            note("stubborn ignored a cancel")


async def failing() -> None:
    raise ValueError("bad row")


async def main() -> int:
    jobs: asyncio.Queue[int] = asyncio.Queue()
    results: list[int] = []
    print("service starting")
    async with asyncio.TaskGroup() as group:
        for index in range(3):
            group.create_task(worker(jobs, results), name=f"worker-{index}")
        for job in range(10):
            jobs.put_nowait(job)
        await jobs.join()
        print(f"processed {len(results)} jobs, total {sum(results)}")
        sleeper = asyncio.create_task(asyncio.sleep(3600), name="sleeper")
        victim_task = asyncio.create_task(victim(), name="victim")
        stubborn_task = asyncio.create_task(stubborn(), name="stubborn")
        done = asyncio.create_task(asyncio.sleep(0, result=42), name="answer")
        failed = asyncio.create_task(failing(), name="failing")
        await asyncio.wait([done, failed])
        failed.exception()  # retrieved: no "never retrieved" noise in the output
        workers = list(group._tasks)

        async def stopper() -> None:
            await until_stopped()
            for task in (sleeper, victim_task, stubborn_task, *workers):
                task.cancel()

        group.create_task(stopper(), name="stopper")
        signal_ready()
    print("service stopped", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
