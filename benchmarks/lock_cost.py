"""What noting lock holders costs the host: asyncio.Lock acquire + release with and without
the agent.

Run: python benchmarks/lock_cost.py [--count 200000] [--procs 5]

While the agent runs (tracking on), `asyncio.Lock` carries a data descriptor `_locked`
(taskscope/agent/locks.py) whose `__set__` runs at each acquire and each release; reads are
untouched. Each figure comes from a fresh process, the configurations interleaved (no agent,
agent, no agent, agent...), so drift on the machine hits both alike:

- uncontended: one task, `async with lock` in a loop (the fast path: one True, one False);
- contended: two tasks taking turns on one lock (each acquire waits, is woken, then takes it).

Printed: ns per acquire+release (best and median of the processes) and the ratio agent / no
agent of the bests, with the spread (min-max) of the per-process ratios paired in order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODES = ("no agent", "agent")
WORKLOADS = ("uncontended", "contended")


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

    started = time.perf_counter()
    await asyncio.gather(player(), player())
    elapsed = time.perf_counter() - started
    # the same program without the lock: what the sleeps and the switches cost
    started = time.perf_counter()

    async def idle_player() -> None:
        for _ in range(turns):
            await asyncio.sleep(0)

    await asyncio.gather(idle_player(), idle_player())
    return elapsed - (time.perf_counter() - started)


def child(mode: str, count: int) -> None:
    if mode == "agent":
        sys.path.insert(0, str(REPO))
        import taskscope.agent
        from taskscope.agent import locks

        taskscope.agent.install(report=False)
        assert locks.installed()

    async def main() -> dict[str, float]:
        await uncontended(count // 10)  # warm-up
        result = {}
        for workload, run in (("uncontended", uncontended), ("contended", contended)):
            best = min([await run(count) for _ in range(3)])
            result[workload] = best / count * 1e9
        return result

    print(json.dumps(asyncio.run(main())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200_000, help="acquires per measure")
    parser.add_argument("--procs", type=int, default=5, help="fresh processes per mode")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.count)
        return
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for _ in range(args.procs):
        for mode in MODES:
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--count", str(args.count)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            results[mode].append(json.loads(out))
    print(f"python {sys.version.split()[0]}, {args.procs} processes per mode, interleaved")
    print(f"{'':14}{'no agent ns':>14}{'agent ns':>12}{'x (best)':>10}{'x spread':>16}")
    for workload in WORKLOADS:
        plain = [run[workload] for run in results["no agent"]]
        watched = [run[workload] for run in results["agent"]]
        ratios = [w / p for p, w in zip(plain, watched, strict=True)]
        print(
            f"{workload:14}{min(plain):>10.0f} ({statistics.median(plain):.0f})"
            f"{min(watched):>7.0f} ({statistics.median(watched):.0f})"
            f"{min(watched) / min(plain):>8.2f}x"
            f"{min(ratios):>9.2f}-{max(ratios):.2f}x"
        )
    print("ns per acquire+release: best (median) of the processes")


if __name__ == "__main__":
    main()
