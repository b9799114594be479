"""How the dashboard scales: key-press latency and update cost at 10,000 tasks, and what
happens at 100,000 (grouped view, filtering, the flat table).

Runs the real `TaskscopeApp` headless (Textual's Pilot, 160x45) on a scripted source of
synthetic tasks: servers with connection handlers awaiting `StreamReader.read`, workers on a
queue, sleepers. Targets from issue #4: a key press answered within 100 ms and one update
applied within 250 ms at 10,000 tasks; 100,000 tasks still usable.

    python benchmarks/ui_scale.py                 # 10,000 and 100,000 tasks
    python benchmarks/ui_scale.py --tasks 10000 --big 0
    python benchmarks/ui_scale.py --keys --against ../main --rounds 4

`--keys` measures only key presses (idle, and while updates stream) at `--tasks`; with
`--against CHECKOUT` it runs this checkout and that one (say, main before a change) in fresh
processes, taking turns round after round, so that both meet the same load on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# `--code CHECKOUT`: measure that checkout's taskscope (this script's own by default).
sys.path.insert(
    0,
    sys.argv[sys.argv.index("--code") + 1]
    if "--code" in sys.argv
    else str(Path(__file__).resolve().parents[1]),
)

from textual import events
from textual.pilot import Pilot

from taskscope.protocol import WireDelta, WireSnapshot, WireTask
from taskscope.sources import (
    CancelResult,
    Capability,
    DeltaUpdate,
    ProcessIdentity,
    ProcessInfo,
    SnapshotUpdate,
    Unsupported,
    Update,
)
from taskscope.ui.app import TaskscopeApp

HERE = Path(__file__).resolve().parents[1]
NOW = 1_800_000_000.0
SIZE = (160, 45)


def make_task(number: int, total: int) -> WireTask:
    """Task `number` of a synthetic service: 1 is main; each 100th a server; the rest
    handlers under their server (or workers and sleepers)."""
    task_id = str(number)
    if number == 1:
        name, coro, parent, text, kind = "main", "main", None, "TaskGroup", "taskgroup"
    elif number % 100 == 0:
        name, coro, parent = f"server-{number}", "serve", "1"
        text, kind = "Server.serve_forever", "server"
    elif number % 7 == 0:
        name, coro, parent = f"worker-{number}", "worker", "1"
        text, kind = "Queue.get on jobs (0 items)", "queue_get"
    else:
        server = max(100, (number // 100) * 100)
        name, coro = f"conn-{number}", "handle"
        parent = str(server) if server < total else "1"
        text, kind = (
            f"StreamReader.read from 10.0.{number // 250 % 256}.{number % 250}",
            ("stream_read"),
        )
    return {
        "id": task_id,
        "loop": "L1",
        "name": name,
        "state": "pending",
        "coro": coro,
        "stack": [{"function": coro, "file": "service.py", "line": 10}],
        "awaiting": {"kind": kind, "text": text, "tasks": []},
        "awaited_by": [parent] if parent is not None and kind != "stream_read" else [],
        "parent": parent,
        "created_at": NOW - 600 + number * 0.001,
        "finished_at": None,
    }


def make_snapshot(total: int) -> WireSnapshot:
    return {
        "schema": 1,
        "pid": 1,
        "python": "3.12",
        "taken_at": NOW,
        "loops": [_loop(total)],
        "tasks": [make_task(number, total) for number in range(1, total + 1)],
        "cycles": [],
        "history_limit": 1000,
    }


def _loop(total: int) -> Any:
    return {
        "id": "L1",
        "thread_id": 1,
        "thread_name": "MainThread",
        "running": True,
        "closed": False,
        "blocked_for": None,
        "lag": 0.001,
        "blocking_stack": [],
        "type": "_UnixSelectorEventLoop",
        "tasks": total,
    }


def make_delta(total: int, changed: int, churn: int, round_: int) -> WireDelta:
    """`changed` tasks with a new await text, `churn` new tasks and `churn` removed ones."""
    tasks: list[WireTask] = []
    step = max(1, total // max(1, changed))
    for number in range(2, total + 1, step)[:changed]:
        task = make_task(number, total)
        assert task["awaiting"] is not None
        task["awaiting"]["text"] = f"sleep, {round_ % 60}.{number % 10} s left"
        tasks.append(task)
    base = total + 1 + round_ * churn
    tasks.extend(make_task(number, total) for number in range(base, base + churn))
    removed = [str(number) for number in range(base - churn, base)] if round_ else []
    return {
        "taken_at": NOW,
        "loops": [_loop(total)],
        "changed": tasks,
        "removed": removed,
        "cycles": [],
    }


class BenchSource:
    """A source that serves one snapshot, then whatever deltas the benchmark queues."""

    capabilities = Capability.PUSH | Capability.CANCEL | Capability.STACK_SOURCE
    label = "process 1 (benchmark)"

    def __init__(self, first: WireSnapshot) -> None:
        self.pid = 1
        self.first = first
        self.updates: queue.Queue[Update | None] = queue.Queue()
        self.closed = False

    def subscribe(self, interval: float) -> Iterator[Update]:
        yield SnapshotUpdate(self.first)
        while not self.closed:
            try:
                item = self.updates.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is None:
                return
            yield item

    def cancel(self, task_id: str, message: str | None = None) -> CancelResult:
        return CancelResult("requested")

    def stack(self, task_id: str) -> dict[str, Any]:
        return {"found": True, "stack": [], "created_from": [], "record": None}

    def snapshot(self, include_finished: bool = True) -> WireSnapshot:
        return self.first

    def detach(self) -> None:
        raise Unsupported("the benchmark's source has no agent to detach")

    def identity(self) -> ProcessIdentity:
        return {"pid": 1, "argv": ["python", "service.py"]}

    def process_info(self) -> ProcessInfo:
        return {"pid": 1, "command": "python service.py"}

    def close(self) -> None:
        self.closed = True


async def wait(pilot: Pilot[Any], condition: Any, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        await pilot.pause(0.005)


class ScreenWrites:
    """Each screen update the app writes (the moment a user sees it), with the measured state
    as it was then: a key's latency ends at the first write that shows its effect. (Noticing
    the state change by polling, then waiting for a later write, missed a write made in the
    same turn as the change, and took the next one, up to a second later.)"""

    def __init__(self, app: TaskscopeApp) -> None:
        self.log: list[tuple[float, object]] = []
        self.state: Callable[[], object] = lambda: None
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            self.log.append((time.perf_counter(), self.state()))
            original(screen, renderable)

        app._display = display  # type: ignore[method-assign]


async def key_latency(
    app: TaskscopeApp,
    pilot: Pilot[Any],
    key: str,
    presses: int,
    writes: ScreenWrites,
    state: Callable[[], object],
) -> list[float]:
    """Milliseconds from a key event reaching the app until the first screen update written
    with its effect (the measured state changed). (Pilot's press() is not used for timing:
    it waits for the app to be idle, which costs ~70 ms even for an empty app.)"""
    times = []
    writes.state = state
    for _ in range(presses):
        before = state()
        writes.log.clear()
        started = time.perf_counter()
        app.post_message(events.Key(key, None))
        deadline = started + 5
        shown = None
        # Polling on purpose: the benchmark observes the app from outside, with no hooks.
        while shown is None and time.perf_counter() < deadline:
            shown = next((at for at, seen in writes.log if seen != before), None)
            await asyncio.sleep(0.0005)
        times.append(((shown if shown is not None else deadline) - started) * 1000)
        await pilot.pause(0.03)
    return times


async def apply_delta(
    app: TaskscopeApp, pilot: Pilot[Any], delta: WireDelta
) -> tuple[float, float]:
    """(ms to apply the update to model and widgets, ms until the screen was repainted)."""
    app.buffer.put_delta(delta)
    started = time.perf_counter()
    app.apply_pending()
    applied = time.perf_counter()
    await pilot.pause()
    painted = time.perf_counter()
    return (applied - started) * 1000, (painted - started) * 1000


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return (
        f"median {statistics.median(values):6.1f} ms  p95 {p95:6.1f} ms  max {max(values):6.1f} ms"
    )


async def bench_tree(total: int) -> None:
    print(f"\n== {total:,} tasks, tree view")
    source = BenchSource(make_snapshot(total))
    app = TaskscopeApp(source, clock=lambda: NOW + 1, tree_limit=max(20_000, total))
    writes = ScreenWrites(app)
    selected: Callable[[], object] = lambda: app.selected  # noqa: E731
    started = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        await wait(pilot, lambda: app.updates_applied >= 1)
        await pilot.pause()
        elapsed = (time.perf_counter() - started) * 1000
        print(
            f"app start to first snapshot on screen: {elapsed:.0f} ms "
            f"({len(app.task_tree.task_ids):,} nodes)"
        )
        idle = await key_latency(app, pilot, "down", 30, writes, selected)
        print(f"key press (down), idle: {summary(idle)}")
        for changed, churn, label in (
            (100, 10, "100 changed, 10 new, 10 gone"),
            (1000, 100, "1,000 changed, 100 new, 100 gone"),
            (total, 100, f"all {total:,} changed, 100 new, 100 gone"),
        ):
            applies, paints = [], []
            for round_ in range(1, 6):
                apply_ms, paint_ms = await apply_delta(
                    app, pilot, make_delta(total, changed, churn, round_ + changed)
                )
                applies.append(apply_ms)
                paints.append(paint_ms)
            print(
                f"delta ({label}): apply {summary(applies)}; to screen median "
                f"{statistics.median(paints):.1f} ms"
            )
        loaded = await keys_while_streaming(app, pilot, source, writes, total, 30)
        print(f"key press while 2 Hz deltas (1,000 changed) stream: {summary(loaded)}")
        await pilot.press("q")


async def keys_while_streaming(
    app: TaskscopeApp,
    pilot: Pilot[Any],
    source: BenchSource,
    writes: ScreenWrites,
    total: int,
    presses: int,
) -> list[float]:
    """Key presses (down, then up) while deltas of 1,000 changed tasks, 20 new and 20 gone,
    stream in at 2 Hz through the real feed path. The deltas are made on a thread of their
    own, as a live source reads and decodes them on its feed thread."""
    streaming = threading.Event()
    streaming.set()

    def feed() -> None:
        round_ = 100
        while streaming.is_set():
            source.updates.put(DeltaUpdate(make_delta(total, 1000, 20, round_)))
            round_ += 1
            time.sleep(0.5)

    feeder = threading.Thread(target=feed, name="bench-feed")
    feeder.start()
    try:
        await pilot.pause(0.6)
        selected: Callable[[], object] = lambda: app.selected  # noqa: E731
        loaded = await key_latency(app, pilot, "down", presses, writes, selected)
        loaded += await key_latency(app, pilot, "up", presses, writes, selected)
    finally:
        streaming.clear()
        feeder.join()
    return loaded


async def bench_keys(total: int, presses: int) -> dict[str, list[float]]:
    """Key presses only (idle, then while updates stream), for `--keys`."""
    source = BenchSource(make_snapshot(total))
    app = TaskscopeApp(source, clock=lambda: NOW + 1, tree_limit=max(20_000, total))
    writes = ScreenWrites(app)
    async with app.run_test(size=SIZE) as pilot:
        await wait(pilot, lambda: app.updates_applied >= 1)
        await pilot.pause(0.5)
        idle = await key_latency(app, pilot, "down", presses, writes, lambda: app.selected)
        loaded = await keys_while_streaming(app, pilot, source, writes, total, presses)
        await pilot.press("q")
    return {"idle": idle, "loaded": loaded}


def compare_keys(args: argparse.Namespace) -> None:
    """This checkout and `--against` in turns, each round in fresh processes."""
    runs: dict[str, dict[str, list[list[float]]]] = {}
    checkouts = {"this checkout": HERE, str(args.against): Path(args.against).resolve()}
    for round_ in range(args.rounds):
        order = list(checkouts.items())
        if round_ % 2:
            order.reverse()  # neither always goes first
        for label, code in order:
            command = [sys.executable, __file__, "--keys", "--tasks", str(args.tasks)]
            command += ["--presses", str(args.presses), "--code", str(code), "--json"]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            measured = json.loads(result.stdout.strip().splitlines()[-1])
            for kind, values in measured.items():
                runs.setdefault(label, {}).setdefault(kind, []).append(values)
    for kind, title, keys in (
        ("idle", "idle", args.presses),
        ("loaded", "while 2 Hz deltas (1,000 changed) stream", 2 * args.presses),
    ):
        print(f"\nkey press, {title} ({args.rounds} rounds of {keys} keys):")
        for label, kinds in runs.items():
            rounds = kinds[kind]
            every = [value for values in rounds for value in values]
            per_round = "; ".join(
                f"{statistics.median(v):.0f}/{_p95(v):.0f}/{max(v):.0f}" for v in rounds
            )
            print(f"  {label:>16}: all {summary(every)}")
            print(f"  {'':>16}  per round (median/p95/max ms): {per_round}")


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


async def bench_big(total: int) -> None:
    print(f"\n== {total:,} tasks (grouped view, filter, table)")
    source = BenchSource(make_snapshot(total))
    app = TaskscopeApp(source, clock=lambda: NOW + 1)
    writes = ScreenWrites(app)
    started = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        await wait(pilot, lambda: app.updates_applied >= 1)
        await pilot.pause()
        elapsed = (time.perf_counter() - started) * 1000
        print(
            f"app start to first snapshot on screen: {elapsed:.0f} ms; "
            f"view: {app.view} (auto-grouped: {app.auto_grouped}); tree nodes: "
            f"{len(app.task_tree.task_ids)}"
        )
        group_keys = []
        for key in ("down", "up") * 10:
            group_keys += await key_latency(
                app, pilot, key, 1, writes, lambda: app.main.views.groups.cursor
            )
        print(f"key press (down/up) in grouped view: {summary(group_keys)}")
        applies = []
        for round_ in range(1, 4):
            apply_ms, _ = await apply_delta(app, pilot, make_delta(total, 1000, 100, round_))
            applies.append(apply_ms)
        print(f"delta (1,000 changed, 100 new/gone), grouped: apply {summary(applies)}")
        started = time.perf_counter()
        app.main._set_options(filter="worker")
        await pilot.pause()
        print(
            f"filter 'worker' ({len(app.main.views.groups.keys)} groups): "
            f"{(time.perf_counter() - started) * 1000:.0f} ms"
        )
        app.main._set_options(filter="")
        started = time.perf_counter()
        await pilot.press("l")
        await pilot.pause()
        print(
            f"switch to the flat table ({len(app.main.views.table.keys):,} rows): "
            f"{(time.perf_counter() - started) * 1000:.0f} ms"
        )
        table_keys = await key_latency(app, pilot, "down", 20, writes, lambda: app.selected)
        print(f"key press (down) in the table: {summary(table_keys)}")
        applies = []
        for round_ in range(4, 7):
            apply_ms, _ = await apply_delta(app, pilot, make_delta(total, 1000, 100, round_))
            applies.append(apply_ms)
        print(f"delta (1,000 changed, 100 new/gone), table: apply {summary(applies)}")
        started = time.perf_counter()
        app.main._set_options(filter="conn-4242")
        await pilot.press("t")
        await pilot.pause()
        print(
            f"filter 'conn-4242' then tree ({len(app.task_tree.task_ids)} nodes): "
            f"{(time.perf_counter() - started) * 1000:.0f} ms"
        )
        await pilot.press("q")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tree benchmark size")
    parser.add_argument("--big", type=int, default=100_000, help="large benchmark size (0: skip)")
    parser.add_argument("--keys", action="store_true", help="key presses only")
    parser.add_argument("--presses", type=int, default=40, help="keys per kind, with --keys")
    parser.add_argument("--against", help="with --keys: another checkout, measured in turns")
    parser.add_argument("--rounds", type=int, default=4, help="with --against")
    parser.add_argument("--code", help="the checkout whose taskscope is measured")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.keys and args.json:
        print(json.dumps(asyncio.run(bench_keys(args.tasks, args.presses))))
        return 0
    print(f"Python {sys.version.split()[0]}, Textual {__import__('textual').__version__}")
    if args.keys:
        if args.against:
            compare_keys(args)
        else:
            measured = asyncio.run(bench_keys(args.tasks, args.presses))
            print(f"key press, idle: {summary(measured['idle'])}")
            print(
                f"key press while 2 Hz deltas (1,000 changed) stream: {summary(measured['loaded'])}"
            )
        return 0
    if args.tasks:
        asyncio.run(bench_tree(args.tasks))
    if args.big:
        asyncio.run(bench_big(args.big))
    return 0


if __name__ == "__main__":
    sys.exit(main())
