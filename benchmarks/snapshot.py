"""How long a full snapshot takes, in microseconds per task, at 1k, 10k and 100k live tasks.

Run: python benchmarks/snapshot.py [--sizes 1000,10000,100000] [--repeat 5]

Tasks are a realistic mix (sleeping, waiting on a queue, on a lock, on another task, in a
TaskGroup). The snapshot is built on another thread, as the agent does, while the loop idles.
Printed per size: the build (what the host pays, GIL held), JSON encoding (the agent's thread),
and for scale the bare cost of iterating asyncio.all_tasks().
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.tracker import Tracker
from taskscope.protocol import encode


def best_of(repeat: int, func: Callable[[], Any]) -> float:
    """Best CPU time of the calling thread over `repeat` runs."""
    times = []
    for _ in range(repeat):
        started = time.thread_time()
        func()
        times.append(time.thread_time() - started)
    return min(times)


async def population(size: int) -> list[asyncio.Task[Any]]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    lock = asyncio.Lock()
    await lock.acquire()
    gate = asyncio.Event()

    async def sleeper() -> None:
        await asyncio.sleep(3600)

    async def consumer() -> None:
        await queue.get()

    async def locker() -> None:
        async with lock:
            pass

    async def nested(depth: int) -> None:
        if depth:
            await nested(depth - 1)
        else:
            await gate.wait()

    async def group_owner() -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(9):
                group.create_task(sleeper())

    makers = [sleeper, consumer, locker, lambda: nested(3)]
    tasks: list[asyncio.Task[Any]] = []
    while len(tasks) < size:
        if len(tasks) % 100 == 0:
            tasks.append(asyncio.create_task(group_owner()))
            continue
        tasks.append(asyncio.create_task(makers[len(tasks) % len(makers)]()))
    await asyncio.sleep(0.05)
    return tasks


async def measure(size: int, repeat: int) -> dict[str, float]:
    tracker = Tracker()
    tracker.install()
    tasks = await population(size)
    live = len(asyncio.all_tasks())
    builder = SnapshotBuilder(tracker)
    results: dict[str, float] = {}

    def work() -> None:
        builder.build()  # warm up: ids given to tasks made before the tracker
        results["build"] = best_of(repeat, builder.build)
        snapshot = builder.build()
        results["encode"] = best_of(repeat, lambda: encode(snapshot))
        results["all_tasks"] = best_of(repeat, lambda: list(asyncio.all_tasks(loop)))
        results["bytes"] = len(encode(snapshot))

    loop = asyncio.get_running_loop()
    thread = threading.Thread(target=work)
    thread.start()
    await asyncio.to_thread(thread.join)  # the loop idles in epoll meanwhile, as in a real app
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tracker.uninstall()
    results["live"] = live
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}; best of {args.repeat}")
    print(
        f"{'tasks':>8}  {'build us/task':>13}  {'encode us/task':>14}  {'total ms':>9}  "
        f"{'all_tasks us/task':>17}  {'JSON MB':>7}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        r = asyncio.run(measure(size, args.repeat))
        live = r["live"]
        print(
            f"{int(live):>8}  {r['build'] / live * 1e6:>13.2f}  {r['encode'] / live * 1e6:>14.2f}  "
            f"{(r['build'] + r['encode']) * 1e3:>9.1f}  {r['all_tasks'] / live * 1e6:>17.2f}  "
            f"{r['bytes'] / 1e6:>7.1f}"
        )


if __name__ == "__main__":
    main()
