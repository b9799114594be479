"""taskscope vs aiomonitor, in the same run, on the jobs both do.

Run: python benchmarks/vs_aiomonitor.py [--quick] [--only churn,idle,list,blocked,footprint]

Every figure comes from fresh subprocesses (benchmarks/targets/vs_aiomonitor_target.py, or a
`python -c` snippet for the import footprint), so one tool's imports never touch the other's
numbers; configurations are interleaved so drift on the machine hits all of them alike.

1. churn      host cost per task of creating and awaiting short tasks (gather batches), with no
              tool, taskscope installed, aiomonitor imported / started / started with
              hook_task_factory=True; lazy tasks and, on 3.12+, eager tasks (and whether each
              tool kept the eager factory working)
2. idle       the same churn while a client watches every 0.5 s: a taskscope subscription, or
              aiomonitor's web API polled (POST /api/live-tasks), from a thread of this process
3. list       listing every task of a process from outside at 1,000 and 10,000 live tasks:
              taskscope connect+snapshot vs an HTTP round trip to /api/live-tasks
4. blocked    answering while the target's loop sits in time.sleep(5): snapshot / live-tasks,
              cancel / DELETE /api/task, each with a 3 s timeout, each in a fresh target
5. footprint  modules loaded and time for `import taskscope; taskscope.install()` vs
              `import aiomonitor; start_monitor(loop)`

The default run takes about 5 minutes on 2 cores; --quick about 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from taskscope.client import AgentClient, ClientError

HERE = Path(__file__).resolve().parent
TARGET = HERE / "targets" / "vs_aiomonitor_target.py"
HAS_EAGER = sys.version_info >= (3, 12)
CHURN_TOOLS = [
    "none",
    "taskscope",
    "taskscope-light",
    "taskscope-timed",
    "aiomonitor-import",
    "aiomonitor",
    "aiomonitor-hook",
]
TOOL_LABEL = {
    "none": "no tool",
    "taskscope": "taskscope.install()",
    "taskscope-light": "taskscope.install(track_tasks=False)",
    "taskscope-timed": "taskscope.install(time_steps=True)",
    "aiomonitor-import": "import aiomonitor (not started)",
    "aiomonitor": "aiomonitor start_monitor()",
    "aiomonitor-hook": "aiomonitor hook_task_factory=True",
}
BLOCK_TIMEOUT = 3.0
#: How far into the 5 s block the probe is sent: past taskscope's 0.5 s detection window.
BLOCK_PROBE_AT = 1.0


@dataclass
class Settings:
    count: int
    idle_count: int
    batch: int
    rounds: int
    procs: int
    list_repeat: int
    footprint_procs: int
    sizes: list[int] = field(default_factory=lambda: [1000, 10_000])


# --- plumbing ------------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


class Target:
    """One target process: JSON lines in, one-word commands out."""

    def __init__(self, mode: str, tool: str, *extra: str) -> None:
        self.tool = tool
        self.ports = free_ports(3)
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in finish()
        command = [sys.executable, str(TARGET), mode, "--tool", tool, "--ports"]
        command += [",".join(map(str, self.ports)), *extra]
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.pid = self.proc.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def message(self, timeout: float = 300.0) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.tool}: no message within {timeout:.0f} s") from None
        if line is None:
            self.proc.wait()
            self.stderr.seek(0)
            tail = self.stderr.read()[-2000:]
            raise RuntimeError(f"{self.tool}: target exited ({self.proc.returncode}):\n{tail}")
        return dict(json.loads(line))

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        with suppress(OSError):
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[1]}{path}"

    def finish(self) -> None:
        self.send("quit")
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


@contextmanager
def target(mode: str, tool: str, *extra: str) -> Iterator[Target]:
    proc = Target(mode, tool, *extra)
    try:
        yield proc
    finally:
        proc.finish()


def live_tasks(url: str, timeout: float) -> bytes:
    """aiomonitor's web API: a form-encoded POST, JSON back."""
    body = urllib.parse.urlencode({"filter": "", "persistent": "false"}).encode()
    with urllib.request.urlopen(url, data=body, timeout=timeout) as reply:
        return bytes(reply.read())


