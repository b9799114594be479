"""The flight recorder: the last minute (or so) of what the agent saw, kept in memory, so that
`taskscope record PID --last` can save the moments before a user noticed a problem.

It is fed the snapshots the agent builds anyway (`AgentServer.snapshot`, shared with every
subscriber and bounded in how much time it takes) at its own pace, and keeps what a
subscription would have sent: a base state (the oldest moment it still holds) and the deltas
after it. A delta older than the window is folded into the base, so memory is the base's
records (shared with the agent's own cache: the same objects), plus the deltas' changed
records. Everything is kept as the agent holds it (countdowns as end times, see taskscope/protocol)
and made schema 1 when it is asked for.

Off unless turned on (`taskscope.install(flight_recorder=60)`, `taskscope run
--flight-recorder 60`, TASKSCOPE_FLIGHT_RECORDER=60): building a snapshot every second or two
is not free for a process with many tasks (see the README's speed section).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from taskscope.protocol import pieces

#: How often the recorder looks, at most; the agent's duty limit can make it look less often.
DEFAULT_INTERVAL = 1.0
#: Seconds kept, when turned on without a figure.
DEFAULT_WINDOW = 60.0
#: Longest window one can ask for: what is kept grows with it.
MAX_WINDOW = 3600.0


@dataclass(slots=True)
class FlightDelta:
    taken_at: float
    loop_time: float | None
    loops: list[Any]
    changed: list[Any]
    removed: list[str]
    cycles: list[Any]


class FlightRecorder:
    """The last `window` seconds of snapshots as a base and deltas. Thread-safe: fed from the
    agent's server thread, read from a connection's request on the same thread or another."""

    def __init__(self, window: float = DEFAULT_WINDOW, interval: float = DEFAULT_INTERVAL) -> None:
        self.window = min(max(float(window), 1.0), MAX_WINDOW)
        self.interval = max(float(interval), 0.05)
        self._lock = threading.Lock()
        #: The oldest state held: the snapshot's top-level facts, and its records by id.
        self._base_top: dict[str, Any] | None = None
        self._base: dict[str, Any] = {}
        #: The newest state's records by id (to tell what the next snapshot changed).
        self._current: dict[str, Any] = {}
        self._deltas: collections.deque[FlightDelta] = collections.deque()
        self.next_due = 0.0

    def feed(self, snapshot: dict[str, Any]) -> None:
        """Take in a raw snapshot (as `SnapshotBuilder.build_raw` makes it, finished tasks
        included). A snapshot already seen (the server's cache handed it out again) is skipped."""
        with self._lock:
            if self._base_top is not None and snapshot["taken_at"] <= self._newest_time():
                return
            if self._base_top is None:
                current = {
                    record["id"]: record for piece in pieces(snapshot["tasks"]) for record in piece
                }
                self._base_top = _top(snapshot)
                self._base = current
                self._current = current
                return
            current, changed, removed = changes_between(self._current, snapshot["tasks"])
            self._deltas.append(
                FlightDelta(
                    snapshot["taken_at"],
                    snapshot.get("loop_time"),
                    snapshot["loops"],
                    changed,
                    removed,
                    snapshot["cycles"],
                )
            )
            self._current = current
            self._age_out(snapshot["taken_at"] - self.window)

    def _newest_time(self) -> float:
        if self._deltas:
            return self._deltas[-1].taken_at
        assert self._base_top is not None
        return float(self._base_top["taken_at"])

    def _age_out(self, oldest_kept: float) -> None:
        """Fold into the base every delta that is older than the window, keeping the base a
        state the recorder really saw."""
        while self._deltas and self._deltas[0].taken_at <= oldest_kept:
            delta = self._deltas.popleft()
            base = self._base
            for record in delta.changed:
                base[record["id"]] = record
            for task_id in delta.removed:
                base.pop(task_id, None)
            assert self._base_top is not None
            self._base_top.update(
                taken_at=delta.taken_at,
                loop_time=delta.loop_time,
                loops=delta.loops,
                cycles=delta.cycles,
            )
        if not self._deltas:
            self._base = self._current

    def export(self) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The base snapshot and the deltas after it, in the agent's raw form (each with its
        `loop_time`, for countdowns), or None before the first look."""
        with self._lock:
            if self._base_top is None:
                return None
            base = dict(self._base_top)
            base["tasks"] = list(self._base.values())
            deltas = [
                {
                    "taken_at": delta.taken_at,
                    "loops": delta.loops,
                    "changed": list(delta.changed),
                    "removed": list(delta.removed),
                    "cycles": delta.cycles,
                    "loop_time": delta.loop_time,
                }
                for delta in self._deltas
            ]
            return base, deltas

    def span(self) -> float:
        """Seconds between the oldest and the newest state held."""
        with self._lock:
            if self._base_top is None:
                return 0.0
            return self._newest_time() - float(self._base_top["taken_at"])


def changes_between(
    previous: Mapping[str, Any], records: Iterable[Any]
) -> tuple[dict[str, Any], list[Any], list[str]]:
    """What a look's `records` change against the last look's (`previous`, by task id): the
    new records by id, the records that changed and the ids that went. A record that did not
    change is the same object as last time, or at least equal (countdowns are end times,
    which stay put while the task does). Walks every task, so in pieces (see `pieces`)."""
    current = {record["id"]: record for piece in pieces(records) for record in piece}
    changed = [
        record
        for piece in pieces(current.items())
        for task_id, record in piece
        if (before := previous.get(task_id)) is not record and before != record
    ]
    removed = [task_id for piece in pieces(previous) for task_id in piece if task_id not in current]
    return current, changed, removed


def _top(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in snapshot.items() if key != "tasks"}
