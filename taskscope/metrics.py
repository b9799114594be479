"""Prometheus/OpenMetrics numbers for live processes, counted from their snapshots.

A `SnapshotCollector` is a prometheus_client collector: each collect takes a fresh snapshot of
every pid through the function it was given (the CLI's, which connects to the agent and loads
it when needed) and turns the facts in it into gauges; prometheus_client writes the format.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import CollectorRegistry

from taskscope.protocol import WireSnapshot

#: Every state a task can be in: each loop gets a sample for each, zeros included, so a
#: query over a state never finds a series missing.
TASK_STATES = ("pending", "done", "cancelled", "failed")

#: Takes a snapshot of one pid; raises when it cannot.
TakeSnapshot = Callable[[int], WireSnapshot]
#: Told about a pid whose snapshot could not be taken, and why.
OnFailure = Callable[[int, BaseException], None]


def snapshot_metrics(snapshots: dict[int, WireSnapshot | None]) -> list[Metric]:
    """The gauges for these snapshots (None: the pid could not be read, only `up` 0)."""
    up = GaugeMetricFamily(
        "taskscope_up", "1 when a snapshot of the process was taken, else 0", labels=["pid"]
    )
    tasks = GaugeMetricFamily(
        "taskscope_tasks",
        "Tasks by state: pending ones live now, finished ones kept in the agent's history",
        labels=["pid", "loop", "state"],
    )
    by_coroutine = GaugeMetricFamily(
        "taskscope_tasks_by_coroutine",
        "Pending tasks by the coroutine they run",
        labels=["pid", "loop", "coroutine"],
    )
    by_await_kind = GaugeMetricFamily(
        "taskscope_tasks_by_await_kind",
        "Pending tasks by the kind of thing they await (sleep, queue, lock, task, ...)",
        labels=["pid", "loop", "kind"],
    )
    lag = GaugeMetricFamily(
        "taskscope_loop_lag_seconds",
        "How late the loop ran the agent's last heartbeat timer",
        labels=["pid", "loop"],
    )
    blocked = GaugeMetricFamily(
        "taskscope_loop_blocked_seconds",
        "How long the loop has not run its callbacks (a lower bound), 0 when it runs",
        labels=["pid", "loop"],
    )
    cycles = GaugeMetricFamily(
        "taskscope_await_cycles", "Await cycles: tasks that wait on each other", labels=["pid"]
    )
    longest_wait = GaugeMetricFamily(
        "taskscope_longest_wait_seconds",
        "The longest a pending task has waited where it is, by the kind of thing it awaits: "
        "at least since the agent's first look that found it there (each snapshot is a look)",
        labels=["pid", "loop", "kind"],
    )
    for pid, snapshot in sorted(snapshots.items()):
        pid_text = str(pid)
        up.add_metric([pid_text], 0.0 if snapshot is None else 1.0)
        if snapshot is None:
            continue
        loops = [loop["id"] for loop in snapshot["loops"]]
        states: Counter[tuple[str, str]] = Counter()
        coroutines: Counter[tuple[str, str]] = Counter()
        kinds: Counter[tuple[str, str]] = Counter()
        waits: dict[tuple[str, str], float] = {}
        taken_at = snapshot["taken_at"]
        for task in snapshot["tasks"]:
            loop_id = task["loop"]
            if loop_id not in loops:
                loops.append(loop_id)
            states[loop_id, task["state"]] += 1
            if task["state"] != "pending":
                continue
            coroutines[loop_id, task["coro"]] += 1
            awaiting = task["awaiting"]
            if awaiting is not None:
                kinds[loop_id, awaiting["kind"]] += 1
                seen_at = task.get("waiting_seen_at")
                if seen_at is not None:
                    key = (loop_id, awaiting["kind"])
                    waits[key] = max(waits.get(key, 0.0), max(0.0, taken_at - seen_at))
        for loop_id in loops:
            for state in TASK_STATES:
                tasks.add_metric([pid_text, loop_id, state], float(states[loop_id, state]))
        for (loop_id, coro), count in sorted(coroutines.items()):
            by_coroutine.add_metric([pid_text, loop_id, coro], float(count))
        for (loop_id, kind), count in sorted(kinds.items()):
            by_await_kind.add_metric([pid_text, loop_id, kind], float(count))
        for (loop_id, kind), seconds in sorted(waits.items()):
            longest_wait.add_metric([pid_text, loop_id, kind], seconds)
        for loop in snapshot["loops"]:
            if loop["lag"] is not None:
                lag.add_metric([pid_text, loop["id"]], loop["lag"])
            blocked.add_metric([pid_text, loop["id"]], loop["blocked_for"] or 0.0)
        cycles.add_metric([pid_text], float(len(snapshot["cycles"])))
    return [up, tasks, by_coroutine, by_await_kind, lag, blocked, cycles, longest_wait]


class SnapshotCollector:
    """Collects the gauges of `pids`, a fresh snapshot of each per collect. A pid that cannot
    be read (gone, not Python, refused) is reported to `on_failure` and counted `up` 0."""

    def __init__(self, pids: Sequence[int], take: TakeSnapshot, on_failure: OnFailure) -> None:
        self.pids = list(dict.fromkeys(pids))
        self.take = take
        self.on_failure = on_failure

    def snapshots(self) -> dict[int, WireSnapshot | None]:
        taken: dict[int, WireSnapshot | None] = {}
        for pid in self.pids:
            try:
                taken[pid] = self.take(pid)
            except Exception as error:
                self.on_failure(pid, error)
                taken[pid] = None
        return taken

    def collect(self) -> Iterator[Metric]:
        yield from snapshot_metrics(self.snapshots())


def registry_for(collectors: Iterable[SnapshotCollector]) -> CollectorRegistry:
    """A registry of its own holding only these collectors (no process or GC metrics of the
    taskscope command itself)."""
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry, openmetrics: bool = False) -> str:
    """The text a scrape of `registry` returns: Prometheus text, or OpenMetrics."""
    if openmetrics:
        data: bytes = generate_openmetrics(registry)  # type: ignore[no-untyped-call]
    else:
        data = generate_latest(registry)
    return data.decode("utf-8")
