"""What the agent costs a trio program: per spawned task on trio's thread (the instrument that
notes each task's creator and ending), and per second of an idle run (the heartbeat).

Run: python benchmarks/trio_cost.py [--procs 5] [--count 20000] [--failing]
     python benchmarks/trio_cost.py --idle [--procs 5] [--seconds 5]
     either with [--against CHECKOUT] (that checkout's agent beside this one's)
     python benchmarks/trio_cost.py --parts [--rounds 7] [--count 10000] [--failing]

--failing: each task raises instead, a ValueError three calls deep chained from a KeyError
(as `creation_cost.py --failing`), so that the instrument notes its traceback (taskscope/
agent/failures.py); each nursery's group of 1,000 is caught. With --parts a last
configuration is the agent's instrument with that note left out: the difference is its cost.

--parts: one process, one run, rounds interleaved: the instrument's parts, each added to the
run for its round through trio's public add_instrument: none; one with both hooks doing
nothing (trio's own cost of calling an instrument); the agent's spawn hook alone; its exit
hook alone; the agent's instrument. Printed: us per task, best of the rounds, and added.

Spawn cost: fresh processes in turns (`--procs` turns); in each turn one process with no
agent, one with `taskscope.install()` before `trio.run` (creators and history tracked: the
instrument), one with the agent but `track_tasks` off (no instrument: the heartbeat and
looks only), and with --against one with CHECKOUT's agent (its directory first on
PYTHONPATH). Each process waits until the agent has found its run and its heartbeat has run
(and, tracking, its instrument is in), then spawns `--count` no-op tasks (each awaits
`trio.lowlevel.checkpoint()` once) in nurseries of 1,000, five times, and prints the best:
trio's thread's CPU time (`time.thread_time`) per task. Printed: us per task (best and
median over the turns), the ratio to the no-agent process of the same turn (median and
range), and the difference of the medians.

--idle: the same turns, each process a trio run sleeping for `--seconds` after its agent has
found it; printed: the process's CPU time per second (every thread: trio's, and the agent's)
and trio's thread's alone, in ms per s, each against the no-agent process of its turn.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
BATCH = 1000
MODES = ("no agent", "agent (tracking)", "agent, track_tasks off")
#: --parts --failing: the agent's instrument with the traceback note left out.
NO_NOTE = "the agent's instrument, no traceback"


def _instrumented(trio: Any) -> bool:
    """Whether an instrument of taskscope's is in this run (trio's private runner: the
    benchmark's own check)."""
    runner = trio.lowlevel.current_task()._runner
    return any(type(each).__module__.startswith("taskscope") for each in runner.instruments["_all"])


async def _until_found(trio: Any, mode: str) -> None:
    """Wait until the agent has found the run and its heartbeat has run once (and, tracking
    tasks, its instrument is in): what it costs from then on is measured. Read from the
    agent's internals (those of `--against`'s checkout too): the benchmark's own check."""
    if mode == "no agent":
        return
    import taskscope.agent as agent
    from taskscope.agent import trio_runs

    deadline = time.monotonic() + 30  # (a run found by a snapshot: its first beat may wait)
    while time.monotonic() < deadline:
        agent.snapshot(include_finished=False)  # a look, which finds the run
        watch = trio_runs.watch_of(agent._state["tracker"])
        beating = any(run.beat_ran is not None for run in watch.runs.values())
        if beating and (mode != "agent (tracking)" or _instrumented(trio)):
            return
        await trio.sleep(0.05)
    raise SystemExit(f"{mode}: the agent never found the run")


def _parse(row: str) -> int:
    try:
        return {"a": 1}[row]
    except KeyError as error:
        raise ValueError(row) from error


def _check(row: str) -> int:
    return _parse(row)


async def _failing() -> None:
    _check("b")


