"""From `taskscope dump PID` on a fresh process that never loaded taskscope to the JSON on
screen, in seconds: the whole command (interpreter start, injection, agent start, snapshot).

Run: python benchmarks/attach.py [--runs 10] [--mode idle|busy|sleep]

Each run starts a new plain asyncio program (tests/targets/injection_target.py), times the
first `taskscope dump` (which injects the agent) and a second one (which reuses it).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = REPO / "tests" / "targets" / "injection_target.py"


def timed_dump(pid: int) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "taskscope", "dump", str(pid)], capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0 or not result.stdout.startswith("{"):
        raise SystemExit(f"dump failed: {result.stderr.strip()}")
    return elapsed


def one_run(mode: str, workdir: str) -> tuple[float, float]:
    ready = os.path.join(workdir, f"ready-{time.monotonic_ns()}")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    target = subprocess.Popen(
        [sys.executable, str(TARGET), mode, ready],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(ready):
            if time.monotonic() > deadline:
                raise SystemExit("target did not start")
            time.sleep(0.01)
        first = timed_dump(target.pid)
        second = timed_dump(target.pid)
    finally:
        target.send_signal(signal.SIGUSR1)
        try:
            target.wait(timeout=30)
        except subprocess.TimeoutExpired:
            target.kill()
    return first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--mode", default="idle", choices=["idle", "busy", "sleep"])
    args = parser.parse_args()
    firsts, seconds = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(args.runs):
            first, second = one_run(args.mode, workdir)
            firsts.append(first)
            seconds.append(second)
    print(f"Python {sys.version.split()[0]}, target mode {args.mode}, {args.runs} fresh processes")
    print(
        f"first dump (injects the agent): median {statistics.median(firsts):.3f} s, "
        f"max {max(firsts):.3f} s"
    )
    print(
        f"second dump (agent already there): median {statistics.median(seconds):.3f} s, "
        f"max {max(seconds):.3f} s"
    )


if __name__ == "__main__":
    main()
