"""What a program pays while the agent holds the switch interval at 1 ms instead of 5 ms
(`taskscope.agent.gil`: only when the program starves the agent's thread of the GIL).

Run: python benchmarks/switch_interval_cost.py [--rounds 7] [--seconds 1.0] [--low S]

The interval matters only while two threads want the GIL at once. Each workload runs for
`--seconds` in a fresh process at 5 ms and at 1 ms, interleaved round by round so that drift on
the machine hits both alike; printed: the work done at 1 ms over the work done at 5 ms
(median of the rounds, and their range).

  loop alone        an asyncio loop in steps of 0.5 ms, no other thread: steps done
  loop + thread     the same loop and a thread counting in pure Python (a CPU-bound job
                    in `run_in_executor`): the loop's steps, and the thread's counts
  two threads       two threads counting: their counts together
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from taskscope.agent.gil import LOWERED_INTERVAL

WORKLOAD = """
import asyncio, json, sys, threading, time
kind, seconds, interval = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
sys.setswitchinterval(interval)
stop = threading.Event()
counts = {}

def count(name):
    n = 0
    while not stop.is_set():
        for _ in range(1000):
            n += 1
    counts[name] = n

async def loop_steps():
    steps = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        until = time.perf_counter() + 0.0005
        while time.perf_counter() < until:
            pass
        steps += 1
        await asyncio.sleep(0)
    return steps

threads = []
if kind in ("loop+thread", "two threads"):
    threads.append(threading.Thread(target=count, args=("thread",)))
if kind == "two threads":
    threads.append(threading.Thread(target=count, args=("other",)))
for thread in threads:
    thread.start()
if kind == "two threads":
    time.sleep(seconds)
else:
    counts["loop"] = asyncio.run(loop_steps())
stop.set()
for thread in threads:
    thread.join()
print(json.dumps(counts))
"""

KINDS = {
    "loop alone": ("loop alone", ("loop",)),
    "loop + thread: the loop": ("loop+thread", ("loop",)),
    "loop + thread: the thread": ("loop+thread", ("thread",)),
    "two threads": ("two threads", ("thread", "other")),
}


def work(kind: str, seconds: float, interval: float, keys: tuple[str, ...]) -> int:
    output = subprocess.run(
        [sys.executable, "-c", WORKLOAD, kind, str(seconds), str(interval)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts = json.loads(output)
    return sum(int(counts[key]) for key in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--low", type=float, default=LOWERED_INTERVAL, help="the lowered interval")
    args = parser.parse_args()
    low = args.low
    print(
        f"Python {sys.version.split()[0]}: work at {low * 1000:g} ms over work at 5 ms, "
        f"{args.rounds} rounds"
    )
    ratios: dict[str, list[float]] = {name: [] for name in KINDS}
    for round_number in range(args.rounds):
        for name, (kind, keys) in KINDS.items():
            pair = [0.005, low] if round_number % 2 == 0 else [low, 0.005]
            done = {interval: work(kind, args.seconds, interval, keys) for interval in pair}
            ratios[name].append(done[low] / max(1, done[0.005]))
    for name, values in ratios.items():
        print(
            f"  {name:28} {statistics.median(values):.3f}"
            f"  (range {min(values):.3f}-{max(values):.3f})"
        )


if __name__ == "__main__":
    main()
