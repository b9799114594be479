"""`taskscope metrics` and `taskscope exporter` against real processes: the text parses with
prometheus_client's own parser and its counts agree with `taskscope dump` taken right after."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import REPO, run_cli, wait_for

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> Samples:
    """Every sample of the text, by metric name, through the real Prometheus parser."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    found = [v for got, v in samples.get(name, []) if labels.items() <= got.items()]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def dump(pid: int) -> dict:  # type: ignore[type-arg]
    result = run_cli("dump", str(pid))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def assert_agrees_with_dump(samples: Samples, pid: int) -> None:
    snapshot = dump(pid)
    states = Counter(task["state"] for task in snapshot["tasks"])
    (loop,) = {task["loop"] for task in snapshot["tasks"]}
    for state in ("pending", "done", "failed", "cancelled"):
        assert value(samples, "taskscope_tasks", pid=str(pid), state=state) == states[state]
    pending = [task for task in snapshot["tasks"] if task["state"] == "pending"]
    by_coroutine = {
        labels["coroutine"]: count
        for labels, count in samples["taskscope_tasks_by_coroutine"]
        if labels["pid"] == str(pid) and labels["loop"] == loop
    }
    assert by_coroutine == dict(Counter(task["coro"] for task in pending))
    by_kind = {
        labels["kind"]: count
        for labels, count in samples["taskscope_tasks_by_await_kind"]
        if labels["pid"] == str(pid)
    }
    kinds = Counter(task["awaiting"]["kind"] for task in pending if task["awaiting"])
    assert by_kind == dict(kinds)
    assert value(samples, "taskscope_up", pid=str(pid)) == 1
    assert value(samples, "taskscope_await_cycles", pid=str(pid)) == len(snapshot["cycles"])


@pytest.fixture
def not_python() -> Iterator[int]:
    """A live process that is not Python."""
    process = subprocess.Popen(["sleep", "600"])
    yield process.pid
    process.kill()
    process.wait()


def test_metrics_parse_and_agree_with_dump(start, not_python: int) -> None:  # type: ignore[no-untyped-def]
    # GIVEN the service at rest (workers waiting on an empty queue, sleepers, one task done
    # and one failed in the history) and a second pid that is not Python
    target = start("service.py").wait_ready()

    # WHEN its metrics are printed
    # THEN the text parses, agrees with dump, and the other pid is `up` 0 with one line said.
    # The service's stopper polls every 50 ms: a look may find it between two sleeps (ready,
    # awaiting nothing), so the metrics and the dump taken after them are compared again
    # until both found it alike.
    for attempt in range(5):
        result = run_cli("metrics", str(target.pid), str(not_python))
        samples = parse(result.stdout)
        assert value(samples, "taskscope_tasks", pid=str(target.pid), state="pending") == 8
        try:
            assert_agrees_with_dump(samples, target.pid)
            break
        except AssertionError:
            if attempt == 4:
                raise
    assert value(samples, "taskscope_up", pid=str(not_python)) == 0
    assert not [
        labels for labels, _ in samples["taskscope_tasks"] if labels["pid"] == str(not_python)
    ]
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and str(not_python) in lines[0] and "Python" in lines[0], lines


def test_metrics_count_each_loop_apart(start) -> None:  # type: ignore[no-untyped-def]
    # GIVEN three threads, each running its own loop with a task and its sleeping child
    target = start("threads.py", agent=False).wait_ready()

    # WHEN the metrics are printed
    result = run_cli("metrics", str(target.pid))
    samples = parse(result.stdout)

    # THEN each loop of the snapshot has its own counts, as dump has them
    assert result.returncode == 0, result.stderr
    snapshot = dump(target.pid)
    loops = [loop["id"] for loop in snapshot["loops"]]
    assert len(loops) == 3
    for loop in loops:
        pending = Counter(
            task["coro"]
            for task in snapshot["tasks"]
            if task["loop"] == loop and task["state"] == "pending"
        )
        assert sum(pending.values()) == 2
        assert value(samples, "taskscope_tasks", loop=loop, state="pending") == 2
        for coro, count in pending.items():
            assert (
                value(samples, "taskscope_tasks_by_coroutine", loop=loop, coroutine=coro) == count
            )
        assert value(samples, "taskscope_loop_blocked_seconds", loop=loop) == 0


