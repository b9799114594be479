"""What the host program pays for the agent, each figure next to its goal (issue 10).

Run: python benchmarks/host_cost.py [--python PATH] [--tasks 100000] [--rounds 3] [--quick]
     [--only stall,attach,memory,churn,service (the default); also flight,dump] [--dumps 10]
     [--compare CHECKOUT]

Every figure is measured against the same program without an agent, in the same run, the
configurations interleaved (round after round, each in a fresh process), and printed with its
spread (lowest-highest over the rounds). Targets run on --python (default: this interpreter),
with this checkout on their path; `taskscope dump` runs on this interpreter, as a user's would.

- stall: a program with --tasks tasks (one in a hundred waking twice a second) and a probe task
  timing a 2 ms `asyncio.sleep` over and over. Its longest pause and its 99th percentile over a
  window of --seconds: with no agent; while `taskscope dump PID` runs once a second; while a
  subscription ticks at the dashboard's rate (0.5 s). Also the full collections (generation 2)
  the garbage collector ran meanwhile, and how long `dump` took end to end. The agent's first
  look at the tasks happens before the window; its pause is printed apart.
- attach: a program of 50 tasks that never loaded taskscope; its longest pause while the first
  `taskscope dump PID` injects the agent, against a window as long just before. With
  --against CHECKOUT, the same with that checkout's taskscope (its injection, and its staged
  copy of the agent, in a temporary directory of its own), in turns.
- memory: bytes per live task the agent keeps between two looks (after two compact dumps),
  by tracemalloc and by resident size, the agent thread's CPU time of a full snapshot
  (build and compact encoding, a look after the first) per task, and the time the garbage
  collector ran during such a look (`gc.callbacks`).
- flight: what the flight recorder costs when nobody looks: the `loop` program of `stall`
  (--tasks tasks, the probe) with no agent, with the agent idle (recorder off), and with the
  recorder on (60 s), nobody connected; over --seconds after the recorder's first looks: the
  longest probe pause, its 99th percentile, and the probe's turns per second, each as a ratio
  to no agent, per round.
- churn: no-op tasks created and awaited in batches, per task, with the agent's tracking on
  (creators and history) against none.
- dump: `taskscope dump PID` end to end on the `loop` program of `stall` (--tasks tasks, the
  agent running, its first look done), --dumps times a second apart, as a script repeating it
  would; with --compare CHECKOUT, that checkout's client (PYTHONPATH) in turns with this one,
  on the same process. Then a dump's timeline for each client (from the command's start:
  imports done, request sent, first and last byte of the reply, first and last output
  written, the end), and where one dump's time goes in-process: the agent's answer, reading
  it, the warnings, the JSON written; and the client's imports.
- service: a real aiohttp.web service (benchmarks/targets/service_target.py: a handler doing
  an `asyncio.sleep(0)` and answering a small JSON body, 1,000 background tasks) loaded by
  wrk (needs wrk: `apt-get install wrk`; not in the default --only), its requests per second
  as a ratio to no agent in the same round: with no agent; under `taskscope run` with nobody
  looking; with the dashboard's subscription (0.5 s ticks, the process facts once a second);
  with `taskscope dump PID` once a second; with aiomonitor's monitor started in the app,
  nobody connected; and with its web UI's task list (POST /api/live-tasks) read once a
  second. The server is pinned to CPU 0, wrk and the clients (this driver) to CPU 1
  (`taskset`; on a one-CPU machine, unpinned). Also the CPU time the server's other threads
  (the agent's, aiomonitor's) took, per second of load.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARGET = REPO / "benchmarks" / "targets" / "host_cost_target.py"
sys.path.insert(0, str(REPO))

GOAL_PAUSE_MS = 5.0
GOAL_BYTES = 300
GOAL_DUMP_S = 0.5
GOAL_ATTACH_MS = 20.0
GOAL_CHURN = 1.3
GOAL_SNAPSHOT_US = 2.0
GOAL_THROUGHPUT = 0.99
SERVICE_TARGET = REPO / "benchmarks" / "targets" / "service_target.py"


def target_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    return env


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    if not values:
        return "-"
    low, high = min(values), max(values)
    if fmt.format(low) == fmt.format(high):
        return fmt.format(low)
    return f"{fmt.format(low)}-{fmt.format(high)}"


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


@contextmanager
def loop_target(python: str, tasks: int, agent: str, workdir: str) -> Iterator[LoopRun]:
    stamp = time.monotonic_ns()
    ready, out = f"{workdir}/ready-{stamp}", f"{workdir}/out-{stamp}"
    process = subprocess.Popen(
        [python, str(TARGET), "loop", str(tasks), agent, ready, out],
        env=target_env(),
        stdout=subprocess.DEVNULL,
    )
    run = LoopRun(process, out)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(ready) or not Path(ready).read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the target did not start")
            time.sleep(0.02)
        yield run
    finally:
        if process.poll() is None and run.result is None:
            process.kill()
        process.wait()


class LoopRun:
    """A running `loop` target: stop it to get its pauses and collections."""

    def __init__(self, process: subprocess.Popen[bytes], out: str) -> None:
        self.process = process
        self.out = out
        self.result: dict[str, Any] | None = None

    def stop(self) -> dict[str, Any]:
        self.process.send_signal(signal.SIGUSR1)
        self.process.wait(timeout=120)
        self.result = json.loads(Path(self.out).read_text())
        return self.result


def window(result: dict[str, Any], start: float, end: float) -> dict[str, Any]:
    """The probe pauses and collections of one window, in milliseconds."""
    # A pause counts in every window it overlaps.
    inside = [(p, t) for t, p in result["pauses"] if t <= end and t + p >= start]
    pauses = sorted(p * 1e3 for p, _t in inside)
    full = [d * 1e3 for t, gen, d in result["gc"] if start <= t <= end and gen == 2]
    if not pauses:
        return {"max": 0.0, "p99": 0.0, "full_gc": len(full), "full_gc_ms": max(full, default=0)}
    # Of the longest pause, how much the collector took (collections of any generation).
    longest, at = max(inside)
    collecting = sum(d for t, _gen, d in result["gc"] if at <= t and t + d <= at + longest)
    return {
        "max": pauses[-1],
        "p99": pauses[min(len(pauses) - 1, int(len(pauses) * 0.99))],
        "full_gc": len(full),
        "full_gc_ms": max(full, default=0.0),
        "gc_in_max": collecting * 1e3,
    }


#: The temporary directory of the --against checkout (made on first use).
_AGAINST_TMP: list[str] = []


def timed_dump(pid: int, checkout: str | None = None) -> float:
    """Seconds `taskscope dump PID` takes, its JSON read from a pipe as a script would
    (as bytes: decoding 100 MB here is no part of the dump); with `checkout`, that
    checkout's taskscope (on PYTHONPATH) runs."""
    place = client_place(checkout)
    if checkout is not None:
        # The checkout stages its agent in a temporary directory of its own: the copy of the
        # same sources staged by this one may hold bytecode it would not have made.
        if not _AGAINST_TMP:
            _AGAINST_TMP.append(tempfile.mkdtemp(prefix="host-cost-against-"))
            atexit.register(shutil.rmtree, _AGAINST_TMP[0], True)
        place["env"]["TMPDIR"] = _AGAINST_TMP[0]
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "taskscope", "dump", str(pid)],
        capture_output=True,
        **place,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0 or not result.stdout.startswith(b"{"):
        raise SystemExit(f"dump failed: {result.stderr.decode(errors='replace').strip()}")
    return elapsed