class _CountingSocket:
    """Counts the bytes a client receives (the wire size of a snapshot)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.received = 0

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        self.received += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def taskscope_snapshot(pid: int, timeout: float = 30.0) -> tuple[dict[str, Any], int]:
    """A fresh connection and one snapshot, as `taskscope top PID` would start."""
    client = AgentClient(pid, timeout=timeout)
    client.connect()
    try:
        counter = _CountingSocket(client._sock)  # type: ignore[arg-type]
        client._sock = counter  # type: ignore[assignment]
        snapshot = client.snapshot()
        return dict(snapshot), counter.received
    finally:
        client.close()


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f}"


def kib(size: int) -> str:
    return f"{size / 1024:,.0f} KiB"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def say(text: str = "") -> None:
    print(text, flush=True)


def version_of(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def header(argv: list[str]) -> None:
    cpu = "?"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = "?"
    with suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(HERE.parent), "status", "--porcelain", "taskscope"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if dirty:
            commit += " + uncommitted changes in taskscope/"
    say("taskscope vs aiomonitor")
    say(f"command:    {shlex.join([sys.executable, *argv])}")
    say(f"date:       {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    implementation = platform.python_implementation()
    say(f"python:     {implementation} {sys.version.split()[0]} ({sys.executable})")
    say(f"platform:   {platform.platform()}")
    say(f"cpu:        {os.cpu_count()} x {cpu}; load average {os.getloadavg()[0]:.2f}")
    say(
        f"versions:   taskscope {version_of('taskscope')} (git {commit}), "
        f"aiomonitor {version_of('aiomonitor')}, aiohttp {version_of('aiohttp')}"
    )
    say("every figure is measured in fresh subprocesses of this interpreter")


# --- 1 and 2: churn --------------------------------------------------------------------------


def churn_args(count: int, settings: Settings, eager: bool) -> list[str]:
    extra = ["--count", str(count), "--batch", str(settings.batch)]
    extra += ["--rounds", str(settings.rounds)]
    return [*extra, "--eager"] if eager else extra


def run_churn(tool: str, eager: bool, settings: Settings) -> dict[str, Any]:
    with target("churn", tool, *churn_args(settings.count, settings, eager)) as proc:
        ready = proc.message()
        done = proc.message()
    return {"rounds": done["rounds"], "eager_kept": ready["eager_kept"]}


def section_churn(settings: Settings) -> None:
    say()
    say(
        f"1. Task churn: {settings.count:,} tasks per round, each awaits asyncio.sleep(0) once, "
        f"created with asyncio.create_task in gather batches of {settings.batch:,}"
    )
    say(
        f"   {settings.procs} fresh process(es) per row x {settings.rounds} timed rounds "
        "(after a warm-up round); us per task; 'x' = best / best of no tool (the best "
        "is the least disturbed by other load on the machine)"
    )
    for eager in [False, True] if HAS_EAGER else [False]:
        results: dict[str, list[float]] = {tool: [] for tool in CHURN_TOOLS}
        kept: dict[str, set[bool]] = {tool: set() for tool in CHURN_TOOLS}
        errors: dict[str, str] = {}
        for _ in range(settings.procs):
            for tool in CHURN_TOOLS:
                if tool in errors:
                    continue
                try:
                    outcome = run_churn(tool, eager, settings)
                except RuntimeError as error:
                    errors[tool] = str(error).splitlines()[-1]
                    continue
                results[tool].extend(outcome["rounds"])
                kept[tool].add(bool(outcome["eager_kept"]))
        base = min(results["none"]) if results["none"] else None
        rows = []
        for tool in CHURN_TOOLS:
            if tool in errors:
                rows.append([TOOL_LABEL[tool], "crashed", "", "", "", errors[tool][:60]])
                continue
            median = statistics.median(results[tool])
            ratio = f"{min(results[tool]) / base:.2f}x" if base else "-"
            row = [TOOL_LABEL[tool], us(min(results[tool])), us(median), ratio]
            if eager:
                row.append("yes" if kept[tool] == {True} else "NO")
            rows.append(row)
        headers = ["lazy tasks (default factory)", "best", "median", "x"]
        if eager:
            headers = ["eager_task_factory", "best", "median", "x", "eager kept"]
        say()
        say(table(headers, rows))
    if not HAS_EAGER:
        say()
        say("   (eager tasks: asyncio.eager_task_factory needs Python 3.12+, not measured)")


def subscriber(pid: int, stop: threading.Event, seen: list[int], ready: threading.Event) -> None:
    """A taskscope client subscribed at 0.5 s: the first snapshot, then deltas."""
    client = AgentClient(pid)
    try:
        client.connect()
        for _kind, _message in client.subscribe(0.5):
            seen.append(1)
            ready.set()
            if stop.is_set():
                break
    except ClientError:
        pass
    finally:
        ready.set()
        client.close()


def poller(url: str, stop: threading.Event, seen: list[int], ready: threading.Event) -> None:
    """aiomonitor's web UI refreshes by POSTing /api/live-tasks; do it every 0.5 s."""
    next_at = time.monotonic()
    while not stop.is_set():
        try:
            live_tasks(url, timeout=10)
            seen.append(1)
        except (OSError, urllib.error.URLError):
            pass
        ready.set()
        next_at += 0.5
        stop.wait(max(0.0, next_at - time.monotonic()))