def test_metrics_say_a_blocked_loop(start) -> None:  # type: ignore[no-untyped-def]
    # GIVEN a loop blocked in time.sleep for a while
    target = start("blocked.py", "30").wait_ready()

    # WHEN the metrics are read once the block has been seen
    def blocked_samples() -> Samples | None:
        result = run_cli("metrics", str(target.pid))
        assert result.returncode == 0, result.stderr
        samples = parse(result.stdout)
        return samples if value(samples, "taskscope_loop_blocked_seconds") > 0.5 else None

    samples = wait_for(blocked_samples, 20, "the loop blocked")

    # THEN the loop reads blocked for more than half a second
    assert value(samples, "taskscope_loop_blocked_seconds", pid=str(target.pid)) > 0.5


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        return parse(response.read().decode())


def scrape_agreeing(url: str, pids: list[int], tries: int = 5) -> Samples:
    """A scrape whose figures agree with a `dump` of each of `pids` taken right after it: a
    task of the services that wakes every 50 ms (its stopper) may be between two sleeps in
    one of the two looks and not in the other, so a disagreement is looked at again."""
    for attempt in range(tries):
        samples = scrape(url)
        try:
            for pid in pids:
                assert_agrees_with_dump(samples, pid)
        except AssertionError:
            if attempt == tries - 1:
                raise
            time.sleep(0.2)
            continue
        return samples
    raise AssertionError("unreachable")


def test_exporter_scrapes_fresh_snapshots_and_ends_on_ctrl_c(start, not_python: int) -> None:  # type: ignore[no-untyped-def]
    # GIVEN two services and a pid that is not Python, served by the exporter on a free port
    first = start("service.py").wait_ready()
    second = start("service.py").wait_ready()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    pids = [str(first.pid), str(second.pid), str(not_python)]
    exporter = subprocess.Popen(
        [sys.executable, "-m", "taskscope", "exporter", "--port", "0", *pids],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert exporter.stdout is not None
        ready = exporter.stdout.readline()
        assert "http://127.0.0.1:" in ready, (ready, exporter.stderr and exporter.stderr.read())
        url = ready.split()[ready.split().index("at") + 1].rstrip(";")

        # WHEN Prometheus scrapes it
        # THEN each service agrees with dump, the other pid is `up` 0
        samples = scrape_agreeing(url, [first.pid, second.pid])
        assert value(samples, "taskscope_up", pid=str(not_python)) == 0

        # WHEN one service goes away, THEN the next scrape drops it with `up` 0, no crash
        first.kill()
        samples = scrape_agreeing(url, [second.pid])
        assert value(samples, "taskscope_up", pid=str(first.pid)) == 0
        assert not [got for got, _ in samples["taskscope_tasks"] if got["pid"] == str(first.pid)]

        # WHEN Ctrl-C, THEN it ends cleanly: 130, no traceback, one line per unreadable pid
        exporter.send_signal(signal.SIGINT)
        _out, err = exporter.communicate(timeout=20)
        assert exporter.returncode == 130, err
        assert "Traceback" not in err
        lines = err.splitlines()
        assert len(lines) == 2, lines
        assert str(not_python) in lines[0] and str(first.pid) in lines[1], lines
    finally:
        if exporter.poll() is None:
            exporter.kill()
            exporter.communicate()


def test_exporter_port_in_use_is_one_line(start) -> None:  # type: ignore[no-untyped-def]
    # GIVEN a port something already listens on
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        # WHEN the exporter is asked to listen there
        result = run_cli("exporter", "--port", str(port), str(os.getpid()))

    # THEN one line says so
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_the_longest_wait_by_kind_counts_from_the_look_that_found_it(start) -> None:  # type: ignore[no-untyped-def]
    # GIVEN a program with a task stuck on an Event and one on a Lock, seen by a first look
    target = start("waits_seen.py").wait_ready()
    first = dump(target.pid)["taken_at"]
    wait_for(lambda: time.time() - first > 1.5, what="a second and a half")
    # WHEN the metrics are taken (a look of their own)
    result = run_cli("metrics", str(target.pid))
    assert result.returncode == 0, result.stderr
    samples = parse(result.stdout)
    # THEN the longest wait of each kind counts from that first look, in the snapshot's time
    snapshot = dump(target.pid)
    for kind in ("event", "lock"):
        seconds = value(samples, "taskscope_longest_wait_seconds", pid=str(target.pid), kind=kind)
        assert 1.5 <= seconds <= snapshot["taken_at"] - first, (kind, seconds)
