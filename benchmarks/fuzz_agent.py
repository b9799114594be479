"""Hostile input against a live agent, over its Unix socket only: does the host notice?

Run: python benchmarks/fuzz_agent.py [--frames 100000] [--seed 1] [--time-limit 900]

Starts benchmarks/targets/fuzz_host.py (50 tasks, one printing a counter every 100 ms) under
`taskscope run`, in a private socket directory, then:

1. sends `--frames` hostile frames (random bytes, truncated JSON, lines past the 64 KiB limit
   up to 10 MB, 100,000-deep nesting, wrong types, unknown requests, non-UTF-8, UTF-16 and
   byte-order marks, blank lines, and valid requests mixed in) on connections of 1-20 frames,
   and checks every reply the protocol promises: one per request line, in order, and when
   the agent hangs up early, an error reply saying why;
2. after each batch, asks for a snapshot as a well-behaved client and checks it;
3. opens `--silent` connections that say nothing, timing a well-behaved client meanwhile;
4. makes `--cycles` connect/disconnect cycles;
and reports the host's crashes, its stderr, its counter (lost lines, longest gap), its RSS,
and whether its descriptors and threads came back to where they were. Seeded, bounded in
count and in time; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from taskscope.client import AgentClient  # noqa: E402
from taskscope.protocol import MAX_REQUEST_BYTES  # noqa: E402

HOST = REPO / "benchmarks" / "targets" / "fuzz_host.py"
HELLO = {"type": "hello", "protocol": 1}
REPLY_TIMEOUT = 10.0
#: Error codes after which the agent hangs up (the rest leave the connection open).
CLOSING_CODES = {"too_large", "version_mismatch", "busy", "timeout", "forbidden", "evicted"}


# --- the host ----------------------------------------------------------------------------------


class Host:
    """The attacked program: its process, its counter, its stderr."""

    def __init__(self, workdir: str, python: str) -> None:
        self.socket_dir = os.path.join(workdir, "sockets")
        os.mkdir(self.socket_dir, 0o700)
        ready = os.path.join(workdir, "ready")
        self.stderr_path = os.path.join(workdir, "stderr")
        env = dict(os.environ, TASKSCOPE_SOCKET_DIR=self.socket_dir)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.stderr_file = open(self.stderr_path, "wb")  # noqa: SIM115 - open for the run
        self.process = subprocess.Popen(
            [python, "-m", "taskscope", "run", str(HOST), ready],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
        )
        self.pid = self.process.pid
        self.counts: list[tuple[float, int]] = []
        self.reader = threading.Thread(target=self._read_counter, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 30
        while not (os.path.exists(ready) and os.path.exists(self.socket_path)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the host did not start")
            time.sleep(0.02)

    @property
    def socket_path(self) -> str:
        return os.path.join(self.socket_dir, f"{self.pid}.sock")

    def _read_counter(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.counts.append((time.monotonic(), int(line)))

    def alive(self) -> bool:
        return self.process.poll() is None

    def proc(self, name: str) -> int:
        return len(os.listdir(f"/proc/{self.pid}/{name}"))

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self) -> tuple[int | None, bytes]:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(timeout=5)
        self.stderr_file.close()
        return self.process.returncode, Path(self.stderr_path).read_bytes()

    def counter_figures(self, since: float) -> tuple[int, float]:
        """Lines lost (numbers skipped) and the longest gap between lines, in seconds."""
        counts = [(at, n) for at, n in self.counts if at >= since]
        lost = sum(max(0, b[1] - a[1] - 1) for a, b in itertools.pairwise(counts))
        gap = max((b[0] - a[0] for a, b in itertools.pairwise(counts)), default=0.0)
        return lost, gap


# --- frames ------------------------------------------------------------------------------------


def _line(value: Any) -> bytes:
    return json.dumps(value).encode()


def _valid(rng: random.Random) -> bytes:
    kind = rng.choice(["snapshot", "stack", "cancel", "hello"])
    if kind == "snapshot":
        return _line(
            {"type": "snapshot", "id": rng.randrange(2**53), "include_finished": rng.random() < 0.5}
        )
    if kind == "stack":
        return _line({"type": "stack", "task": str(rng.randrange(1, 200))})
    if kind == "cancel":  # never a task of the host: ids far past any it has
        return _line({"type": "cancel", "task": str(rng.randrange(10**15, 10**18))})
    return _line({**HELLO, "id": rng.randrange(100)})


WRONG_VALUES: list[Any] = [
    [],
    {},
    [1, [2]],
    {"a": {}},
    None,
    True,
    1.5,
    -1,
    2**64,
    "",
    "x" * 300,
    "١٢",
    "1; rm -rf /",
    float("1e308"),
]


def _wrong_types(rng: random.Random) -> bytes:
    request: dict[str, Any] = {
        "type": rng.choice(["hello", "snapshot", "subscribe", "stack", "cancel"])
    }
    key = rng.choice(
        ["type", "id", "protocol", "interval", "include_finished", "task", "message", "encoding"]
    )
    request[key] = rng.choice(WRONG_VALUES)
    if rng.random() < 0.3:
        request["id"] = rng.choice(WRONG_VALUES)
    return json.dumps(request, allow_nan=True).encode()


def _random_bytes(rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))).replace(b"\n", b" ")


def _truncated(rng: random.Random) -> bytes:
    whole = _valid(rng)
    return whole[: rng.randrange(1, len(whole))]


def _nested(rng: random.Random) -> bytes:
    depth = rng.choice([1000, 10_000, 30_000, 100_000])
    return b"[" * depth + b"]" * rng.choice([0, depth])


def _long(rng: random.Random) -> bytes:
    return (
        b'{"type": "snapshot", "pad": "' + b"x" * rng.randrange(MAX_REQUEST_BYTES, 10 << 20) + b'"}'
    )


def _unknown(rng: random.Random) -> bytes:
    return _line(
        {"type": rng.choice(["exec", "eval", "import", "shell", "debug", "__class__"]), "code": "1"}
    )


def _bad_encoding(rng: random.Random) -> bytes:
    text = json.dumps({**HELLO, "id": 1})
    choice = rng.randrange(4)
    if choice == 0:
        return b"\xef\xbb\xbf" + text.encode()
    if choice == 1:
        return text.encode("utf-16").replace(b"\n", b"")
    if choice == 2:
        return text.encode("utf-32").replace(b"\n", b"")
    return b'{"type": "snapshot", "x": "\xff\xfe\xc0\xaf"}'


#: (name, weight, maker); a maker returns one line without its newline.
FRAME_KINDS: list[tuple[str, float, Callable[[random.Random], bytes]]] = [
    ("random bytes", 20, _random_bytes),
    ("truncated JSON", 15, _truncated),
    ("wrong types", 25, _wrong_types),
    ("unknown request", 8, _unknown),
    ("bad encoding", 8, _bad_encoding),
    ("deep nesting", 1, _nested),
    ("line over the limit", 0.05, _long),
    ("blank line", 3, lambda rng: b" " * rng.randrange(5)),
    ("valid request", 20, _valid),
]


# --- one connection ------------------------------------------------------------------------------


@dataclass
class Tally:
    frames: int = 0
    connections: int = 0
    replies: int = 0
    dropped_without_reply: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)


def fuzz_connection(path: str, rng: random.Random, budget: int, tally: Tally) -> None:
    lines: list[tuple[str, bytes]] = []
    if rng.random() < 0.8:
        lines.append(("valid request", _line({**HELLO, "id": 0})))
    names = [kind[0] for kind in FRAME_KINDS]
    weights = [kind[1] for kind in FRAME_KINDS]
    makers = {kind[0]: kind[2] for kind in FRAME_KINDS}
    for _ in range(rng.randrange(1, min(20, budget) + 1)):
        name = rng.choices(names, weights)[0]
        lines.append((name, makers[name](rng)))
    lines = lines[:budget]
    for name, _ in lines:
        tally.kinds[name] = tally.kinds.get(name, 0) + 1
    tally.frames += len(lines)
    tally.connections += 1
    expected = sum(1 for _, line in lines if line.strip())
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(REPLY_TIMEOUT)
    try:
        _connect(sock, path)
        payload = b"".join(line + b"\n" for _, line in lines)
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the agent hung up (a line over the limit): its reason is still to be read
        replies = _read_replies(sock, expected)
    finally:
        sock.close()
    tally.replies += len(replies)
    if len(replies) < expected and (
        not replies or replies[-1].get("type") != "error" or not _closing(replies[-1], replies)
    ):
        tally.dropped_without_reply += 1
        if len(tally.examples) < 5:
            tally.examples.append(repr([name for name, _ in lines]) + " -> " + repr(replies[-2:]))


def _closing(last: dict[str, Any], replies: list[dict[str, Any]]) -> bool:
    """Whether `last` is an error the agent hangs up after: one of the closing codes, or any
    error before a successful hello."""
    greeted = any(reply.get("type") == "hello" for reply in replies)
    return last.get("code") in CLOSING_CODES or not greeted


def _connect(sock: socket.socket, path: str) -> None:
    deadline = time.monotonic() + REPLY_TIMEOUT
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:  # the listen queue is full for a moment
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)


def _read_replies(sock: socket.socket, expected: int) -> list[dict[str, Any]]:
    replies: list[dict[str, Any]] = []
    buffer = b""
    while len(replies) < expected:
        try:
            chunk = sock.recv(1 << 20)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            replies.append(json.loads(line))
    return replies


# --- a well-behaved client -----------------------------------------------------------------------


def good_snapshot(pid: int, socket_dir: str) -> float:
    """Seconds for a fresh client to connect, say hello and get a sound snapshot."""
    started = time.perf_counter()
    with AgentClient(pid, timeout=REPLY_TIMEOUT, socket_dir=socket_dir) as client:
        snapshot = client.snapshot()
    elapsed = time.perf_counter() - started
    names = {task["name"] for task in snapshot["tasks"]}
    if snapshot["pid"] != pid or "counter" not in names or len(snapshot["tasks"]) < 50:
        raise SystemExit(f"bad snapshot: {len(snapshot['tasks'])} tasks")
    return elapsed


def wait_back(host: Host, fds: int, threads: int, timeout: float = 15.0) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        now = host.proc("fd"), host.proc("task")
        if (now[0] <= fds and now[1] <= threads) or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


# --- the run -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="frames between checks")
    parser.add_argument("--silent", type=int, default=1000, help="silent connections")
    parser.add_argument("--cycles", type=int, default=1000, help="connect/disconnect cycles")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=900.0, help="seconds for the frames")
    parser.add_argument("--python", default=sys.executable, help="the host's interpreter")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.silent + 256)), hard))
    rng = random.Random(args.seed)
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="taskscope-fuzz-") as workdir:
        host = Host(workdir, args.python)
        try:
            version = subprocess.run(
                [args.python, "-c", "import sys; print(sys.version.split()[0])"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            good_snapshot(host.pid, host.socket_dir)
            base_fds, base_threads = wait_back(host, 10**6, 10**6, 0)
            rss_start = host.rss_kib()
            began = time.monotonic()
            tally = Tally()
            good_times: list[float] = []
            rss_peak = rss_start
            while tally.frames < args.frames and time.monotonic() - began < args.time_limit:
                target = min(args.frames, tally.frames + args.batch)
                while tally.frames < target:
                    fuzz_connection(host.socket_path, rng, target - tally.frames, tally)
                if not host.alive():
                    failures.append(f"host died after {tally.frames} frames")
                    break
                good_times.append(good_snapshot(host.pid, host.socket_dir))
                rss_peak = max(rss_peak, host.rss_kib())
            fuzz_seconds = time.monotonic() - began
            fds_after_fuzz = wait_back(host, base_fds, base_threads)
            rss_end = host.rss_kib()

            # Silent connections, with a well-behaved client timed while they are open.
            silent: list[socket.socket] = []
            silent_times: list[float] = []
            started = time.monotonic()
            for index in range(args.silent):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(REPLY_TIMEOUT)
                _connect(sock, host.socket_path)
                silent.append(sock)
                if index % 100 == 99:
                    silent_times.append(good_snapshot(host.pid, host.socket_dir))
            silent_seconds = time.monotonic() - started
            for sock in silent:
                sock.close()
            fds_after_silent = wait_back(host, base_fds, base_threads)

            # Connect/disconnect cycles, half of them leaving half a hello behind.
            started = time.monotonic()
            for index in range(args.cycles):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                _connect(sock, host.socket_path)
                if index % 2:
                    sock.sendall(b'{"type": "hel')
                sock.close()
            cycles_seconds = time.monotonic() - started
            cycle_time = good_snapshot(host.pid, host.socket_dir)
            fds_after_cycles = wait_back(host, base_fds, base_threads)
            lost, gap = host.counter_figures(began)
        finally:
            alive = host.alive()
            code, stderr = host.stop()
    if not alive:
        failures.append(f"host crashed (exit status {code})")
    if stderr:
        failures.append(f"host wrote {len(stderr)} bytes on stderr: {stderr[:200]!r}")
    if tally.dropped_without_reply:
        failures.append(f"{tally.dropped_without_reply} connections closed without a reply")
    if max([*silent_times, cycle_time]) > 1.0:
        failures.append("a well-behaved client waited more than 1 s")
    for what, (fds, threads) in (
        ("fuzzing", fds_after_fuzz),
        ("silent connections", fds_after_silent),
        ("connect cycles", fds_after_cycles),
    ):
        if fds > base_fds or threads > base_threads:
            failures.append(
                f"after {what}: {fds} fds, {threads} threads (baseline {base_fds}, {base_threads})"
            )
    if lost:
        failures.append(f"{lost} counter lines lost")

    good_times.sort()
    median = 1000 * good_times[len(good_times) // 2]
    mib = [value / 1024 for value in (rss_start, rss_peak, rss_end, rss_end - rss_start)]
    kinds = ", ".join(f"{name} {count:,}" for name, count in sorted(tally.kinds.items()))
    rows = [
        (
            "hostile frames",
            f"{tally.frames:,} on {tally.connections:,} connections in {fuzz_seconds:.1f} s",
        ),
        ("frame kinds", kinds),
        (
            "replies read",
            f"{tally.replies:,}; connections closed without a promised reply:"
            f" {tally.dropped_without_reply}",
        ),
        (
            "good client per batch",
            f"{len(good_times)} snapshots, median {median:.1f} ms,"
            f" max {1000 * good_times[-1]:.1f} ms",
        ),
        (
            "host RSS",
            f"{mib[0]:.1f} MiB at start, {mib[1]:.1f} MiB peak, {mib[2]:.1f} MiB"
            f" after ({mib[3]:+.1f} MiB)",
        ),
        (
            "silent connections",
            f"{args.silent:,} opened in {silent_seconds:.1f} s; good client"
            f" while open: max {1000 * max(silent_times, default=0):.1f} ms",
        ),
        (
            "connect cycles",
            f"{args.cycles:,} in {cycles_seconds:.1f} s; good client after:"
            f" {1000 * cycle_time:.1f} ms",
        ),
        (
            "fds / threads",
            f"baseline {base_fds} / {base_threads}; after fuzzing"
            f" {fds_after_fuzz[0]} / {fds_after_fuzz[1]}, silent {fds_after_silent[0]} /"
            f" {fds_after_silent[1]}, cycles {fds_after_cycles[0]} / {fds_after_cycles[1]}",
        ),
        (
            "host",
            f"{'alive' if alive else 'CRASHED'} to the end; stderr {len(stderr)} bytes;"
            f" counter lines lost {lost}, longest gap {gap:.3f} s",
        ),
    ]
    print(f"taskscope fuzz_agent: Python {version}, seed {args.seed}")
    for name, value in rows:
        print(f"  {name:<22}{value}")
    for example in tally.examples:
        print(f"  example of a drop: {example}")
    for failure in failures:
        print(f"FAILED: {failure}")
    print("PASSED" if not failures else f"{len(failures)} checks FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
