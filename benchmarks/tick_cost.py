"""What one dashboard subscription tick costs the agent's thread in a busy service (issue 10),
part by part; with --against, the agent of another checkout in turns beside it.

Run: python benchmarks/tick_cost.py [--ticks 20] [--rate 2000] [--background 1000]
     python benchmarks/tick_cost.py --against CHECKOUT [--turns 3]
     python benchmarks/tick_cost.py --profile [--sort cumtime]   (the ticks' top functions)

The process has the shape of benchmarks/targets/service_target.py under wrk, without wrk:
`taskscope.install()` first, then `--background` tasks of the app's own, each sleeping in a
loop (one in a hundred every 0.5 s, the others 1-10 s), and a stream of short "request" tasks
made with `loop.create_task` from a loop callback (as aiohttp makes them on 3.14+, from its
protocol's `data_received`) at `--rate` a second, each awaiting `asyncio.sleep(0)` once and
finishing. The agent's history (1,000 finished tasks) is thus new at every tick.

A thread of the benchmark plays the agent's side of a compact subscription (0.5 s ticks):
a `Connection` of the agent's server over a socket pair (the other end read and dropped by
another thread), whose `send_delta` is called every 0.5 s, the code path the agent's thread
runs for a subscribed dashboard (`AgentServer.snapshot`, the delta against the last message,
the compact encoding, the send). Printed: the thread's CPU time per tick (`time.thread_time`,
which the machine's load disturbs less than the wall clock), median and lowest-highest over
`--ticks` ticks after two warm-up ticks, and its parts: build (`AgentServer.snapshot`), of
which the finished tasks' entries (`Tracker.finished_tasks`) and their records
(`finished_record`, timed by the wall clock: once per task), delta (`changes_between`),
encoding (`CompactEncoder.encode_chunks`), the rest (send, bookkeeping), and the garbage
collections that ran on the thread during the tick (set off by its allocations or the loop's;
their time is inside the parts above); then the tasks per snapshot and the changed rows per
delta.

--against CHECKOUT: fresh processes in turns (`--turns` of each), this checkout's agent and
CHECKOUT's (its directory first on PYTHONPATH), each process `--ticks` ticks; printed per
checkout the median of all ticks, and the ratio of the medians of processes run back to back.

--profile: cProfile over the ticks, the loop held (waiting on an event) during each profiled
tick, since the profiler hears every thread; the figures printed after it are inflated by it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import itertools
import json
import os
import pstats
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
TICK = 0.5
WARM_UP_TICKS = 2
LABELS = {
    "finished": "  history entries",
    "records": "  history records",
    "gc": "gc (inside parts)",
}
PARTS = ("total", "build", "finished", "records", "delta", "encode", "rest", "gc")


async def background(index: int) -> None:
    """A task of the app's own (as service_target.py's): wakes every 0.5 s or 1-10 s."""
    period = 0.5 if index % 100 == 0 else random.uniform(1.0, 10.0)
    for _wake in itertools.count():
        await asyncio.sleep(period)


async def handler() -> None:
    await asyncio.sleep(0)


async def request() -> None:
    """A request's task: a little async work, then done."""
    await handler()


def start_requests(loop: asyncio.AbstractEventLoop, rate: float) -> None:
    """Make `rate` request tasks a second with `loop.create_task`, from a loop callback every
    5 ms (no task makes them: aiohttp's come from its protocol's `data_received`)."""
    started = loop.time()
    made = [0]

    def make() -> None:
        due = int((loop.time() - started) * rate)
        create_task = loop.create_task
        for _ in range(due - made[0]):
            create_task(request())
        made[0] = due
        loop.call_later(0.005, make)

    loop.call_soon(make)