def run_idle(config: str, eager: bool, settings: Settings) -> tuple[list[float], int]:
    tool = config.split("+")[0]
    extra = [*churn_args(settings.idle_count, settings, eager), "--wait-go"]
    with target("churn", tool, *extra) as proc:
        proc.message()
        stop, ready = threading.Event(), threading.Event()
        seen: list[int] = []
        thread = None
        if config == "taskscope+subscribe":
            thread = threading.Thread(target=subscriber, args=(proc.pid, stop, seen, ready))
        elif config == "aiomonitor+poll":
            thread = threading.Thread(
                target=poller, args=(proc.url("/api/live-tasks"), stop, seen, ready)
            )
        if thread is not None:
            thread.daemon = True
            thread.start()
            ready.wait(30)
        before = len(seen)
        proc.send("go")
        done = proc.message()
        updates = len(seen) - before
        stop.set()
    return done["rounds"], updates


def section_idle(settings: Settings) -> None:
    configs = ["none", "taskscope", "taskscope+subscribe", "aiomonitor", "aiomonitor+poll"]
    labels = {
        "none": "no tool",
        "taskscope": "taskscope, no client",
        "taskscope+subscribe": "taskscope, client subscribed at 0.5 s",
        "aiomonitor": "aiomonitor, no client",
        "aiomonitor+poll": "aiomonitor, /api/live-tasks every 0.5 s",
    }
    say()
    say(
        f"2. Churn while watched: {settings.idle_count:,} tasks per round, "
        f"{settings.procs} process(es) x {settings.rounds} rounds; the client is a thread of "
        "this driver process; 'updates' = replies it got while the target churned; "
        "'x' = best / best of no tool"
    )
    results: dict[str, list[float]] = {config: [] for config in configs}
    updates: dict[str, int] = dict.fromkeys(configs, 0)
    for _ in range(settings.procs):
        for config in configs:
            rounds, seen = run_idle(config, False, settings)
            results[config].extend(rounds)
            updates[config] += seen
    base = min(results["none"])
    rows = [
        [
            labels[config],
            us(min(results[config])),
            us(statistics.median(results[config])),
            f"{min(results[config]) / base:.2f}x",
            updates[config] if "+" in config else "-",
        ]
        for config in configs
    ]
    say()
    say(table(["lazy tasks", "best us", "median us", "x", "updates"], rows))


# --- 3: listing ------------------------------------------------------------------------------


def run_listing(tool: str, size: int, repeat: int) -> dict[str, Any]:
    with target("population", tool, "--count", str(size)) as proc:
        ready = proc.message()
        times: list[float] = []
        size_bytes = 0
        listed = 0
        fields: list[str] = []
        for _ in range(repeat):
            started = time.perf_counter()
            if tool == "taskscope":
                snapshot, size_bytes = taskscope_snapshot(proc.pid)
                times.append(time.perf_counter() - started)
                tasks = snapshot["tasks"]
                listed = sum(1 for task in tasks if task.get("finished_at") is None)
            else:
                body = live_tasks(proc.url("/api/live-tasks"), timeout=60)
                tasks = json.loads(body)["tasks"]
                times.append(time.perf_counter() - started)
                size_bytes = len(body)
                listed = len(tasks)
            if tasks:
                fields = sorted(set().union(*(task.keys() for task in tasks)))
    return {
        "live": ready["live"],
        "listed": listed,
        "first": times[0],
        "best": min(times),
        "median": statistics.median(times),
        "bytes": size_bytes,
        "fields": fields,
    }


