"""What noting each task's creation chain costs the host's loop thread, per task; with
--failing, what noting a failed task's traceback costs.

Run: python benchmarks/creation_cost.py [--count 20000] [--rounds 15] [--failing]

One process, one loop; rounds interleave: no agent, the agent's tracker with a creation chain
of 1 frame, and of `CREATION_DEPTH` (6) frames. Each round creates `--count` tasks from
a coroutine three calls deep (so a chain of 6 finds 4 of the program's frames before the
loop's machinery) and awaits them in gather batches of 1,000. Printed: us per task, best and
median of the rounds, and the ratio of the bests to no agent (with the spread of the ratios
of rounds run back to back). With --failing each task raises a ValueError three calls deep
(chained from a KeyError), so the done callback notes its traceback (taskscope/agent/
failures.py), and a fourth configuration leaves that note out: the difference is its cost.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskscope.agent.tracker import CREATION_DEPTH, Tracker


async def short() -> None:
    await asyncio.sleep(0)


def parse(row: str) -> int:
    try:
        return {"a": 1}[row]
    except KeyError as error:
        raise ValueError(row) from error


def check(row: str) -> int:
    return parse(row)


async def failing() -> None:
    await asyncio.sleep(0)
    check("b")


JOB = short


async def make_batch(batch: int) -> None:
    await asyncio.gather(
        *[asyncio.create_task(JOB()) for _ in range(batch)], return_exceptions=True
    )


async def middle(count: int, batch: int) -> None:
    for _ in range(count // batch):
        await make_batch(batch)


async def outer(count: int, batch: int) -> float:
    started = time.perf_counter()
    await middle(count, batch)
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--failing", action="store_true", help="tasks that raise")
    args = parser.parse_args()
    global JOB
    JOB = failing if args.failing else short
    configs: list[tuple[str, int | None]] = [
        ("no agent", None),
        ("chain of 1", 1),
        (f"chain of {CREATION_DEPTH}", CREATION_DEPTH),
    ]
    if args.failing:  # the same, the traceback note left out: what the note itself costs
        configs.append(("no traceback", -CREATION_DEPTH))
    times: dict[str, list[float]] = {name: [] for name, _ in configs}

    async def run() -> None:
        await outer(args.count, 1000)  # warm-up
        for _ in range(args.rounds):
            for name, depth in configs:
                tracker = None
                if depth is not None:
                    tracker = Tracker(creation_depth=abs(depth))
                    if depth < 0:
                        tracker._note_failure = lambda task, exc: None  # type: ignore[method-assign]
                    tracker.install()
                    tracker.on_loop_started(asyncio.get_running_loop())
                try:
                    times[name].append(await outer(args.count, 1000))
                finally:
                    if tracker is not None:
                        tracker.uninstall()
                        await asyncio.sleep(0)  # the loop's own hooks come off at its turn

    asyncio.run(run())
    base = times["no agent"]
    what = "failing tasks" if args.failing else "tasks"
    version = sys.version.split()[0]
    print(f"python {version}, {args.rounds} interleaved rounds of {args.count:,} {what}")
    print(f"{'':14}{'best us':>9}{'median':>9}{'x (best)':>10}{'x spread':>14}")
    for name, _ in configs:
        ratios = [t / b for t, b in zip(times[name], base, strict=True)]
        print(
            f"{name:14}{min(times[name]):>9.2f}{statistics.median(times[name]):>9.2f}"
            f"{min(times[name]) / min(base):>9.2f}x{min(ratios):>8.2f}-{max(ratios):.2f}x"
        )


if __name__ == "__main__":
    main()
