"""How long a full snapshot takes, in microseconds per task, at 1k, 10k and 100k live tasks.

Run: python benchmarks/snapshot.py [--sizes 1000,10000,100000] [--repeat 5]

Tasks are a realistic mix (sleeping, waiting on a queue, on a lock, on another task, in a
TaskGroup). The snapshot is built on another thread, as the agent does, while the loop idles.
All figures are CPU time of the agent's thread, which holds the GIL: what the host pays.
Printed per size:

- first: the agent's first look at these tasks (ids given, stacks walked and described);
- build: a later look, tasks unmoved since (the usual case between two looks): the records of
  tasks that did not change are the objects of the last look again;
- compact: the compact encoding of the snapshot message, as the first message of an agent's
  first connection (`cold`, every row encoded) and as a later one (`warm`, rows of unchanged
  records reused: a second `dump`, a client reconnecting);
- full: build + warm compact, a whole snapshot on the wire, the figure the aim is about;
- tick: one subscription tick of a dashboard when nothing moved (build, compare with the
  last look, encode the empty delta);
- plain: the schema-1 JSON (clients that do not ask for an encoding), countdowns counted;
- moved (a second table): a look when every task moved since the last one, as in a busy
  server (tasks, some in nested coroutines, each woken and waiting on a new future);

with the bytes per task of each encoding, what the client pays to decode (json.loads, plus
expanding rows back to schema-1 records for compact), and for scale the bare cost of
iterating asyncio.all_tasks().
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent / "targets"))

from population import population as shared_population

from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.tracker import Tracker
from taskscope.protocol import (
    CompactDecoder,
    CompactEncoder,
    CompactTables,
    encode,
    materialize_body,
)


def best_of(repeat: int, func: Callable[[], Any]) -> float:
    """Best CPU time of the calling thread over `repeat` runs."""
    times = []
    for _ in range(repeat):
        started = time.thread_time()
        func()
        times.append(time.thread_time() - started)
    return min(times)


async def population(size: int) -> list[asyncio.Task[Any]]:
    return await shared_population(size)


async def measure(size: int, repeat: int) -> dict[str, float]:
    tracker = Tracker()
    tracker.install()
    tasks = await population(size)
    live = len(asyncio.all_tasks())
    builder = SnapshotBuilder(tracker)
    results: dict[str, float] = {}

    def work() -> None:
        started = time.thread_time()
        builder.build_raw()  # ids given to tasks made before the tracker, stacks described
        results["first"] = time.thread_time() - started
        results["build"] = best_of(repeat, builder.build_raw)
        snapshot = builder.build_raw()
        message = {"type": "snapshot", "snapshot": snapshot}
        results["cold"] = best_of(repeat, lambda: CompactEncoder().encode(message))
        tables = CompactTables()
        cold_line = CompactEncoder(tables).encode(message)
        results["warm"] = best_of(repeat, lambda: CompactEncoder(tables).encode(message))
        encoder = CompactEncoder(tables)
        encoder.encode(message)

        def tick() -> None:
            now = builder.build_raw()
            last = {record["id"]: record for record in snapshot["tasks"]}
            changed = []
            for record in now["tasks"]:
                before = last.get(record["id"])
                if before is not record and before != record:
                    changed.append(record)
            delta = {"taken_at": now["taken_at"], "loops": now["loops"], "changed": changed}
            encoder.encode({"type": "delta", "delta": delta})

        results["tick"] = best_of(repeat, tick)

        def plain() -> bytes:
            body = materialize_body(dict(snapshot), "tasks")
            return encode({"type": "snapshot", "snapshot": body})

        results["plain"] = best_of(repeat, plain)
        plain_line = plain()
        results["plain_bytes"] = len(plain_line)
        results["cold_bytes"] = len(cold_line)
        results["warm_bytes"] = len(encoder.encode(message))
        results["plain_decode"] = best_of(repeat, lambda: json.loads(plain_line))
        results["compact_decode"] = best_of(
            repeat, lambda: CompactDecoder().message(json.loads(cold_line))
        )
        decoded = CompactDecoder().message(json.loads(cold_line))
        assert decoded == json.loads(plain_line)
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


async def measure_moved(size: int, looks: int) -> float:
    """Best build time per task over `looks` looks, every task moved before each."""
    tracker = Tracker()
    tracker.install()
    box = [asyncio.Event()]

    async def mover(depth: int) -> None:
        if depth:
            return await mover(depth - 1)
        while True:
            await box[0].wait()

    tasks = [asyncio.create_task(mover(index % 3)) for index in range(size)]
    await asyncio.sleep(0.05)
    builder = SnapshotBuilder(tracker)
    times: list[float] = []
    for look in range(looks + 1):
        spent = [0.0]

        def work(spent: list[float] = spent) -> None:
            started = time.thread_time()
            builder.build_raw()
            spent[0] = time.thread_time() - started

        thread = threading.Thread(target=work)
        thread.start()
        await asyncio.to_thread(thread.join)
        if look:  # the first look is a first look
            times.append(spent[0])
        woken, box[0] = box[0], asyncio.Event()
        woken.set()
        for _ in range(5):
            await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tracker.uninstall()
    return min(times) / size * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}; best of {args.repeat}; per task: us (CPU), B")
    columns = (
        ("tasks", 7),
        ("first us", 8),
        ("build us", 8),
        ("cold us", 7),
        ("warm us", 7),
        ("full us", 7),
        ("tick us", 7),
        ("plain us", 8),
        ("plain B", 7),
        ("compact B", 9),
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
            f"{per('first'):.2f}",
            f"{per('build'):.2f}",
            f"{per('cold'):.2f}",
            f"{per('warm'):.2f}",
            f"{per('build') + per('warm'):.2f}",
            f"{per('tick'):.2f}",
            f"{per('plain'):.2f}",
            f"{per('plain_bytes', 1):.0f}",
            f"{per('cold_bytes', 1):.0f}",
            decode,
            f"{per('all_tasks'):.2f}",
        )
        print(
            "  ".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, columns, strict=True))
        )
    print("\nevery task moved since the last look:")
    for size in (int(s) for s in args.sizes.split(",")):
        moved = asyncio.run(measure_moved(size, args.repeat))
        print(f"{size:>7}  {moved:.2f} us per task")


if __name__ == "__main__":
    main()