def stall_round(python: str, tasks: int, mode: str, seconds: float, workdir: str) -> dict[str, Any]:
    agent = "none" if mode == "none" else "agent"
    with loop_target(python, tasks, agent, workdir) as run:
        pid = run.process.pid
        first: tuple[float, float] | None = None
        dumps: list[float] = []
        stop_subscription = threading.Event()
        subscription: threading.Thread | None = None
        if mode == "dump":
            started = time.monotonic()
            timed_dump(pid)  # the agent's first look at the tasks, before the window
            first = (started, time.monotonic())
        elif mode == "subscribe":
            first_message = threading.Event()
            marks: list[float] = [time.monotonic()]

            def follow() -> None:
                from taskscope.client import AgentClient, ClientError

                try:
                    with AgentClient(pid, timeout=60) as client:
                        for _kind, _body in client.subscribe(interval=0.5):
                            if not first_message.is_set():
                                marks.append(time.monotonic())
                                first_message.set()
                            if stop_subscription.is_set():
                                return
                except ClientError:  # the target stopped first
                    pass

            subscription = threading.Thread(target=follow, daemon=True)
            subscription.start()
            if not first_message.wait(120):
                raise SystemExit("the subscription sent nothing")
            first = (marks[0], marks[1])
        time.sleep(1.0)
        start = time.monotonic()
        end = start + seconds
        if mode == "dump":
            while time.monotonic() < end:
                began = time.monotonic()
                dumps.append(timed_dump(pid))
                time.sleep(max(0.0, began + 1.0 - time.monotonic()))
            end = time.monotonic()
        else:
            time.sleep(seconds)
            end = time.monotonic()
        stop_subscription.set()
        result = run.stop()
        if subscription is not None:
            subscription.join(5)
    figures = window(result, start, end)
    figures["dumps"] = dumps
    figures["tasks"] = result["tasks"]
    if first is not None:
        figures["first_look_max"] = window(result, *first)["max"]
    return figures


