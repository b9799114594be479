"""What finding lock and semaphore holders in the tasks' stacks costs a look.

Run: python benchmarks/holder_search.py [--sizes 1000,10000,100000] [--rounds 5]

A lock taken before the agent came, or an exhausted Semaphore, has its holders looked for in
every pending task's coroutine chain (taskscope/agent/locks.py, `held_in_stacks`): the frames
whose code can enter a context manager are read with `gc.get_referents`. The tasks here are a
server's mix: a third in the body of `async with` on a lock of their own (a frame that must be
read), a third three calls deep waiting on an Event (frames skipped by their code), a third
asleep; one Semaphore exhausted by two of them, with a waiter. Printed per size, on another
thread as the agent does, its CPU time, best of the rounds: the search alone (µs per task),
and a look with the semaphore exhausted that searches (one every 10 s at most) and one that
checks the holders the last search found (the looks between), against a look where it is not
exhausted (the same tasks otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskscope.agent import locks
from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.locks import held_in_stacks
from taskscope.agent.tracker import Tracker


async def in_body(lock: asyncio.Lock, release: asyncio.Event) -> None:
    async with lock:
        await release.wait()


async def deep(depth: int, release: asyncio.Event) -> None:
    if depth:
        await deep(depth - 1, release)
    else:
        await release.wait()


async def limited(gate: asyncio.Semaphore, release: asyncio.Event) -> None:
    async with gate:
        await release.wait()


def cpu(work: object) -> float:
    started = time.thread_time()
    work()  # type: ignore[operator]
    return time.thread_time() - started


async def measure(size: int, rounds: int) -> tuple[float, float, float, float]:
    release, stop_waiting = asyncio.Event(), asyncio.Event()
    tasks = []
    for index in range(size // 3):
        tasks.append(asyncio.create_task(in_body(asyncio.Lock(), release)))
        tasks.append(asyncio.create_task(deep(3, release)))
        tasks.append(asyncio.create_task(asyncio.sleep(3600 + index)))
    gate = asyncio.Semaphore(2)
    tasks += [asyncio.create_task(limited(gate, release)) for _ in range(2)]
    await asyncio.sleep(0)
    tracker = Tracker()
    tracker.install()
    try:
        builder = SnapshotBuilder(tracker)
        await asyncio.to_thread(builder.build_raw)  # the first look: ids, stacks
        every = list(asyncio.all_tasks())
        search, free, searching, checking = [], [], [], []
        for _round in range(rounds):
            search.append(await asyncio.to_thread(cpu, lambda: held_in_stacks(every)))
            free.append(await asyncio.to_thread(cpu, builder.build_raw))
            waiter = asyncio.create_task(limited(gate, stop_waiting))
            await asyncio.sleep(0)
            locks.SEARCH_SEMAPHORE_AGAIN_AFTER = 0.0  # every look searches
            searching.append(await asyncio.to_thread(cpu, builder.build_raw))
            locks.SEARCH_SEMAPHORE_AGAIN_AFTER = 3600.0  # the looks between two searches
            checking.append(await asyncio.to_thread(cpu, builder.build_raw))
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
        return min(search), min(free), min(searching), min(checking)
    finally:
        tracker.uninstall()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,9000")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}; CPU of the agent's thread, best of {args.rounds}")
    heads = ("tasks", "search us/task", "look ms", "searching ms", "checking ms")
    print(f"{heads[0]:>6}  {heads[1]:>14}  {heads[2]:>7}  {heads[3]:>12}  {heads[4]:>11}")
    for size in (int(part) for part in args.sizes.split(",")):
        search, free, searching, checking = asyncio.run(measure(size, args.rounds))
        print(
            f"{size:>6}  {search / size * 1e6:>14.2f}  {free * 1e3:>7.1f}  "
            f"{searching * 1e3:>7.1f} {searching / free:>4.2f}x  {checking * 1e3:>6.1f} "
            f"{checking / free:>4.2f}x"
        )
    print(
        "look: no semaphore exhausted; searching: one is, and the look searches every stack"
        " (at most every 10 s); checking: the looks between, which check the holders found."
        " Above 10,000 tasks no look searches for a semaphore's holders."
    )


if __name__ == "__main__":
    main()
