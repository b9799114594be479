"""The host's collector during real dumps: how much of it the agent's looks set off.

Run: python benchmarks/dump_gc.py [--tasks 100000] [--dumps 6] [--rounds 3] [--against CHECKOUT]

Each round, in a fresh process: the host program of `host_cost.py` (targets/population.py's
mix, one task in a hundred waking twice a second) with the agent installed, then `taskscope
dump PID` run as a user would, once every half second after a first dump (the first look,
not counted). Printed per configuration: the young (generation 0) and middle (generation 1)
collections during the dumps that follow, their count, their total time and the longest, from
`gc.callbacks`, whichever thread ran them (every collection holds the GIL, so the host's loop
waits for each). With --against, that checkout's agent and client (on PYTHONPATH) in turns
with this one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

HOST = """
import asyncio, gc, json, os, subprocess, sys, threading, time
sys.path.insert(0, {targets!r})
from population import population
import taskscope

events = []
timing = {{}}

def on_collection(phase, info):
    if phase == "start":
        timing["at"] = time.perf_counter()
    elif timing.get("counting"):
        events.append((info["generation"], time.perf_counter() - timing["at"]))

gc.callbacks.append(on_collection)

async def main():
    taskscope.install()
    tasks = await population({tasks})

    def dumper():
        for index in range({dumps} + 1):
            subprocess.run(
                [sys.executable, "-m", "taskscope", "dump", str(os.getpid())],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
            )
            timing["counting"] = True  # after the first dump: its first look is not counted
            time.sleep(0.5)

    thread = threading.Thread(target=dumper)
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.002)  # the probe of host_cost.py: a loop that turns
    timing["counting"] = False
    print(json.dumps(events))
    os._exit(0)

asyncio.run(main())
"""


def one_round(checkout: str, tasks: int, dumps: int) -> list[tuple[int, float]]:
    env = dict(os.environ, PYTHONPATH=checkout)
    source = HOST.format(targets=str(HERE / "targets"), tasks=tasks, dumps=dumps)
    done = subprocess.run(
        [sys.executable, "-c", source],
        env=env,
        cwd="/",  # `-c` and `-m` put the working directory first on sys.path, before PYTHONPATH
        capture_output=True,
        text=True,
        check=True,
    )
    return [(generation, seconds) for generation, seconds in json.loads(done.stdout)]


def summary(rounds: list[list[tuple[int, float]]], generation: int) -> str:
    times = [[s * 1000 for g, s in events if g == generation] for events in rounds]
    totals = [sum(each) for each in times]
    longest = [max(each, default=0.0) for each in times]
    counts = [len(each) for each in times]
    return (
        f"gen{generation}: {min(counts)}-{max(counts)} collections, "
        f"total {min(totals):.1f}-{max(totals):.1f} ms (median {statistics.median(totals):.1f}), "
        f"longest {min(longest):.1f}-{max(longest):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--dumps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", help="another checkout, measured in turns with this one")
    args = parser.parse_args()
    checkouts = {"this checkout": str(REPO)}
    if args.against:
        checkouts[f"{args.against}"] = str(Path(args.against).resolve())
    results: dict[str, list[list[tuple[int, float]]]] = {name: [] for name in checkouts}
    print(f"Python {sys.version.split()[0]}; {args.tasks:,} tasks, {args.dumps} dumps a round")
    for round_number in range(args.rounds):
        for name, checkout in checkouts.items():
            results[name].append(one_round(checkout, args.tasks, args.dumps))
        print(f"  round {round_number + 1} of {args.rounds} done", file=sys.stderr)
    for name, rounds in results.items():
        print(f"{name}: {summary(rounds, 0)}; {summary(rounds, 1)}")


if __name__ == "__main__":
    main()