def section_list(settings: Settings) -> None:
    say()
    say(
        "3. Listing every task from outside (idle loop, a mix of sleepers, queue/lock waiters, "
        "nested chains, gather and TaskGroup owners)"
    )
    say(
        f"   {settings.list_repeat} round trips on a fresh connection each: taskscope "
        "AgentClient(pid).connect() + snapshot(); aiomonitor urllib POST /api/live-tasks "
        "+ json.loads; ms wall time"
    )
    rows = []
    fields: dict[str, list[str]] = {}
    for size in settings.sizes:
        for tool in ["taskscope", "aiomonitor", "aiomonitor-hook"]:
            result = run_listing(tool, size, settings.list_repeat)
            fields[tool] = result["fields"]
            rows.append(
                [
                    f"{size:,} live: {TOOL_LABEL[tool]}",
                    result["listed"],
                    ms(result["first"]),
                    ms(result["best"]),
                    ms(result["median"]),
                    kib(result["bytes"]),
                    f"{result['bytes'] / max(1, result['listed']):.0f}",
                ]
            )
    say()
    say(table(["", "listed", "first", "best", "median", "reply", "B/task"], rows))
    say()
    say("   per-task fields in each reply:")
    for tool, names in fields.items():
        say(f"   {TOOL_LABEL[tool]}: {', '.join(names)}")
    say(
        "   (taskscope's reply also carries the loops, with blocked_for/lag/blocking_stack, "
        "await cycles and up to 1,000 finished tasks; its byte count includes them)"
    )


# --- 4: blocked loop -------------------------------------------------------------------------


def run_blocked(probe: str) -> dict[str, Any]:
    tool = "taskscope" if probe.startswith("taskscope") else "aiomonitor"
    with target("block", tool) as proc:
        ready = proc.message()
        victim = ready["aiomonitor_id"]
        if tool == "taskscope":
            snapshot, _ = taskscope_snapshot(proc.pid)
            victim = next(t["id"] for t in snapshot["tasks"] if t["name"] == "victim")
        proc.send("go")
        proc.message()
        time.sleep(BLOCK_PROBE_AT)  # the target is now inside time.sleep(5)
        result: dict[str, Any] = {"detail": ""}
        started = time.perf_counter()
        try:
            if probe == "taskscope-snapshot":
                snapshot, size = taskscope_snapshot(proc.pid, timeout=BLOCK_TIMEOUT)
                loops = snapshot["loops"]
                blocked = [loop["blocked_for"] for loop in loops if loop["blocked_for"]]
                stack = any(loop["blocking_stack"] for loop in loops)
                result["detail"] = (
                    f"{len(snapshot['tasks'])} tasks, {kib(size)}; loop blocked_for="
                    f"{blocked[0] if blocked else None}s, blocking_stack "
                    f"{'present' if stack else 'empty'}"
                )
            elif probe == "taskscope-cancel":
                client = AgentClient(proc.pid, timeout=BLOCK_TIMEOUT)
                try:
                    client.connect()
                    result["detail"] = f"outcome {client.cancel(victim)!r}"
                finally:
                    client.close()
            elif probe == "aiomonitor-list":
                body = live_tasks(proc.url("/api/live-tasks"), timeout=BLOCK_TIMEOUT)
                result["detail"] = f"{len(json.loads(body)['tasks'])} tasks"
            else:
                url = proc.url("/api/task?" + urllib.parse.urlencode({"task_id": victim}))
                request = urllib.request.Request(url, method="DELETE")
                with urllib.request.urlopen(request, timeout=BLOCK_TIMEOUT) as reply:
                    result["detail"] = json.loads(reply.read())["msg"]
            result["seconds"] = time.perf_counter() - started
        except (OSError, urllib.error.URLError, ClientError) as error:
            result["seconds"] = None
            result["detail"] = f"no answer within {BLOCK_TIMEOUT:.0f} s ({type(error).__name__})"
        after = proc.message(timeout=30)
        result["victim"] = (
            f"cancelled {after['cancelled_after_unblock']} s after the loop woke"
            if after["victim_cancelled"]
            else "not cancelled"
        )
    return result


