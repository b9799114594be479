"""What noting lock holders costs the host: asyncio.Lock acquire + release with and without
the agent's note.

Run: python benchmarks/lock_cost.py [--count 50000] [--rounds 15]

While the agent runs (tracking on), `asyncio.Lock` carries a data descriptor `_locked`
(taskscope/agent/locks.py) whose `__set__` runs at each acquire and each release; reads are
untouched. One process, one loop; rounds interleave no note and the note (installed and
removed between rounds, as the agent does), so drift on the machine hits both alike:

- uncontended: one task, `async with lock` in a loop (the fast path: one True, one False);
- contended: two tasks taking turns on one lock (each acquire waits, is woken, then takes
  it), less the same two tasks taking turns without the lock.

Printed: ns per acquire+release, best and median of the rounds, the ratio of the bests (note
/ none), the spread of the ratios of rounds run back to back, and the added ns.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskscope.agent import locks


async def uncontended(count: int) -> float:
    lock = asyncio.Lock()
    started = time.perf_counter()
    for _ in range(count):
        async with lock:
            pass
    return time.perf_counter() - started


async def contended(count: int) -> float:
    lock = asyncio.Lock()
    turns = count // 2

    async def player() -> None:
        for _ in range(turns):
            async with lock:
                await asyncio.sleep(0)

    async def idle_player() -> None:
        for _ in range(turns):
            await asyncio.sleep(0)

    started = time.perf_counter()
    await asyncio.gather(player(), player())
    elapsed = time.perf_counter() - started
    started = time.perf_counter()
    await asyncio.gather(idle_player(), idle_player())
    return elapsed - (time.perf_counter() - started)


WORKLOADS: dict[str, Callable[[int], Awaitable[float]]] = {
    "uncontended": uncontended,
    "contended": contended,
}
MODES = ("no note", "holder note")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50_000, help="acquires per round")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    results = {(workload, mode): [] for workload in WORKLOADS for mode in MODES}

    async def run() -> None:
        await uncontended(args.count // 10)  # warm-up
        for _ in range(args.rounds):
            for workload, measure in WORKLOADS.items():
                for mode in MODES:
                    if mode == "holder note":
                        locks.install()
                    try:
                        elapsed = await measure(args.count)
                    finally:
                        locks.uninstall()
                    results[workload, mode].append(elapsed / args.count * 1e9)

    asyncio.run(run())
    print(f"python {sys.version.split()[0]}, {args.rounds} interleaved rounds of {args.count:,}")
    header = f"{'none':>12}{'note':>14}{'x best':>8}{'x spread':>13}{'added':>8}"
    print(f"{'ns per acquire+release':24}{header}")
    for workload in WORKLOADS:
        plain, noted = results[workload, "no note"], results[workload, "holder note"]
        ratios = [n / p for p, n in zip(plain, noted, strict=True)]
        print(
            f"{workload:24}{min(plain):>5.0f} ({statistics.median(plain):>4.0f})"
            f"{min(noted):>7.0f} ({statistics.median(noted):>4.0f})"
            f"{min(noted) / min(plain):>7.2f}x{min(ratios):>6.2f}-{max(ratios):.2f}x"
            f"{min(noted) - min(plain):>+7.0f}"
        )
    print("best (median) of the rounds; 'added' = best with the note - best without")


if __name__ == "__main__":
    main()