def section_stall(python: str, args: argparse.Namespace, workdir: str) -> None:
    modes = ("none", "dump", "subscribe")
    rounds: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for _ in range(args.rounds):
        for mode in modes:
            rounds[mode].append(stall_round(python, args.tasks, mode, args.seconds, workdir))
    tasks = rounds["none"][0]["tasks"]
    print(
        f"\nThe host loop's pauses, {tasks:,} tasks, a probe timing a 2 ms sleep, "
        f"{args.seconds:.0f} s windows, {args.rounds} rounds (each a fresh process)"
    )
    print(
        f"{'':<30} {'longest pause':>14} {'(GC in it)':>11} {'p99':>11} {'full GCs':>9}"
        f" {'longest GC':>11}"
    )
    for mode, label in (
        ("none", "no agent"),
        ("dump", "dump once a second"),
        ("subscribe", "subscription, 0.5 s ticks"),
    ):
        runs = rounds[mode]
        print(
            f"{label:<30} {spread([r['max'] for r in runs]):>11} ms"
            f" {spread([r['gc_in_max'] for r in runs]):>8} ms"
            f" {spread([r['p99'] for r in runs]):>8} ms"
            f" {spread([float(r['full_gc']) for r in runs], '{:.0f}'):>9}"
            f" {spread([r['full_gc_ms'] for r in runs]):>8} ms"
        )
    for mode, label in (("dump", "a dump"), ("subscribe", "a subscription")):
        added = [r["max"] - n["max"] for r, n in zip(rounds[mode], rounds["none"], strict=True)]
        extra_gc = [
            float(r["full_gc"] - n["full_gc"])
            for r, n in zip(rounds[mode], rounds["none"], strict=True)
        ]
        worst = max(added)
        print(
            f"  {label} adds {spread(added)} ms to the longest pause (goal <= {GOAL_PAUSE_MS:.0f}"
            f" ms: {verdict(worst <= GOAL_PAUSE_MS)}), {spread(extra_gc, '{:+.0f}')} full"
            f" collections (goal 0: {verdict(max(extra_gc) <= 0)})"
        )
    firsts = [r["first_look_max"] for mode in ("dump", "subscribe") for r in rounds[mode]]
    print(
        f"  the agent's first look at the tasks (before the windows): longest pause "
        f"{spread(firsts)} ms"
    )
    dumps = [d for r in rounds["dump"] for d in r["dumps"]]
    print(
        f"`taskscope dump PID` end to end at {tasks:,} tasks: median "
        f"{statistics.median(dumps):.2f} s, {spread(dumps, '{:.2f}')} s over {len(dumps)} dumps "
        f"(goal <= {GOAL_DUMP_S} s: {verdict(statistics.median(dumps) <= GOAL_DUMP_S)})"
    )


