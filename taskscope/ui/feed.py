"""The hand-over between the subscription thread and the UI: updates are merged as they
arrive, and the UI takes the merged result when it is ready for it.

Deltas cannot be dropped (each one says only what changed), so instead of queueing every
update the buffer folds them into one: later task records replace earlier ones, removals win
over earlier changes, a new snapshot replaces everything before it. The UI is told "there is
something" by a message that replaces any pending one of its kind, so a fast producer never
floods the message queue, and a paused UI simply leaves the buffer to grow by task id only.

The task records of snapshots and deltas are made into model objects here, on the feed's
thread: the screen's thread only files them, and so answers a key that lands during a large
update sooner (and shows the first picture of 10,000 tasks sooner).

While it makes them, the feed's thread holds the interpreter's lock, and the screen's thread,
woken by a key, waits for it: up to the switch interval, 5 ms by default, at each wake-up.
The dashboard's process asks for a 1 ms interval while the feed runs (`prompt_switches`).
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field

from taskscope.model import TaskInfo, TaskModel
from taskscope.protocol import WireDelta, WireLoop, WireSnapshot

#: Seconds a thread holds the interpreter's lock while another waits for it, in the dashboard.
SWITCH_INTERVAL = 0.001


def prompt_switches() -> float:
    """Let a waiting thread (the screen's, woken by a key) have the interpreter's lock within
    `SWITCH_INTERVAL` of asking. Returns the interval before, for `restore_switches`."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, SWITCH_INTERVAL))
    return before


def restore_switches(interval: float) -> None:
    sys.setswitchinterval(interval)


@dataclass(slots=True)
class MergedUpdate:
    """Everything received since the UI last looked: maybe a snapshot, then one folded delta."""

    snapshot: WireSnapshot | None = None
    #: The snapshot's task records, made on the feed's thread.
    snapshot_tasks: dict[str, TaskInfo] | None = None
    changed: dict[str, TaskInfo] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    loops: list[WireLoop] | None = None
    cycles: list[list[str]] | None = None
    taken_at: float = 0.0
    received: int = 0

    def apply_to(self, model: TaskModel) -> None:
        """Apply the snapshot, then the folded delta, to `model`."""
        if self.snapshot is not None:
            model.apply_snapshot(self.snapshot, self.snapshot_tasks)
        if self.loops is not None and self.cycles is not None:
            model.apply_records(
                self.taken_at, self.loops, self.changed.values(), sorted(self.removed), self.cycles
            )


class UpdateBuffer:
    """Thread-safe fold of updates: `put` from the feed thread, `take` from the UI thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: MergedUpdate | None = None

    def put_snapshot(self, snapshot: WireSnapshot) -> None:
        taken_at = float(snapshot["taken_at"])
        tasks = {str(raw["id"]): TaskInfo.from_wire(raw, taken_at) for raw in snapshot["tasks"]}
        with self._lock:
            received = self._pending.received if self._pending else 0
            self._pending = MergedUpdate(
                snapshot=snapshot, snapshot_tasks=tasks, received=received + 1
            )

    def put_delta(self, delta: WireDelta) -> None:
        taken_at = float(delta["taken_at"])
        records = [TaskInfo.from_wire(raw, taken_at) for raw in delta["changed"]]
        with self._lock:
            pending = self._pending if self._pending is not None else MergedUpdate()
            for task in records:
                pending.changed[task.id] = task
                pending.removed.discard(task.id)
            for task_id in delta["removed"]:
                pending.changed.pop(task_id, None)
                pending.removed.add(task_id)
            pending.loops = delta["loops"]
            pending.cycles = delta["cycles"]
            pending.taken_at = taken_at
            pending.received += 1
            self._pending = pending

    def take(self) -> MergedUpdate | None:
        with self._lock:
            pending, self._pending = self._pending, None
            return pending

    def __bool__(self) -> bool:
        with self._lock:
            return self._pending is not None