def _task_and_spawn(trio: Any, args: argparse.Namespace) -> Any:
    """`spawn(count)`: spawns `count` tasks (no-op, or failing with --failing) in nurseries
    of `BATCH`, and returns trio's thread's CPU seconds per task."""

    async def no_op() -> None:
        await trio.lowlevel.checkpoint()

    task = _failing if args.failing else no_op

    async def batch() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(BATCH):
                nursery.start_soon(task)

    async def spawn(count: int) -> float:
        started = time.thread_time()
        for _ in range(count // BATCH):
            try:
                await batch()
            except ExceptionGroup:  # (--failing)
                pass
        return (time.thread_time() - started) / (count // BATCH * BATCH)

    return spawn


def child(args: argparse.Namespace) -> None:
    """One process: prints its figure as JSON."""
    mode = args.child
    if mode != "no agent":
        if mode == "agent, track_tasks off":
            os.environ["TASKSCOPE_TRACK"] = "0"
        import taskscope

        taskscope.install()
    import trio

    spawn = _task_and_spawn(trio, args)

    async def main() -> dict[str, float]:
        await _until_found(trio, mode)
        if args.idle:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            process, thread, wall = (
                usage.ru_utime + usage.ru_stime,
                time.thread_time(),
                time.monotonic(),
            )
            await trio.sleep(args.seconds)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            elapsed = time.monotonic() - wall
            return {
                "process": (usage.ru_utime + usage.ru_stime - process) / elapsed,
                "thread": (time.thread_time() - thread) / elapsed,
            }
        await spawn(args.count)  # warm-up
        return {"per_task": min([await spawn(args.count) for _ in range(5)])}

    print(json.dumps(trio.run(main)))


def parts(args: argparse.Namespace) -> None:
    """--parts: the instrument's parts in one run, rounds interleaved."""
    import trio

    from taskscope.agent import trio_runs
    from taskscope.agent.tracker import Tracker

    class Idle:
        def task_spawned(self, task: Any) -> None:
            pass

        def task_exited(self, task: Any) -> None:
            pass

    class SpawnOnly(trio_runs.TaskWatch):
        __slots__ = ()

        def task_exited(self, task: Any) -> None:
            self.table.pop(id(task), None)

    class ExitOnly(trio_runs.TaskWatch):
        __slots__ = ()

        def task_spawned(self, task: Any) -> None:
            pass

    spawn = _task_and_spawn(trio, args)
    from taskscope.agent.failures import TracebackNote

    async def main() -> dict[str, list[float]]:
        watch = trio_runs.TrioWatch(Tracker())  # not installed: it adds no instrument itself
        [(run, _runner)] = watch.live_runs()
        configs: dict[str, Any] = {
            "no instrument": None,
            "both hooks doing nothing": Idle(),
            "the spawn hook": SpawnOnly(watch, run),
            "the exit hook": ExitOnly(watch, run),
            "the agent's instrument": trio_runs.TaskWatch(watch, run),
        }
        if args.failing:
            configs[NO_NOTE] = trio_runs.TaskWatch(watch, run)
        times: dict[str, list[float]] = {name: [] for name in configs}
        await spawn(args.count)
        for _ in range(args.rounds):
            for name, instrument in configs.items():
                if name == NO_NOTE:  # (the note is made by trio_runs._ending)
                    setattr(trio_runs, "TracebackNote", lambda error: None)  # noqa: B010
                if instrument is not None:
                    trio.lowlevel.add_instrument(instrument)
                times[name].append(await spawn(args.count))
                if instrument is not None:
                    trio.lowlevel.remove_instrument(instrument)
                setattr(trio_runs, "TracebackNote", TracebackNote)  # noqa: B010
        return times

    times = trio.run(main)
    base = min(times["no instrument"])
    what = "failing" if args.failing else "no-op"
    print(
        f"python {sys.version.split()[0]}, trio {trio.__version__}: {args.rounds} interleaved "
        f"rounds of {args.count:,} {what} tasks; trio's thread CPU us per task"
    )
    print(f"  {'':36}{'best':>8}{'+ us':>8}")
    for name, values in times.items():
        print(f"  {name:36}{min(values) * 1e6:>8.2f}{(min(values) - base) * 1e6:>8.2f}")


def _run(mode: str, args: argparse.Namespace, path: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=path)
    env.pop("TASKSCOPE_TRACK", None)
    command = [sys.executable, str(HERE), "--child", mode, "--count", str(args.count)]
    command += ["--seconds", str(args.seconds)] + (["--idle"] if args.idle else [])
    command += ["--failing"] if args.failing else []
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode}: {done.stderr.strip()[-400:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def turns(args: argparse.Namespace) -> None:
    modes = {mode: str(REPO) for mode in MODES}
    if args.against:
        modes[f"against {args.against}"] = str(Path(args.against).resolve())
    figures: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for _turn in range(args.procs):
        for mode, path in modes.items():
            figures[mode].append(_run(mode, args, path))
    import trio

    what = ", failing tasks" if args.failing else ""
    print(f"python {sys.version.split()[0]}, trio {trio.__version__}, {args.procs} turns{what}")
    keys = ("process", "thread") if args.idle else ("per_task",)
    scale, unit = (1e3, "ms CPU per s") if args.idle else (1e6, "us per task, trio's thread CPU")
    for key in keys:
        what = {"process": "whole process", "thread": "trio's thread", "per_task": "spawn"}[key]
        print(f"{what} ({unit}):")
        print(f"  {'':28}{'best':>8}{'median':>8}{'x median':>10}{'x range':>14}{'+ median':>10}")
        base = [figure[key] for figure in figures["no agent"]]
        for mode, rows in figures.items():
            values = [row[key] for row in rows]
            ratios = [value / plain for value, plain in zip(values, base, strict=True) if plain]
            ratio = f"{statistics.median(ratios):>9.2f}x" if ratios else f"{'-':>10}"
            spread = f"{min(ratios):>8.2f}-{max(ratios):.2f}x" if ratios else ""
            added = (statistics.median(values) - statistics.median(base)) * scale
            print(
                f"  {mode[:28]:28}{min(values) * scale:>8.3f}"
                f"{statistics.median(values) * scale:>8.3f}{ratio}{spread:>14}{added:>10.3f}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=5)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--idle", action="store_true")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--against", default=None)
    parser.add_argument("--parts", action="store_true")
    parser.add_argument("--failing", action="store_true", help="tasks that raise")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args)
    elif args.parts:
        parts(args)
    else:
        turns(args)


if __name__ == "__main__":
    main()
