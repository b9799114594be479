"""How long `taskscope ps PID` takes on a program whose loop runs steps of Python of a few
milliseconds back to back: the case where the loop's thread keeps the agent's from the GIL.

Run: python benchmarks/gil_starvation.py [--steps 2,4,6] [--asks 3] [--switch-interval S]
                                          [--pause S] [--run] [--trio]

Each step length gets a fresh program (one task: `while perf_counter() < until: pass` for that
many milliseconds, then `await asyncio.sleep(0)`), run by this interpreter with no taskscope in
it; then `taskscope ps PID` is timed once (it injects the agent) and `--asks` times more (the
agent already there). `--switch-interval` has the program set `sys.setswitchinterval(S)`
first, to compare; `--run` starts the program with `taskscope run` (the agent there from the
start: the first `ps` injects nothing); `--trio` makes the program a trio run (`trio.sleep(0)`
between the steps), which no asyncio heartbeat watches. Printed: seconds per command, or
what a failed one said last (`the agent ... did not answer within N s` past `--timeout`).

Why (CPython's `take_gil`): a thread waiting for the GIL waits the switch interval (5 ms) and
then asks the holder to drop it, unless it was woken meanwhile. The loop's thread drops the
GIL in `select(0)` at every turn, which wakes the waiter, and takes it back before the waiter
runs: with turns shorter than the interval the waiter never asks. Every system call of the
agent's thread (its imports' file reads, its socket calls) is followed by such a wait.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: The busy program, for a library (`asyncio` or `trio`): its steps, then a checkpoint.
BUSY = """
import sys, time
import {library}
step, ready, interval = float(sys.argv[1]), sys.argv[2], sys.argv[3]
if interval != "default":
    sys.setswitchinterval(float(interval))

async def busy():
    while True:
        until = time.perf_counter() + step
        while time.perf_counter() < until:
            pass
        await {library}.sleep(0)
"""

TARGET = (
    BUSY.format(library="asyncio")
    + """
async def main():
    task = asyncio.create_task(busy(), name="busy")
    open(ready, "w").close()
    await task

asyncio.run(main())
"""
)

TRIO_TARGET = (
    BUSY.format(library="trio")
    + """
async def main():
    async with trio.open_nursery() as nursery:
        nursery.start_soon(busy, name="busy")
        open(ready, "w").close()

trio.run(main)
"""
)


def timed_ps(pid: int, timeout: float) -> float | str:
    """Seconds `ps` took, or the last line it wrote when it failed."""
    started = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "taskscope", "ps", "--timeout", str(timeout), str(pid)],
            capture_output=True,
            text=True,
            timeout=timeout + 30,
        )
    except subprocess.TimeoutExpired:
        return "timed out"
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        return f"failed ({lines[-1] if lines else result.returncode})"
    return elapsed


def one_program(
    step_ms: float,
    asks: int,
    interval: str,
    timeout: float,
    pause: float,
    with_agent: bool,
    trio: bool = False,
) -> list[float | str]:
    with tempfile.TemporaryDirectory() as workdir:
        ready = os.path.join(workdir, "ready")
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        script = os.path.join(workdir, "busy.py")
        Path(script).write_text(TRIO_TARGET if trio else TARGET)
        start = (
            [sys.executable, "-m", "taskscope", "run", script]
            if with_agent
            else [
                sys.executable,
                script,
            ]
        )
        program = subprocess.Popen(
            [*start, str(step_ms / 1000), ready, interval],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while not os.path.exists(ready):
                if time.monotonic() > deadline or program.poll() is not None:
                    raise SystemExit("the program did not start")
                time.sleep(0.01)
            time.sleep(0.5)
            times = []
            for ask in range(1 + asks):
                if ask and pause:
                    time.sleep(pause)
                times.append(timed_ps(program.pid, timeout))
            return times
        finally:
            program.kill()
            program.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="2,4,6", help="step lengths in ms, comma-separated")
    parser.add_argument("--asks", type=int, default=3, help="`ps` again, the agent there")
    parser.add_argument("--switch-interval", default="default", help="set in the program first")
    parser.add_argument("--timeout", type=float, default=90.0, help="`ps --timeout`")
    parser.add_argument(
        "--pause", type=float, default=0.0, help="seconds between one `ps` and the next"
    )
    parser.add_argument(
        "--run", action="store_true", help="start the program with `taskscope run` (no inject)"
    )
    parser.add_argument("--trio", action="store_true", help="a trio run instead of asyncio")
    args = parser.parse_args()
    how = "started with `taskscope run`" if args.run else "the agent injected by the first ps"
    what = "trio" if args.trio else "asyncio"
    print(f"Python {sys.version.split()[0]}, {what}, switch interval {args.switch_interval}, {how}")
    for step in (float(value) for value in args.steps.split(",")):
        times = one_program(
            step, args.asks, args.switch_interval, args.timeout, args.pause, args.run, args.trio
        )
        words = [took if isinstance(took, str) else f"{took:.2f} s" for took in times]
        first = "first ps" if args.run else "first ps (injects)"
        print(f"steps of {step:g} ms: {first} {words[0]}; then {', '.join(words[1:])}")


if __name__ == "__main__":
    main()