class Parts:
    """CPU seconds of the ticking thread spent in each timed call during one tick."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self.thread: int | None = None
        self.gc_started = 0.0

    def timed(self, part: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != self.thread:
                return func(*args, **kwargs)  # the agent's own thread: not this tick
            started = time.thread_time()
            try:
                return func(*args, **kwargs)
            finally:
                self.spent[part] = self.spent.get(part, 0.0) + time.thread_time() - started

        return wrapper

    def timed_each(self, part: str, func: Callable[..., Any]) -> Callable[..., Any]:
        """`timed` for a function called once per task: by the wall clock (a thread-CPU clock
        read costs a system call, which would add more than the call itself takes)."""
        clock = time.perf_counter

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != self.thread:
                return func(*args, **kwargs)
            started = clock()
            try:
                return func(*args, **kwargs)
            finally:
                self.spent[part] = self.spent.get(part, 0.0) + clock() - started

        return wrapper

    def collector(self, phase: str, _info: dict[str, int]) -> None:
        """A `gc.callbacks` entry: the collections run on the ticking thread (set off by
        its allocations or the loop's), whose time is in the tick's parts too."""
        if threading.get_ident() != self.thread:
            return
        if phase == "start":
            self.gc_started = time.thread_time()
        else:
            self.spent["gc"] = self.spent.get("gc", 0.0) + time.thread_time() - self.gc_started


def drain(sock: socket.socket, received: list[int]) -> None:
    """The client's end: read and drop everything (its CPU is not the agent's)."""
    while True:
        try:
            data = sock.recv(1 << 20)
        except OSError:
            return
        if not data:
            return
        received[0] += len(data)


def run_ticks(args: argparse.Namespace) -> dict[str, Any]:
    """Run the service's shape and tick a subscription from a thread; the figures per tick."""
    import taskscope
    from taskscope.agent import _state, connection as connection_module, introspect
    from taskscope.protocol import CompactEncoder

    taskscope.install(report=False)
    server = _state["server"]
    tracker = _state["tracker"]
    parts = Parts()
    gc.callbacks.append(parts.collector)
    server.snapshot = parts.timed("build", server.snapshot)
    tracker.finished_tasks = parts.timed("finished", tracker.finished_tasks)
    introspect.finished_record = parts.timed_each("records", introspect.finished_record)
    connection_module.changes_between = parts.timed("delta", connection_module.changes_between)
    ours, theirs = socket.socketpair()
    received = [0]
    threading.Thread(target=drain, args=(theirs, received), daemon=True).start()
    connection = connection_module.Connection(server, ours, os.getpid())
    connection.greeted = True
    connection.interval = TICK
    connection.encoder = encoder = CompactEncoder(server.tables)
    encoder.encode_chunks = parts.timed("encode", encoder.encode_chunks)  # type: ignore[method-assign]
    profile = cProfile.Profile() if args.profile else None
    ticks: list[dict[str, float]] = []
    done = threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []
    held, resume = threading.Event(), threading.Event()

    def hold() -> None:
        """--profile: the loop waits (no Python code runs on it) while a tick is profiled:
        the profiler hears every thread, and counts the loop's turns in the tick's time."""
        held.set()
        resume.wait()

    changed: list[int] = []  # rows of the tick's delta
    original_send = connection.send

    def send(message: Any) -> None:
        if message.get("type") == "delta":
            changed.append(len(message["delta"]["changed"]))
        original_send(message)

    connection.send = send  # type: ignore[method-assign]

    def subscriber() -> None:
        parts.thread = threading.get_ident()
        for number in range(WARM_UP_TICKS + args.ticks):
            due = time.monotonic() + TICK
            parts.spent = {}
            changed[:] = []
            profiling = profile is not None and number >= WARM_UP_TICKS
            if profiling:
                held.clear()
                resume.clear()
                loops[0].call_soon_threadsafe(hold)
                held.wait()
                profile.enable()
            started = time.thread_time()
            connection.send_delta(first=number == 0)
            spent = time.thread_time() - started
            if profiling:
                profile.disable()
                resume.set()
            if number >= WARM_UP_TICKS:
                figures = dict(parts.spent, total=spent, changed=changed[0] if changed else 0)
                figures["rest"] = spent - sum(
                    figures.get(part, 0.0) for part in ("build", "delta", "encode")
                )
                figures["tasks"] = len(connection.previous)
                ticks.append(figures)
            time.sleep(max(0.0, due - time.monotonic()))
        done.set()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loops.append(loop)
        workers = [
            asyncio.create_task(background(index), name=f"background-{index}")
            for index in range(args.background)
        ]
        start_requests(loop, args.rate)
        await asyncio.sleep(1.0)  # the history full of requests, the workers asleep
        threading.Thread(target=subscriber, name="tick-subscriber", daemon=True).start()
        await asyncio.to_thread(done.wait)
        for worker in workers:
            worker.cancel()

    asyncio.run(main())
    ours.close()
    result: dict[str, Any] = {"ticks": ticks}
    if profile is not None:
        stats = pstats.Stats(profile)
        stats.sort_stats(args.sort)
        stats.print_stats(30)
    return result


