"""What the agent's step watching and step timing cost a loop, per step, against no agent.

Run: python benchmarks/step_cost.py [--procs N] [--rounds N]

Two workloads, as step-heavy as a loop gets (steps that do nothing, so the figure is the
whole of the cost): `steps`, 100 tasks each awaiting asyncio.sleep(0) 200 times, and
`callbacks`, 20,000 loop.call_soon callbacks that do nothing. Each runs in fresh processes
(python -c), with no agent, with `taskscope.install()` (stalls watched from the agent's
thread: nothing runs per step) and with `taskscope.install(time_steps=True)` (every step
timed: the runtime figures); configurations interleaved so drift on the machine hits all
alike. Printed: microseconds per step (best and median of every round of every process) and
the ratio of each best and median to no agent's, with the spread of the ratio over processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import asyncio, json, sys, time
config, workload, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
if config != "none":
    import taskscope

async def worker(count):
    for _ in range(count):
        await asyncio.sleep(0)

async def steps():
    await asyncio.gather(*[worker(200) for _ in range(100)])
    return 100 * 200

async def callbacks():
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    left = [20000]
    def tick():
        left[0] -= 1
        if left[0] == 0:
            done.set_result(None)
    for _ in range(20000):
        loop.call_soon(tick)
    await done
    return 20000

async def main():
    if config == "taskscope":
        taskscope.install()
    elif config == "taskscope-timed":
        taskscope.install(time_steps=True)
    run = steps if workload == "steps" else callbacks
    await run()  # warm-up
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        count = await run()
        times.append((time.perf_counter() - started) / count * 1e6)
    print(json.dumps(times))

asyncio.run(main())
"""

CONFIGS = ["none", "taskscope", "taskscope-timed"]
LABELS = {
    "none": "no agent",
    "taskscope": "taskscope.install()",
    "taskscope-timed": "install(time_steps=True)",
}


def run_child(config: str, workload: str, rounds: int) -> list[float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("TASKSCOPE_TIME_STEPS", "TASKSCOPE_STALL_THRESHOLD"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, config, workload, str(rounds)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{config} {workload} failed:\n{result.stderr}")
    times: list[float] = json.loads(result.stdout)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=5, help="fresh processes per configuration")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per process")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}; {args.procs} processes x {args.rounds} rounds each")
    for workload in ("steps", "callbacks"):
        per_process: dict[str, list[list[float]]] = {config: [] for config in CONFIGS}
        for _ in range(args.procs):
            for config in CONFIGS:
                per_process[config].append(run_child(config, workload, args.rounds))
        print(f"\n{workload}: us per step (best / median), ratio to no agent (best / median)")
        base = [min(times) for times in per_process["none"]]
        base_best = min(base)
        base_median = statistics.median(t for times in per_process["none"] for t in times)
        for config in CONFIGS:
            flat = [t for times in per_process[config] for t in times]
            best, median = min(flat), statistics.median(flat)
            # The spread: each process's best against the no-agent process run next to it.
            ratios = [min(times) / b for times, b in zip(per_process[config], base, strict=True)]
            print(
                f"  {LABELS[config]:<26} {best:6.3f} / {median:6.3f} us   "
                f"{best / base_best:5.2f}x / {median / base_median:5.2f}x   "
                f"(per process {min(ratios):.2f}x-{max(ratios):.2f}x)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