def section_blocked() -> None:
    say()
    say(
        f"4. Answering while the loop is blocked (time.sleep(5) in a coroutine; each probe in a "
        f"fresh target, sent {BLOCK_PROBE_AT} s into the block, {BLOCK_TIMEOUT:.0f} s timeout)"
    )
    probes = {
        "taskscope-snapshot": "taskscope connect + snapshot()",
        "taskscope-cancel": "taskscope connect + cancel(victim)",
        "aiomonitor-list": "aiomonitor POST /api/live-tasks",
        "aiomonitor-cancel": "aiomonitor DELETE /api/task (cancel)",
    }
    rows = []
    for probe, label in probes.items():
        result = run_blocked(probe)
        answer = "NO ANSWER" if result["seconds"] is None else ms(result["seconds"])
        rows.append(
            [label, answer, result["victim"] if "cancel" in probe else "", result["detail"]]
        )
    say()
    say(table(["probe", "answer ms", "victim task", "reply"], rows))


# --- 5: footprint ----------------------------------------------------------------------------

FOOTPRINT = """
import asyncio, sys, time
loop = asyncio.new_event_loop()
before = len(sys.modules)
t0 = time.perf_counter()
{import_}
t1 = time.perf_counter()
imported = len(sys.modules)
{start}
t2 = time.perf_counter()
print(imported - before, len(sys.modules) - before, t1 - t0, t2 - t1)
{stop}
"""

FOOTPRINT_TOOLS = {
    "taskscope": (
        "import taskscope",
        "taskscope.install()",
        "taskscope.uninstall()",
    ),
    "aiomonitor": (
        "import aiomonitor",
        "m = aiomonitor.start_monitor(loop, port={0}, webui_port={1}, console_port={2})",
        "m.close()",
    ),
}
FOOTPRINT_LABEL = {
    "taskscope": "import taskscope; taskscope.install()",
    "aiomonitor": "import aiomonitor; start_monitor(loop)",
}


def section_footprint(settings: Settings) -> None:
    say()
    say(
        f"5. Import footprint: a fresh `python -c` per run ({settings.footprint_procs} runs, "
        "best / median), asyncio imported and a loop created before counting"
    )
    samples: dict[str, list[tuple[int, int, float, float]]] = {t: [] for t in FOOTPRINT_TOOLS}
    for _ in range(settings.footprint_procs):
        for tool, (import_, start, stop) in FOOTPRINT_TOOLS.items():
            code = FOOTPRINT.format(import_=import_, start=start.format(*free_ports(3)), stop=stop)
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout.split()
            samples[tool].append((int(out[0]), int(out[1]), float(out[2]), float(out[3])))
    rows = []
    for tool, runs in samples.items():
        imports = [run[2] for run in runs]
        starts = [run[3] for run in runs]
        totals = [run[2] + run[3] for run in runs]
        rows.append(
            [
                FOOTPRINT_LABEL[tool],
                runs[0][0],
                runs[0][1],
                f"{ms(min(imports))} / {ms(statistics.median(imports))}",
                f"{ms(min(starts))} / {ms(statistics.median(starts))}",
                f"{ms(min(totals))} / {ms(statistics.median(totals))}",
            ]
        )
    say()
    say(table(["", "modules (import)", "(+start)", "import ms", "start ms", "total ms"], rows))


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="about 1 minute instead of 5")
    parser.add_argument(
        "--only",
        default="churn,idle,list,blocked,footprint",
        help="comma-separated sections to run (default: all)",
    )
    parser.add_argument("--count", type=int, help="tasks per churn round")
    parser.add_argument("--procs", type=int, help="fresh processes per churn configuration")
    args = parser.parse_args()
    if args.quick:
        settings = Settings(
            count=20_000, idle_count=40_000, batch=1000, rounds=2, procs=1,
            list_repeat=3, footprint_procs=3,
        )  # fmt: skip
    else:
        settings = Settings(
            count=50_000, idle_count=150_000, batch=1000, rounds=3, procs=2,
            list_repeat=5, footprint_procs=5,
        )  # fmt: skip
    if args.count:
        settings.count = args.count
    if args.procs:
        settings.procs = args.procs
    only = set(args.only.split(","))
    header(sys.argv)
    started = time.monotonic()
    if "churn" in only:
        section_churn(settings)
    if "idle" in only:
        section_idle(settings)
    if "list" in only:
        section_list(settings)
    if "blocked" in only:
        section_blocked()
    if "footprint" in only:
        section_footprint(settings)
    say()
    say(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
