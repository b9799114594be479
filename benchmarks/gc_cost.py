"""What the agent's memory of tasks costs the host's garbage collector.

Run: python benchmarks/gc_cost.py [--sizes 10000,100000] [--repeat 5]

The agent keeps, per pending task, its metadata and its last record, so that a look at tasks
that did not move is cheap. Those objects are tracked by the host's cyclic garbage collector,
and a full collection walks them. Printed per size, each in a fresh process: the time of a
full collection (`gc.collect()`, best of --repeat) and the number of objects the collector
tracks, with no agent, with the agent installed (creations noted, nothing looked at), and
after the agent looked at every task (a `taskscope dump`, or a dashboard attached).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODES = ("no agent", "agent installed", "after a look")


async def measure(size: int, mode: str, repeat: int) -> dict[str, float]:
    from snapshot import population  # the same mix of tasks as benchmarks/snapshot.py

    tracker = None
    if mode != "no agent":
        from taskscope.agent.tracker import Tracker

        tracker = Tracker()
        tracker.install()
    tasks = await population(size)
    if mode == "after a look" and tracker is not None:
        from taskscope.agent.introspect import SnapshotBuilder

        builder = SnapshotBuilder(tracker)
        for _ in range(2):  # a first look, then one that reuses what the first noted
            thread = threading.Thread(target=builder.build_raw)
            thread.start()
            await asyncio.to_thread(thread.join)
    gc.collect()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        gc.collect()
        times.append(time.perf_counter() - started)
    result = {"ms": min(times) * 1e3, "tracked": len(gc.get_objects()), "live": len(tasks)}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        size, mode = int(args.child[0]), args.child[1]
        print(json.dumps(asyncio.run(measure(size, mode, args.repeat))))
        return
    print(f"Python {sys.version.split()[0]}; full collection, best of {args.repeat}")
    print(f"{'tasks':>8}  {'setup':<16}  {'gc.collect()':>12}  {'tracked objects':>15}")
    for size in (int(text) for text in args.sizes.split(",")):
        for mode in MODES:
            output = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--repeat",
                    str(args.repeat),
                    "--child",
                    str(size),
                    mode,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            result = json.loads(output.splitlines()[-1])
            print(f"{size:>8,}  {mode:<16}  {result['ms']:>9.1f} ms  {result['tracked']:>15,}")


if __name__ == "__main__":
    main()