def summary(values: list[float]) -> str:
    return (
        f"{statistics.median(values) * 1e3:6.2f} ({min(values) * 1e3:.2f}-{max(values) * 1e3:.2f})"
    )


def print_ticks(title: str, ticks: list[dict[str, float]]) -> None:
    print(f"{title}: {len(ticks)} ticks; agent-side CPU ms per tick, median (lowest-highest)")
    for part in PARTS:
        values = [tick.get(part, 0.0) for tick in ticks]
        label = LABELS.get(part, part)
        print(f"  {label:20}{summary(values)}")
    tasks = [tick["tasks"] for tick in ticks]
    changed = [tick["changed"] for tick in ticks]
    print(
        f"  tasks per snapshot {statistics.median(tasks):.0f} ({min(tasks):.0f}-{max(tasks):.0f}),"
        f" changed rows per delta {statistics.median(changed):.0f}"
        f" ({min(changed):.0f}-{max(changed):.0f})"
    )


def against(args: argparse.Namespace) -> None:
    checkouts = {"this checkout": str(REPO), args.against: str(Path(args.against).resolve())}
    runs: dict[str, list[list[dict[str, float]]]] = {name: [] for name in checkouts}

    def one(path: str) -> list[dict[str, float]]:
        env = dict(os.environ, PYTHONPATH=path)
        command = [sys.executable, str(HERE), "--child", "--ticks", str(args.ticks)]
        command += ["--rate", str(args.rate), "--background", str(args.background)]
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        return list(json.loads(done.stdout.splitlines()[-1])["ticks"])

    for _ in range(args.turns):
        for name, path in checkouts.items():
            runs[name].append(one(path))
    print(
        f"python {sys.version.split()[0]}: {args.turns} turns of fresh processes, "
        f"{args.background:,} background tasks, {args.rate:,.0f} requests/s"
    )
    for name, turns in runs.items():
        print_ticks(name[:40], [tick for turn in turns for tick in turn])
    base_name = args.against
    ratios = [
        statistics.median(tick["total"] for tick in ours)
        / statistics.median(tick["total"] for tick in theirs)
        for ours, theirs in zip(runs["this checkout"], runs[base_name], strict=True)
    ]
    print(
        f"this checkout / {base_name}, medians of back-to-back processes: "
        f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--rate", type=float, default=2000, help="request tasks a second")
    parser.add_argument("--background", type=int, default=1000, help="the app's own tasks")
    parser.add_argument("--against", metavar="CHECKOUT", help="compare with its agent")
    parser.add_argument("--turns", type=int, default=3, help="processes of each (--against)")
    parser.add_argument("--profile", action="store_true", help="cProfile the ticks")
    parser.add_argument("--sort", default="tottime", help="--profile's order (pstats key)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.against:
        against(args)
        return
    if not args.child:
        sys.path.insert(0, str(REPO))
    result = run_ticks(args)
    if args.child:
        print(json.dumps(result))
    else:
        print_ticks(
            f"python {sys.version.split()[0]}, {args.background:,} background tasks, "
            f"{args.rate:,.0f} requests/s",
            result["ticks"],
        )


if __name__ == "__main__":
    main()