def client_place(checkout: str | None) -> dict[str, Any]:
    """The environment and working directory a client runs with: `checkout`'s taskscope
    (else this one's) on PYTHONPATH, run from / (`python -m` puts the working directory
    first on the path, where a checkout would shadow the other)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = checkout if checkout is not None else str(REPO)
    return {"env": env, "cwd": "/"}


def dump_phases(pid: int) -> dict[str, float]:
    """One dump's parts, in this process, in seconds: the agent's answer (its look, the
    encoding and the transfer, from the request to the last byte), the client's reading of
    the reply (the JSON of the compact line), the warnings, and the JSON written (to
    /dev/null) from the rows."""
    from taskscope.cli.show import row_warnings, write_rows_dump
    from taskscope.client import AgentClient
    from taskscope.protocol import CompactSnapshot

    phases: dict[str, float] = {}
    with AgentClient(pid, timeout=60) as client:
        sock = client._sock
        assert sock is not None
        original = sock.recv
        marks: list[float] = []

        def recv(size: int) -> bytes:
            data = original(size)
            marks.append(time.perf_counter())
            return data

        client._sock = _Recording(sock, recv)  # type: ignore[assignment]
        asked = time.perf_counter()
        rows = client.snapshot_rows()
        read = time.perf_counter()
        client._sock = sock
    assert isinstance(rows, CompactSnapshot)
    phases["agent's answer (look, encoding, transfer)"] = marks[-1] - asked
    phases["reading the reply (JSON of the line)"] = read - marks[-1]
    started = time.perf_counter()
    row_warnings(rows)
    phases["warnings"] = time.perf_counter() - started
    with open(os.devnull, "w") as sink:
        started = time.perf_counter()
        write_rows_dump(rows, sink)
        phases["JSON written from the rows (warnings included)"] = time.perf_counter() - started
    return phases


TIMELINE_CLIENT = REPO / "benchmarks" / "targets" / "dump_timeline_client.py"
#: The marks of a dump's timeline, in their order, and what they say.
TIMELINE_MARKS = (
    ("started", "interpreter up, before any import"),
    ("imported", "imports done"),
    ("request", "snapshot request sent"),
    ("first_byte", "first byte back (hello, then snapshot)"),
    ("last_byte", "last byte of the snapshot"),
    ("first_output", "first output written"),
    ("last_output", "last output written"),
    ("ended", "the command done"),
)


def dump_timeline(pid: int, checkout: str | None = None) -> dict[str, float]:
    """One `taskscope dump PID` in a process of its own (targets/dump_timeline_client.py,
    the taskscope of `checkout` when given), its JSON read from a pipe: each of
    `TIMELINE_MARKS` in seconds from the moment the command was started."""
    place = client_place(checkout)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(TIMELINE_CLIENT), str(pid)], capture_output=True, **place
    )
    if result.returncode != 0 or not result.stdout.startswith(b"{"):
        raise SystemExit(f"dump failed: {result.stderr.decode(errors='replace').strip()}")
    marks = json.loads(result.stderr.decode().strip().splitlines()[-1])
    request = marks["sent"][-1]
    reply = [at for at in marks["received"] if at >= request]
    found = {
        "started": marks["started"],
        "imported": marks["imported"],
        "request": request,
        "first_byte": reply[0],
        "last_byte": max(reply),
        "first_output": marks["first_output"],
        "last_output": marks["last_output"],
        "ended": marks["ended"],
    }
    return {name: at - started for name, at in found.items()}


class _Recording:
    """A socket whose recv is `recv` (to time the last byte of a reply)."""

    def __init__(self, sock: Any, recv: Callable[[int], bytes]) -> None:
        self._sock = sock
        self.recv = recv

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def import_seconds(checkout: str | None) -> float:
    """How long `python -c "import taskscope.cli..."` takes beyond `python -c pass`."""
    command = "import taskscope.cli, taskscope.cli.show, taskscope.lints"
    timings = []
    for code in ("pass", command):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, **client_place(checkout))
        timings.append(time.perf_counter() - started)
    return timings[1] - timings[0]


def section_dump(python: str, args: argparse.Namespace, workdir: str) -> None:
    """`taskscope dump PID` end to end at --tasks tasks, --dumps times a second apart after
    a first one (the agent's first look), as a script repeating it would; with --compare
    CHECKOUT, that checkout's client in turns with this one's, on the same process."""
    clients: list[tuple[str, str | None]] = [("this checkout", None)]
    if args.compare:
        clients.append((args.compare, args.compare))
    times: dict[str, list[float]] = {label: [] for label, _ in clients}
    imports: dict[str, list[float]] = {label: [] for label, _ in clients}
    timelines: dict[str, list[dict[str, float]]] = {label: [] for label, _ in clients}
    phases: list[dict[str, float]] = []
    with loop_target(python, args.tasks, "agent", workdir) as run:
        pid = run.process.pid
        first = timed_dump(pid)
        for turn in range(args.dumps):
            for label, checkout in clients if turn % 2 == 0 else clients[::-1]:
                time.sleep(1.0)
                times[label].append(timed_dump(pid, checkout))
                imports[label].append(import_seconds(checkout))
        for turn in range(3):
            for label, checkout in clients if turn % 2 == 0 else clients[::-1]:
                time.sleep(1.0)
                timelines[label].append(dump_timeline(pid, checkout))
        for _ in range(3):
            time.sleep(1.0)
            phases.append(dump_phases(pid))
        tasks = run.stop()["tasks"]
    print(
        f"\n`taskscope dump PID` end to end, {tasks:,} tasks (their JSON read from a pipe), "
        f"{args.dumps} dumps each a second apart, clients in turns; the first dump (the "
        f"agent's first look) took {first:.2f} s"
    )
    for label, _ in clients:
        runs = times[label]
        print(
            f"  {label:<30} median {statistics.median(runs):.2f} s, "
            f"{spread(runs, '{:.2f}')} s (goal <= {GOAL_DUMP_S} s: "
            f"{verdict(statistics.median(runs) <= GOAL_DUMP_S)}); its imports "
            f"{spread([1e3 * t for t in imports[label]], '{:.0f}')} ms"
        )
    print("  a dump's timeline, ms from the command's start (3 dumps each, clients in turns):")
    for name, meaning in TIMELINE_MARKS:
        line = "".join(
            f"  {spread([1e3 * t[name] for t in timelines[label]], '{:.0f}'):>11}"
            for label, _ in clients
        )
        print(f"    {meaning:<40}{line}")
    print("  where a dump's time goes (this checkout, in-process, 3 dumps):")
    for name in phases[0]:
        print(f"    {name:<52} {spread([1e3 * p[name] for p in phases], '{:.0f}')} ms")


def attach_round(python: str, workdir: str, checkout: str | None) -> tuple[float, float, float]:
    """One first attach (`taskscope dump PID`, the injection code of `checkout` when given):
    the target's longest pause during it, in a window as long just before, and the command's
    time."""
    with loop_target(python, 50, "none", workdir) as run:
        time.sleep(1.0)
        started = time.monotonic()
        took = timed_dump(run.process.pid, checkout)
        ended = time.monotonic()
        result = run.stop()
    # The baseline: a window as long, just before (capped at the second waited).
    base = window(result, started - min(ended - started, 0.9), started - 0.005)
    during = window(result, started, ended)
    return during["max"], base["max"], took


def section_attach(python: str, args: argparse.Namespace, workdir: str) -> None:
    versions: dict[str | None, list[tuple[float, float, float]]] = {None: []}
    if args.against:
        versions[args.against] = []
    for _ in range(args.rounds):
        for checkout, rounds in versions.items():  # in turns, round after round
            rounds.append(attach_round(python, workdir, checkout))
    print(
        f"\nFirst attach (`taskscope dump PID` injecting the agent), 50 tasks, {args.rounds} "
        "fresh processes"
    )
    for checkout, rounds in versions.items():
        during_max = [during for during, _base, _took in rounds]
        before_max = [base for _during, base, _took in rounds]
        added = [during - base for during, base, _took in rounds]
        took = [took for _during, _base, took in rounds]
        label = "" if checkout is None else f" [{checkout}]"
        print(
            f"  longest pause{label} {spread(during_max)} ms during it, {spread(before_max)} ms "
            f"just before: adds {spread(added)} ms (goal <= {GOAL_ATTACH_MS:.0f} ms: "
            f"{verdict(max(added) <= GOAL_ATTACH_MS)}); the command took {spread(took, '{:.2f}')} s"
        )
        print(
            f"    added per round: {', '.join(f'{a:+.1f}' for a in added)} ms "
            f"(median {statistics.median(added):+.1f})"
        )


def run_json(command: list[str]) -> dict[str, Any]:
    output = subprocess.run(
        command, env=target_env(), capture_output=True, text=True, check=True
    ).stdout
    return dict(json.loads(output.splitlines()[-1]))


def section_memory(python: str, args: argparse.Namespace) -> None:
    traced_bytes, rss_bytes, look_us, first_us, look_gc = [], [], [], [], []
    for _ in range(max(1, args.rounds - 1)):
        results = {}
        for how in ("traced", "rss"):
            for agent in ("none", "agent"):
                results[how, agent] = run_json(
                    [python, str(TARGET), "memory", str(args.tasks), agent, how]
                )
        live = results["traced", "agent"]["live"]
        traced_bytes.append(
            (results["traced", "agent"]["traced"] - results["traced", "none"]["traced"]) / live
        )
        rss_bytes.append((results["rss", "agent"]["rss"] - results["rss", "none"]["rss"]) / live)
        tasks = results["rss", "agent"]["tasks"]
        look_us.append(results["rss", "agent"]["look_cpu"] / tasks * 1e6)
        first_us.append(results["rss", "agent"]["first_look_cpu"] / tasks * 1e6)
        look_gc.append(results["rss", "agent"]["look_gc"] * 1e3)
    print(f"\nMemory the agent keeps between looks, {args.tasks:,} tasks, after two dumps")
    print(
        f"  {spread(traced_bytes, '{:.0f}')} bytes per live task by tracemalloc, "
        f"{spread(rss_bytes, '{:.0f}')} by resident size (goal <= {GOAL_BYTES}: "
        f"{verdict(max(traced_bytes) <= GOAL_BYTES)})"
    )
    print(
        f"  a full snapshot (build + compact encoding, agent thread CPU): "
        f"{spread(look_us, '{:.2f}')} us per task (goal <= {GOAL_SNAPSHOT_US}: "
        f"{verdict(max(look_us) <= GOAL_SNAPSHOT_US)}); the first look "
        f"{spread(first_us, '{:.2f}')} us per task"
    )
    print(
        f"  the garbage collector's time during a look after the first (any generation, any "
        f"thread): {spread(look_gc, '{:.0f}')} ms"
    )


def section_churn(python: str, args: argparse.Namespace) -> None:
    ratios, bare, tracked = [], [], []
    count = 20_000
    for _ in range(args.rounds + 2):
        none = run_json([python, str(TARGET), "churn", str(count), "none", "5"])["per_task"]
        agent = run_json([python, str(TARGET), "churn", str(count), "agent", "5"])["per_task"]
        bare.append(none * 1e6)
        tracked.append(agent * 1e6)
        ratios.append(agent / none)
    print(f"\nTask churn, {count:,} no-op tasks per batch (gather), best of 5 batches per process")
    print(
        f"  {spread(bare, '{:.2f}')} us per task without an agent, {spread(tracked, '{:.2f}')} us"
        f" with creators and history tracked: {spread(ratios, '{:.2f}')}x (median "
        f"{statistics.median(ratios):.2f}x; goal <= {GOAL_CHURN}x: "
        f"{verdict(statistics.median(ratios) <= GOAL_CHURN)})"
    )


def section_flight(python: str, args: argparse.Namespace, workdir: str) -> None:
    modes = ("none", "agent", "flight")
    rounds: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for _ in range(args.rounds):
        for mode in modes:
            with loop_target(python, args.tasks, mode, workdir) as run:
                time.sleep(3.0)  # the recorder's first look (the costliest) before the window
                start = time.monotonic()
                time.sleep(args.seconds)
                end = time.monotonic()
                result = run.stop()
            figures = window(result, start, end)
            turns = [t for t, _p in result["pauses"] if start <= t <= end]
            figures["turns"] = len(turns) / (end - start)
            rounds[mode].append(figures)
    print(
        f"\nThe flight recorder when nobody looks, {args.tasks:,} tasks, {args.seconds:.0f} s "
        f"windows, {args.rounds} rounds (each a fresh process, interleaved)"
    )
    print(
        f"{'':<28} {'longest pause':>14} {'(GC in it)':>11} {'p99':>11} {'probe turns/s':>14}"
        f" {'full GCs':>9}"
    )
    for mode, label in (
        ("none", "no agent"),
        ("agent", "agent, recorder off"),
        ("flight", "agent, recorder on (60 s)"),
    ):
        runs = rounds[mode]
        print(
            f"{label:<28} {spread([r['max'] for r in runs]):>11} ms"
            f" {spread([r.get('gc_in_max', 0.0) for r in runs]):>8} ms"
            f" {spread([r['p99'] for r in runs], '{:.2f}'):>8} ms"
            f" {spread([r['turns'] for r in runs], '{:.0f}'):>14}"
            f" {spread([float(r['full_gc']) for r in runs], '{:.0f}'):>9}"
        )
    for mode, label in (("agent", "recorder off"), ("flight", "recorder on")):
        pairs = list(zip(rounds[mode], rounds["none"], strict=True))
        added = [r["max"] - n["max"] for r, n in pairs]
        p99 = [r["p99"] / n["p99"] if n["p99"] else 0.0 for r, n in pairs]
        turns = [r["turns"] / n["turns"] for r, n in pairs]
        print(
            f"  {label}: adds {spread(added)} ms to the longest pause (goal <= "
            f"{GOAL_PAUSE_MS:.0f} ms: {verdict(max(added) <= GOAL_PAUSE_MS)}); p99 x"
            f"{spread(p99, '{:.2f}')}; probe turns x{spread(turns, '{:.3f}')} of no agent's"
        )


SERVICE_MODES = {
    "none": "no agent",
    "agent": "`taskscope run`, nobody looking",
    "light": "`taskscope run --no-track`, nobody",
    "subscribe": "dashboard subscribed (0.5 s ticks)",
    "dump": "`taskscope dump PID` once a second",
    "aiomonitor": "aiomonitor started, nobody connected",
    "aiomonitor-poll": "aiomonitor, its task list once a second",
}


def find_wrk(wrk: str) -> str | None:
    return shutil.which(wrk)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pinned(cpus: list[int] | None) -> list[str]:
    """`taskset -c CPUS` before a command (nothing when not pinning)."""
    if cpus is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", ",".join(str(cpu) for cpu in cpus)]


def other_threads_cpu(pid: int) -> float:
    """CPU seconds (user + system) the threads of `pid` other than its main thread took."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        if task.name == str(pid):
            continue
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process `pid` took so far, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk_load(
    wrk: str, url: str, seconds: float, connections: int, cpus: list[int] | None
) -> tuple[float, int]:
    """Requests per second wrk measured (one thread, `connections` connections), and how
    many requests it made."""
    result = subprocess.run(
        [*pinned(cpus), wrk, "-t1", f"-c{connections}", f"-d{seconds:.0f}s", url],
        capture_output=True,
        text=True,
    )
    lines = result.stdout.splitlines()
    errors = [line.strip() for line in lines if "Non-2xx" in line or "errors:" in line]
    if errors:
        raise SystemExit(f"wrk saw errors: {'; '.join(errors)}")
    rate = [float(line.split()[1]) for line in lines if line.startswith("Requests/sec:")]
    count = [int(line.split()[0]) for line in lines if " requests in " in line]
    if not rate or not count:
        raise SystemExit(f"wrk failed: {result.stderr.strip() or result.stdout.strip()}")
    return rate[0], count[0]


class Clients:
    """What looks at the service during a run (in threads of this process, on the clients'
    CPU): the dashboard's subscription, `taskscope dump PID`, or aiomonitor's task list."""

    def __init__(self, mode: str, pid: int, webui_port: int | None) -> None:
        self.mode = mode
        self.pid = pid
        self.webui_port = webui_port
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.looks = 0
        #: The agent's own figure of each tick it sent: seconds its look took (`build_seconds`).
        self.tick_costs: list[float] = []
        self.failure: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        if self.mode in ("none", "agent", "light", "aiomonitor"):
            self.ready.set()
            return
        self.thread.start()
        if not self.ready.wait(120):
            raise SystemExit(f"{self.mode}: no first look within 120 s")

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(15)
        if self.failure is not None:
            raise SystemExit(f"{self.mode}: {self.failure}")

    def _run(self) -> None:
        try:
            if self.mode == "subscribe":
                self._subscribe()
            else:
                self._poll()
        except Exception as error:  # said by close()
            self.failure = repr(error)
            self.ready.set()

    def _subscribe(self) -> None:
        """As the dashboard does (taskscope/ui/app.py): `LiveSource.subscribe(0.5)` on a
        worker thread, and the process facts read once a second."""
        from taskscope.sources.live import LiveSource

        source = LiveSource(self.pid)
        facts_due = 0.0
        try:
            for update in source.subscribe(0.5):
                self.looks += 1
                delta = getattr(update, "delta", None)
                if delta is not None:
                    self.tick_costs.append(float(delta.get("build_seconds", 0.0)))
                self.ready.set()
                if time.monotonic() >= facts_due:
                    source.process_info()
                    facts_due = time.monotonic() + 1.0
                if self.stop.is_set():
                    return
        finally:
            source.close()

    def _poll(self) -> None:
        """Once a second: `taskscope dump PID`, or aiomonitor's task list as its web UI
        reads it."""
        while not self.stop.is_set():
            began = time.monotonic()
            if self.mode == "dump":
                timed_dump(self.pid)
            else:
                live_tasks(f"http://127.0.0.1:{self.webui_port}/api/live-tasks")
            self.looks += 1
            self.ready.set()
            self.stop.wait(max(0.0, began + 1.0 - time.monotonic()))


def live_tasks(url: str) -> bytes:
    """aiomonitor's web UI's task list: a form-encoded POST, JSON back."""
    import urllib.parse
    import urllib.request

    body = urllib.parse.urlencode({"filter": "", "persistent": "false"}).encode()
    with urllib.request.urlopen(url, data=body, timeout=30) as reply:
        return bytes(reply.read())


def service_round(
    python: str, mode: str, args: argparse.Namespace, workdir: str, wrk: str
) -> dict[str, float]:
    """One fresh server in `mode`, loaded by wrk for --seconds: its requests per second and
    the CPU its other threads took per second of load, and the server's CPU per request."""
    server_cpus, client_cpus = ([0], [1]) if (os.cpu_count() or 1) >= 2 else (None, None)
    port = free_port()
    ready = f"{workdir}/service-ready-{time.monotonic_ns()}"
    command = [python, str(SERVICE_TARGET), str(port), ready]
    if mode in ("agent", "subscribe", "dump"):
        command[1:1] = ["-m", "taskscope.agent.launch"]  # what `taskscope run` execs
    elif mode == "light":
        command[1:1] = ["-m", "taskscope.agent.launch", "--no-track"]
    if mode.startswith("aiomonitor"):
        command.append("--aiomonitor")
    errors = Path(f"{ready}.err")
    with errors.open("wb") as stderr:  # a file, not a pipe nobody reads while wrk runs
        process = subprocess.Popen(
            [*pinned(server_cpus), *command],
            env=target_env(),
            cwd="/",
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(ready) or not Path(ready).read_text().endswith("\n"):
            if process.poll() is not None or time.monotonic() > deadline:
                lines = errors.read_text(errors="replace").strip().splitlines()
                raise SystemExit(
                    f"the service did not start ({python}): {lines[-1] if lines else '?'}"
                )
            time.sleep(0.02)
        lines = Path(ready).read_text().split()
        clients = Clients(mode, process.pid, int(lines[1]) if len(lines) > 1 else None)
        clients.start()
        url = f"http://127.0.0.1:{port}/"
        wrk_load(wrk, url, 1, args.connections, client_cpus)  # warm up
        others_before, cpu_before = other_threads_cpu(process.pid), process_cpu(process.pid)
        started = time.monotonic()
        rate, requests = wrk_load(wrk, url, args.seconds, args.connections, client_cpus)
        elapsed = time.monotonic() - started
        others = (other_threads_cpu(process.pid) - others_before) / elapsed
        cpu_per_request = (process_cpu(process.pid) - cpu_before) / requests
        looks = clients.looks
        ticks = clients.tick_costs[-int(args.seconds / 0.5) :]  # those of the load
        clients.close()
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return {
        "rate": rate,
        "others": others,
        "looks": float(looks),
        "cpu": cpu_per_request,
        "tick": statistics.median(ticks) if ticks else 0.0,
    }


def section_service(python: str, args: argparse.Namespace, workdir: str) -> None:
    wrk = find_wrk(args.wrk)
    if wrk is None:
        print(
            f"\nservice: needs wrk, the HTTP load generator ({args.wrk!r} not found): "
            "`apt-get install wrk`, or --wrk PATH"
        )
        return
    missing = subprocess.run(
        [python, "-c", "import aiohttp, aiomonitor"], capture_output=True, text=True
    )
    if missing.returncode != 0:
        print(
            f"\nservice: {python} has no aiohttp or aiomonitor: "
            f"`{python} -m pip install aiohttp aiomonitor`"
        )
        return
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in SERVICE_MODES}
    # The driver (the clients) and wrk share CPU 1; the server has CPU 0 to itself.
    affinity = os.sched_getaffinity(0)
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    try:
        for _ in range(args.rounds):
            for mode in SERVICE_MODES:
                runs[mode].append(service_round(python, mode, args, workdir, wrk))
    finally:
        os.sched_setaffinity(0, affinity)
    pinning = "server on CPU 0, wrk and clients on CPU 1" if (os.cpu_count() or 1) >= 2 else ""
    print(
        f"\nA real aiohttp service under wrk (1 thread, {args.connections} connections, "
        f"{args.seconds:.0f} s a run, {pinning}), 1,000 background tasks, {args.rounds} rounds "
        "(each a fresh server, interleaved); requests/s as a ratio to no agent in the same round"
    )
    print(
        f"{'':<40} {'requests/s':>12} {'ratio: median':>14} {'(spread)':>12}"
        f" {'CPU/request':>12} {'x none':>6} {'others':>10}"
    )
    for mode, label in SERVICE_MODES.items():
        pairs = list(zip(runs[mode], runs["none"], strict=True))
        rates = [r["rate"] for r in runs[mode]]
        ratios = [r["rate"] / n["rate"] for r, n in pairs]
        others = [r["others"] * 100 for r in runs[mode]]
        cpu = [r["cpu"] * 1e6 for r in runs[mode]]
        cpu_ratio = statistics.median(r["cpu"] / n["cpu"] for r, n in pairs)
        goal = ""
        if mode in ("agent", "subscribe", "dump"):
            # Met when the requests per second say so and the CPU per request agrees (the
            # steadier figure on a busy machine: the server's CPU 0 is shared with others).
            met = statistics.median(ratios) >= GOAL_THROUGHPUT and cpu_ratio <= 1 / GOAL_THROUGHPUT
            goal = f"  goal >= {GOAL_THROUGHPUT}: {verdict(met)}"
        print(
            f"{label:<40} {spread(rates, '{:.0f}'):>12} {statistics.median(ratios):>14.3f}"
            f" {spread(ratios, '{:.3f}'):>12} {spread(cpu, '{:.1f}'):>9} us"
            f" {cpu_ratio:>6.2f} {spread(others, '{:.1f}'):>8} %{goal}"
        )
    bare = [r["rate"] for r in runs["none"]]
    if max(bare) > 1.1 * min(bare):
        print(
            f"  the machine was busy: no agent's requests/s varied {min(bare):.0f}-{max(bare):.0f}"
            " between rounds; the CPU per request is the steadier figure (a goal is met when"
            " both say so)"
        )
    ticks = [r["tick"] * 1e3 for r in runs["subscribe"]]
    print(
        f"  a subscription tick under load, the agent's own figure (`build_seconds`, wall "
        f"time of its look), median per run: {spread(ticks)} ms"
    )
    print(
        "  (CPU/request: the server's CPU time (all threads) per request, its median ratio to"
        " no agent's; others: CPU its threads besides the loop's took, the agent's or"
        " aiomonitor's, % of one CPU)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the targets' interpreter")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--quick", action="store_true", help="10,000 tasks, 2 rounds, 3 s")
    parser.add_argument(
        "--only",
        default="stall,attach,memory,churn,service",
        help="sections, comma-separated: stall (which also times `dump` end to end), attach, "
        "memory, churn, service (needs wrk; skipped with a note without it); also flight, dump",
    )
    parser.add_argument("--dumps", type=int, default=10, help="dump: dumps per client")
    parser.add_argument("--wrk", default="wrk", help="service: the wrk program")
    parser.add_argument(
        "--connections", type=int, default=32, help="service: wrk's connections (one thread)"
    )
    parser.add_argument(
        "--compare", default=None, help="dump: another checkout whose client runs in turns"
    )
    parser.add_argument(
        "--against",
        metavar="CHECKOUT",
        help="attach: also attach with the taskscope of CHECKOUT (another worktree), in turns",
    )
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.rounds, args.seconds = 10_000, 2, 3.0
    version = subprocess.run(
        [args.python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"Python {version} ({args.python}); {os.cpu_count()} CPUs")
    sections: dict[str, Callable[[], None]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        sections = {
            "stall": lambda: section_stall(args.python, args, workdir),
            "attach": lambda: section_attach(args.python, args, workdir),
            "memory": lambda: section_memory(args.python, args),
            "churn": lambda: section_churn(args.python, args),
            "flight": lambda: section_flight(args.python, args, workdir),
            "dump": lambda: section_dump(args.python, args, workdir),
            "service": lambda: section_service(args.python, args, workdir),
        }
        for name in args.only.split(","):
            sections[name]()
            sys.stdout.flush()


if __name__ == "__main__":
    main()
