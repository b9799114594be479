"""What watching for trio runs as they start costs: a program that never imports trio (until
trio is imported, the agent's `sys.monitoring` callback hears of every module the import
system loads: taskscope/agent/trio_starts.py), and the start of each `trio.run`.

Run: python benchmarks/trio_starts_cost.py [--procs 7] [--modules 2000] [--against CHECKOUT]

Fresh processes in turns (`--procs` turns); in each turn one process with no agent, one with
`taskscope.install()` (this checkout), and with --against one with CHECKOUT's agent, which
one goes first changing from turn to turn. Each process, after the install, imports
`--modules` small modules (each defines one function; compiled ahead, so each import reads a
.pyc) and times it (best of five batches, per module), then times a pure-Python loop of
function calls (best of five, per call): code the callback never sees, which must not be
slowed. This checkout's agent process then times what the watch adds to one module load
without the noise of imports (a function returning a module, plain and watched as the import
system's `_load_unlocked` is). Last, each process imports trio and times `trio.run` of a
task that does nothing (best of seven rounds of 100): a run's start and end, with the
agent's instrument in the run from its start. Printed: the medians over the turns, and each
agent's ratio to the no-agent process of its turn (median and range).
"""

from __future__ import annotations

import argparse
import compileall
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BATCHES = 5


def child(checkout: str | None, directory: str, modules: int) -> None:
    """One process: prints its figures as JSON."""
    if checkout is not None:
        sys.path.insert(0, checkout)
        import taskscope

        taskscope.install(report=False)
        time.sleep(0.2)  # the agent's thread has started and looked once
    sys.path.insert(0, directory)
    per_batch = modules // BATCHES
    import_times = []
    for batch in range(BATCHES):
        names = [f"m_{batch}_{index}" for index in range(per_batch)]
        started = time.perf_counter()
        for name in names:
            __import__(name)
        import_times.append((time.perf_counter() - started) / per_batch)

    def step(value: int) -> int:
        return value + 1

    call_times = []
    for _ in range(BATCHES):
        started = time.perf_counter()
        value = 0
        for _ in range(500_000):
            value = step(value)
        call_times.append((time.perf_counter() - started) / 500_000)
    paired = _paired() if checkout == str(REPO) else {}
    assert "trio" not in sys.modules
    monitoring = getattr(sys, "monitoring", None)
    watching = monitoring is not None and "taskscope" in map(monitoring.get_tool, range(6))
    figures = {"import_us": min(import_times) * 1e6, "call_ns": min(call_times) * 1e9}
    figures["run_us"] = _run_start() * 1e6
    print(json.dumps(figures | {"watching": watching} | paired))


def _run_start() -> float:
    """Then, trio imported: seconds per `trio.run` of a task that does nothing (best of
    seven rounds of 100): what a run's start and end cost, the agent's instrument in it
    from its start."""
    import trio

    async def nothing() -> None:
        pass

    rounds = []
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(100):
            trio.run(nothing)
        rounds.append((time.perf_counter() - started) / 100)
    return min(rounds)


def _paired() -> dict[str, float]:
    """In this checkout's agent: what the watch adds to one module load, without the noise
    of imports: a function that returns a module, timed plain and then watched the way
    `_load_unlocked` is (the agent's own callback; the benchmark's own switch), ns per call."""
    import timeit
    import types

    from taskscope.agent import trio_starts

    module = types.ModuleType("some.module")

    def load() -> types.ModuleType:
        return module

    def best() -> float:
        return min(timeit.repeat(load, number=200_000, repeat=7)) / 200_000 * 1e9

    plain = best()
    monitoring: Any = getattr(sys, "monitoring", None)
    tool, watched = trio_starts._tool, trio_starts._load_code
    assert tool is not None and watched is not None
    events = monitoring.events.PY_RETURN
    monitoring.set_local_events(tool, watched, 0)
    monitoring.set_local_events(tool, load.__code__, events)
    trio_starts._load_code = load.__code__
    try:
        on = best()
    finally:
        monitoring.set_local_events(tool, load.__code__, 0)
        trio_starts._load_code = watched
        monitoring.set_local_events(tool, watched, events)
    return {"paired_on_ns": on, "paired_off_ns": plain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=7)
    parser.add_argument("--modules", type=int, default=2000)
    parser.add_argument("--against", default=None)
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        checkout, directory = args.child
        child(checkout or None, directory, args.modules)
        return
    modes = {"no agent": "", "agent": str(REPO)}
    if args.against:
        modes[f"agent of {args.against}"] = str(Path(args.against).resolve())
    with tempfile.TemporaryDirectory() as directory:
        per_batch = args.modules // BATCHES
        for batch in range(BATCHES):
            for index in range(per_batch):
                source = f"def f_{index}(x):\n    return x + {index}\n"
                Path(directory, f"m_{batch}_{index}.py").write_text(source)
        compileall.compile_dir(directory, quiet=1)
        results: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
        order = list(modes.items())
        for turn in range(args.procs):
            for mode, checkout in order[turn % len(order) :] + order[: turn % len(order)]:
                command = [sys.executable, __file__, "--modules", str(args.modules)]
                output = subprocess.run(
                    [*command, "--child", checkout, directory],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                results[mode].append(json.loads(output))
    print(f"python {sys.version.split()[0]}, {args.procs} turns, {args.modules} modules")
    base = results["no agent"]
    for mode, figures in results.items():
        parts = []
        for key, unit in (
            ("import_us", "us per module import"),
            ("call_ns", "ns per call"),
            ("run_us", "us per trio.run"),
        ):
            median = statistics.median(figure[key] for figure in figures)
            text = f"{median:.2f} {unit}"
            if mode != "no agent":
                ratios = [
                    figure[key] / plain[key] for figure, plain in zip(figures, base, strict=True)
                ]
                text += (
                    f" ({statistics.median(ratios):.3f}x, turns "
                    f"{min(ratios):.3f}-{max(ratios):.3f}x)"
                )
            parts.append(text)
        if "paired_on_ns" in figures[0]:
            added = statistics.median(
                figure["paired_on_ns"] - figure["paired_off_ns"] for figure in figures
            )
            parts.append(f"the callback: +{added:.0f} ns per module load")
        watching = sum(bool(figure["watching"]) for figure in figures)
        parts.append(f"watching for trio's runs in {watching}/{len(figures)}")
        print(f"{mode:>24}: " + "; ".join(parts))


if __name__ == "__main__":
    main()
