"""What tracking tasks (creators, creation chains, history) costs the host's loop thread per
task on no-op churn, part by part; with --against, the agent of another checkout beside it.

Run: python benchmarks/churn_cost.py [--count 10000] [--rounds 15] [--eager]
     python benchmarks/churn_cost.py --against CHECKOUT [--procs 5] [--eager]
     python benchmarks/churn_cost.py --instructions [--against CHECKOUT] [--eager]

Parts: one process, one loop, rounds interleaved; each round creates `--count` no-op tasks
(each awaits `asyncio.sleep(0)` once) with `asyncio.create_task` in gather batches of 1,000.
Configurations: no agent; a bare shadow of `loop.create_task` (calls the original, nothing
else); the same adding a done callback that does nothing (what asyncio charges for any done
callback: `loop.call_soon` makes a Handle, the loop runs it); the agent's `create_task` shadow
(parent, creation chain, birth note) with a done callback that only drops the birth note; the
agent's shadow and done callback (the history entry): what `taskscope.install()` adds per task.
Times are the loop thread's CPU time (`time.thread_time`), which other processes on a loaded
machine disturb less than the wall clock; printed: us per task, best and median of the rounds,
the ratio of the bests to no agent, and the spread of the ratios of rounds run back to back.

--instant: tasks that return without awaiting anything (with --eager they finish inside
create_task, and their history note is made at the loop's next turn).

--from-callback: each task made with `loop.create_task` by a protocol's `data_received`, one a
callback, as aiohttp makes each request's task on 3.14+: the creation chain goes through
asyncio's transport frames (`_read_ready`, `_read_ready__data_received`) up to
`Handle._run`, all new at each callback. A socketpair in the loop's thread: the callback
sends the next byte itself, so each turn of the loop reads one and makes one task; the
socket calls are in every configuration's count.

--instructions [--against CHECKOUT]: machine instructions per task counted by valgrind
(callgrind) instead of CPU time, no agent and each agent: steady on a loaded machine. The
loop (main) thread's only: the agent's idle thread wakes by the clock, so its count grows
with valgrind's pace, which the machine's load sets.

--against CHECKOUT: fresh processes in turns (`--procs` of each): no agent, this checkout's
`taskscope.install()`, and CHECKOUT's (its directory put first on PYTHONPATH); each process
prints the best of 5 rounds; ratios against the no-agent process of the same turn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import MethodType
from typing import Any

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
BATCH = 1000


async def no_op() -> None:
    await asyncio.sleep(0)


async def instant() -> None:
    pass


JOB = no_op


async def churn(count: int) -> float:
    """The loop thread's CPU seconds per task for `count` tasks made and awaited."""
    create_task, job = asyncio.create_task, JOB
    started = time.thread_time()
    for _ in range(count // BATCH):
        await asyncio.gather(*[create_task(job()) for _ in range(BATCH)])
    return (time.thread_time() - started) / (count // BATCH * BATCH)


async def churn_from_callback(count: int) -> float:
    """`churn`, each task made by a protocol's `data_received` (see --from-callback)."""
    loop = asyncio.get_running_loop()
    reading, writing = socket.socketpair()
    writing.setblocking(False)
    made: list[asyncio.Task[None]] = []
    finished = loop.create_future()
    job = JOB

    class Maker(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            made.append(loop.create_task(job()))
            if len(made) < count:
                writing.send(b"x")
            elif not finished.done():
                finished.set_result(None)

    transport, _ = await loop.connect_accepted_socket(Maker, reading)
    started = time.thread_time()
    writing.send(b"x")
    await finished
    await asyncio.gather(*made)
    spent = time.thread_time() - started
    transport.close()
    writing.close()
    return spent / count


#: How a round makes its tasks: `churn` or `churn_from_callback`.
CHURN: Callable[[int], Any] = churn


def agent_shadow(loop: asyncio.AbstractEventLoop, history: bool = True) -> Callable[..., Any]:
    """The agent's create_task shadow for `loop`, from a tracker of its own (the loop's
    method is put back: the caller installs the shadow for its rounds only). Without
    `history`, its done callback only drops the task's birth note."""
    from taskscope.agent.loops import LoopRecord
    from taskscope.agent.tracker import Tracker

    tracker = Tracker()
    if not history:
        drop = tracker._born.pop

        def drop_note(task: Any, _ran: Any = None) -> None:
            drop(id(task), None)

        tracker.done_callback = drop_note
    record = LoopRecord(loop_id="benchmark", loop_ref=weakref.ref(loop))
    tracker.loops[id(loop)] = record
    tracker._install_factory(record, loop)
    # Taken off with delattr: asking the loop for its `__dict__` would slow every
    # configuration, no agent included (see tests/test_loop_attributes.py).
    shadow: Callable[..., Any] = loop.create_task
    delattr(loop, "create_task")
    delattr(loop, "call_exception_handler")
    return shadow


def _drop_shadow(loop: asyncio.AbstractEventLoop) -> None:
    if type(loop.create_task) is not MethodType:  # the shadow, an attribute of the loop's own
        delattr(loop, "create_task")


def parts(args: argparse.Namespace) -> None:
    async def run() -> dict[str, list[float]]:
        loop = asyncio.get_running_loop()
        if args.eager:
            loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        original = loop.create_task
        context = __import__("contextvars").Context()

        def nothing(_task: Any) -> None:
            pass

        def bare(coro: Any, **kwargs: Any) -> Any:
            return original(coro, **kwargs)

        def with_callback(coro: Any, **kwargs: Any) -> Any:
            task = original(coro, **kwargs)
            task.add_done_callback(nothing, context=context)
            return task

        configs: dict[str, Callable[..., Any] | None] = {
            "no agent": None,
            "bare shadow": bare,
            "+ no-op done callback": with_callback,
            "agent's shadow, no history": agent_shadow(loop, history=False),
            "agent (shadow + history)": agent_shadow(loop),
        }
        times: dict[str, list[float]] = {name: [] for name in configs}
        await CHURN(args.count)  # warm-up
        for _ in range(args.rounds):
            for name, shadow in configs.items():
                if shadow is None:
                    _drop_shadow(loop)
                else:
                    loop.create_task = shadow  # type: ignore[method-assign]
                times[name].append(await CHURN(args.count))
        _drop_shadow(loop)
        return times

    times = asyncio.run(run())
    base = times["no agent"]
    factory = _shape(args)
    print(
        f"python {sys.version.split()[0]}, {factory}: {args.rounds} interleaved rounds of "
        f"{args.count:,} no-op tasks; loop thread CPU us per task"
    )
    print(f"{'':32}{'best':>7}{'median':>8}{'x best':>8}{'x spread':>13}{'+ us':>7}")
    for name, values in times.items():
        ratios = [value / plain for value, plain in zip(values, base, strict=True)]
        print(
            f"{name:32}{min(values) * 1e6:>7.2f}{statistics.median(values) * 1e6:>8.2f}"
            f"{min(values) / min(base):>7.2f}x{min(ratios):>7.2f}-{max(ratios):.2f}x"
            f"{(min(values) - min(base)) * 1e6:>7.2f}"
        )


def _shape(args: argparse.Namespace) -> str:
    factory = "eager_task_factory" if args.eager else "lazy tasks"
    return factory + (", made by data_received" if args.from_callback else "")


def child(args: argparse.Namespace) -> None:
    """One process of --against: the best of 5 rounds, as JSON."""

    async def run() -> float:
        if args.eager:
            asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        if args.child == "agent":
            import taskscope

            taskscope.install()
        await CHURN(args.count)
        if args.instructions:  # counted from outside: one pass, nothing else
            return 0.0
        return min([await CHURN(args.count) for _ in range(5)])

    print(json.dumps({"per_task": asyncio.run(run())}))


def instructions(args: argparse.Namespace) -> None:
    """--instructions: machine instructions per task, counted by valgrind (callgrind), for
    no agent, this checkout's and CHECKOUT's: each process makes tasks once, with 2,000
    and with 2,000 + `--count`; the difference over `--count` is per task, start-up and
    imports cancelling out. Unlike CPU time it does not move with the machine's load."""
    checkouts = {"this checkout": str(REPO)}
    if args.against:
        checkouts[args.against] = str(Path(args.against).resolve())

    def counted(path: str, mode: str, count: int) -> int:
        """The loop thread's instructions: the main thread's, counted apart from the agent's
        (its idle thread wakes by the clock, and valgrind's pace moves with the load)."""
        env = dict(os.environ, PYTHONPATH=path)
        with tempfile.TemporaryDirectory() as directory:
            out = os.path.join(directory, "callgrind.out")
            command = ["valgrind", "--tool=callgrind", "--separate-threads=yes"]
            command += [f"--callgrind-out-file={out}", sys.executable, str(HERE)]
            command += ["--child", mode, "--count", str(count), "--instructions"]
            command += ["--eager"] if args.eager else []
            command += ["--instant"] if args.instant else []
            command += ["--from-callback"] if args.from_callback else []
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise SystemExit(f"valgrind failed: {done.stderr[-300:]}")
            try:
                text = Path(f"{out}-01").read_text()
            except OSError:
                raise SystemExit(f"valgrind wrote no count: {done.stderr[-300:]}") from None
        found = re.search(r"^totals: (\d+)", text, re.MULTILINE)
        if found is None:
            raise SystemExit("valgrind's output has no totals line")
        return int(found.group(1))

    def per_task(path: str, mode: str) -> float:
        base = counted(path, mode, 2_000)
        return (counted(path, mode, 2_000 + args.count) - base) / args.count

    factory = _shape(args)
    print(f"python {sys.version.split()[0]}, {factory}: instructions per no-op task (callgrind)")
    plain = per_task(str(REPO), "none")
    print(f"{'no agent':20}{plain:>10,.0f}{1:>8.2f}x")
    for name, path in checkouts.items():
        value = per_task(path, "agent")
        print(f"{name[:20]:20}{value:>10,.0f}{value / plain:>8.2f}x")


def against(args: argparse.Namespace) -> None:
    checkouts = {"this checkout": str(REPO), args.against: str(Path(args.against).resolve())}
    runs: dict[str, list[float]] = {"no agent": [], **{name: [] for name in checkouts}}
    ratios: dict[str, list[float]] = {name: [] for name in checkouts}

    def one(path: str, mode: str) -> float:
        env = dict(os.environ, PYTHONPATH=path)
        command = [sys.executable, str(HERE), "--child", mode, "--count", str(args.count)]
        if args.eager:
            command.append("--eager")
        if args.instant:
            command.append("--instant")
        if args.from_callback:
            command.append("--from-callback")
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        return float(json.loads(done.stdout)["per_task"])

    for _ in range(args.procs):
        plain = one(str(REPO), "none")
        runs["no agent"].append(plain)
        for name, path in checkouts.items():
            value = one(path, "agent")
            runs[name].append(value)
            ratios[name].append(value / plain)
    factory = _shape(args)
    print(
        f"python {sys.version.split()[0]}, {factory}: {args.procs} turns of fresh processes, "
        f"best of 5 rounds of {args.count:,} no-op tasks each; loop thread CPU us per task"
    )
    print(f"{'':20}{'best':>7}{'median':>8}{'x median':>10}{'x spread':>13}")
    for name, values in runs.items():
        spread = ratios.get(name, [1.0])
        print(
            f"{name[:20]:20}{min(values) * 1e6:>7.2f}{statistics.median(values) * 1e6:>8.2f}"
            f"{statistics.median(spread):>9.2f}x{min(spread):>7.2f}-{max(spread):.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--eager", action="store_true", help="asyncio.eager_task_factory")
    parser.add_argument(
        "--instant",
        action="store_true",
        help="tasks that return without awaiting (eager ones finish inside create_task)",
    )
    parser.add_argument("--against", metavar="CHECKOUT", help="compare with its agent")
    parser.add_argument("--procs", type=int, default=5, help="turns of processes (--against)")
    parser.add_argument(
        "--from-callback",
        action="store_true",
        help="tasks made by a protocol's data_received, one a callback (asyncio's frames)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count machine instructions per task with valgrind (see instructions())",
    )
    parser.add_argument("--child", choices=["none", "agent"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    global JOB, CHURN
    JOB = instant if args.instant else no_op
    CHURN = churn_from_callback if args.from_callback else churn
    if args.eager and sys.version_info < (3, 12):
        raise SystemExit("eager tasks exist from Python 3.12")
    if args.child:
        child(args)
    elif args.instructions:
        instructions(args)
    elif args.against:
        against(args)
    else:
        sys.path.insert(0, str(REPO))
        parts(args)


if __name__ == "__main__":
    main()
