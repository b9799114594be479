"""How long a full snapshot takes, in microseconds per task, at 1k, 10k and 100k live tasks.

Run: python benchmarks/snapshot.py [--sizes 1000,10000,100000] [--repeat 5]

Tasks are a realistic mix (sleeping, waiting on a queue, on a lock, on another task, in a
TaskGroup). The snapshot is built on another thread, as the agent does, while the loop idles.
Printed per size: the build (what the host pays, GIL held), then the encoding of the snapshot
message (the agent's thread, GIL held too) in both wire encodings:

- plain: the schema-1 JSON (clients that do not ask for an encoding);
- compact cold: the first message of a connection (its tables are sent along: a `dump`);
- compact warm: a later message of the same connection (tables already sent: what a
  subscription's messages cost per task they carry);

with the bytes per task of each, what the client pays to decode (json.loads, plus expanding
rows back to schema-1 records for compact), and for scale the bare cost of iterating
asyncio.all_tasks().
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.tracker import Tracker
from taskscope.protocol import CompactDecoder, CompactEncoder, encode


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

    def nested3() -> Coroutine[Any, Any, None]:
        return nested(3)

    makers = [sleeper, consumer, locker, nested3]
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
        message = {"type": "snapshot", "snapshot": builder.build()}
        results["plain"] = best_of(repeat, lambda: encode(message))
        results["cold"] = best_of(repeat, lambda: encode(CompactEncoder().message(message)))
        warm = CompactEncoder()
        cold_line = encode(warm.message(message))
        results["warm"] = best_of(repeat, lambda: encode(warm.message(message)))
        plain_line = encode(message)
        warm_line = encode(warm.message(message))
        results["plain_bytes"] = len(plain_line)
        results["cold_bytes"] = len(cold_line)
        results["warm_bytes"] = len(warm_line)
        results["plain_decode"] = best_of(repeat, lambda: json.loads(plain_line))
        results["compact_decode"] = best_of(
            repeat, lambda: CompactDecoder().message(json.loads(cold_line))
        )
        assert CompactDecoder().message(json.loads(cold_line)) == json.loads(plain_line)
        results["all_tasks"] = best_of(repeat, lambda: list(asyncio.all_tasks(loop)))

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
    print(f"Python {sys.version.split()[0]}; best of {args.repeat}; per task: us (CPU), B")
    columns = (
        ("tasks", 7),
        ("build us", 8),
        ("plain us", 8),
        ("cold us", 7),
        ("warm us", 7),
        ("plain B", 7),
        ("cold B", 6),
        ("warm B", 6),
        ("decode plain/compact us", 23),
        ("all_tasks us", 12),
    )
    print("  ".join(f"{name:>{width}}" for name, width in columns))
    for size in (int(s) for s in args.sizes.split(",")):
        r = asyncio.run(measure(size, args.repeat))

        def per(key: str, scale: float = 1e6, r: dict[str, float] = r) -> float:
            return r[key] / r["live"] * scale

        decode = f"{per('plain_decode'):.2f} / {per('compact_decode'):.2f}"
        cells = (
            f"{int(r['live'])}",
            f"{per('build'):.2f}",
            f"{per('plain'):.2f}",
            f"{per('cold'):.2f}",
            f"{per('warm'):.2f}",
            f"{per('plain_bytes', 1):.0f}",
            f"{per('cold_bytes', 1):.0f}",
            f"{per('warm_bytes', 1):.0f}",
            decode,
            f"{per('all_tasks'):.2f}",
        )
        print(
            "  ".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, columns, strict=True))
        )


if __name__ == "__main__":
    main()
