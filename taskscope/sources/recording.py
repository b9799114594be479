"""A recording file (`taskscope record`) as a `Source`, with a position in time.

`snapshot()` is the recorded state at the current position; `subscribe` follows the replay
controls: a seek (to a time, by some seconds, to the previous or next update) yields a new
`SnapshotUpdate` of the state there, and playing yields `DeltaUpdate`s at the recorded pace
times the speed, until the end of the recording, where it pauses. The position is also the
clock a front end says ages and countdowns at (`now`).

A recording can do nothing to the process it recorded: its capabilities are none, and cancel,
detach and a stack with source lines raise `Unsupported` saying so; `stack` gives the stack
recorded in the task's record at the current position.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from taskscope.protocol import StackFrame, WireSnapshot, stack_left_out
from taskscope.recording import Recording, RecordingError, RecordingWriter, open_recording
from taskscope.sources.base import (
    CancelResult,
    Capability,
    DeltaUpdate,
    ProcessIdentity,
    ProcessInfo,
    SnapshotUpdate,
    Source,
    StackReply,
    Unsupported,
    Update,
    delta_between,
)

#: The speeds `faster` and `slower` step through.
SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


class RecordingSource:
    """A look at a recorded process, at one moment of its recording at a time."""

    capabilities = Capability.NONE

    def __init__(
        self,
        recording: Recording | str | os.PathLike[str],
        *,
        at: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(recording, Recording):
            recording = open_recording(recording)
        if not recording.chunks:
            raise RecordingError(f"{recording.path}: the recording holds no snapshot")
        self.recording = recording
        self.pid = int(recording.facts.get("pid") or 0)
        self._times = recording.times
        self._clock = clock
        self._lock = threading.Condition()
        self._position = self._clamped(recording.end if at is None else at)
        self._playing = False
        self._speed = 1.0
        #: Bumped by every seek: a subscription that sees it change sends a new snapshot.
        self._generation = 0
        self._closed = False
        self._cache: tuple[float, WireSnapshot] | None = None

    # --- where and how it plays ----------------------------------------------------------------

    @property
    def label(self) -> str:
        return f"recording of process {self.pid}"

    @property
    def start(self) -> float:
        return self.recording.start

    @property
    def end(self) -> float:
        return self.recording.end

    @property
    def position(self) -> float:
        """The moment shown, in wall-clock seconds of the recording."""
        return self._position

    def now(self) -> float:
        """The clock of the moment shown: ages and countdowns are said at it."""
        return self._position

    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def update_times(self) -> list[float]:
        """The time of each recorded update, in order."""
        return self._times

    def seek(self, at: float) -> float:
        """Show the moment `at` (brought into the recording); returns the moment shown."""
        with self._lock:
            self._position = self._clamped(at)
            self._generation += 1
            self._lock.notify_all()
            return self._position

    def seek_by(self, seconds: float) -> float:
        return self.seek(self._position + seconds)

    def step(self, updates: int) -> float:
        """Move by `updates` recorded updates (negative: back)."""
        index = self._index_at(self._position)
        if updates < 0 and self._times[index] < self._position:
            index += 1  # between two updates: one back is the one before
        index = min(max(index + updates, 0), len(self._times) - 1)
        return self.seek(self._times[index])

    def play(self) -> None:
        with self._lock:
            if self._position >= self.end:
                self._position = self.start  # played to the end: again from the start
                self._generation += 1
            self._playing = True
            self._lock.notify_all()

    def pause(self) -> None:
        with self._lock:
            self._playing = False
            self._lock.notify_all()

    def toggle_play(self) -> bool:
        if self._playing:
            self.pause()
        else:
            self.play()
        return self._playing

    def faster(self) -> float:
        return self._set_speed(next((s for s in SPEEDS if s > self._speed), SPEEDS[-1]))

    def slower(self) -> float:
        return self._set_speed(next((s for s in reversed(SPEEDS) if s < self._speed), SPEEDS[0]))

    def _set_speed(self, speed: float) -> float:
        with self._lock:
            self._speed = speed
            self._lock.notify_all()
        return speed

    def _clamped(self, at: float) -> float:
        return min(max(at, self.recording.start), self.recording.end)

    def _index_at(self, at: float) -> int:
        """The last update at or before `at` (0 before the first)."""
        low, high = 0, len(self._times)
        while low < high:
            middle = (low + high) // 2
            if self._times[middle] <= at:
                low = middle + 1
            else:
                high = middle
        return max(low - 1, 0)

    # --- the Source protocol -------------------------------------------------------------------

    def _state_at(self, at: float) -> WireSnapshot:
        cached = self._cache
        if cached is not None and cached[0] == at:
            return cached[1]
        snapshot: WireSnapshot = self.recording.snapshot_at(at)  # type: ignore[assignment]
        self._cache = (at, snapshot)
        return snapshot

    def snapshot(self, include_finished: bool = True) -> WireSnapshot:
        snapshot = self._state_at(self._position)
        if include_finished:
            return snapshot
        pending = [task for task in snapshot["tasks"] if task["state"] == "pending"]
        return {**snapshot, "tasks": pending}

    def subscribe(self, interval: float) -> Iterator[Update]:
        """The state at the position, then what the controls make of it: a snapshot after a
        seek, a delta at each recorded update while playing. `interval` is not used: the
        recording's own pace is."""
        with self._lock:
            generation = self._generation
            shown_at = self._position
        shown = self._state_at(shown_at)
        yield SnapshotUpdate(shown)
        while True:
            with self._lock:
                next_update = self._next_update_after(shown_at)
                while not self._closed and generation == self._generation:
                    if self._playing and next_update is None:
                        self._playing = False  # the end: pause there
                    if not self._playing:
                        self._lock.wait()
                        continue
                    assert next_update is not None
                    wait = (next_update - self._position) / self._speed
                    started = self._clock()
                    if wait > 0 and self._lock.wait(wait):
                        # woken early (a control): play on from where it got to
                        if self._playing and generation == self._generation:
                            moved = (self._clock() - started) * self._speed
                            self._position = min(self._position + moved, next_update)
                        continue
                    if not self._playing or generation != self._generation:
                        continue
                    self._position = next_update
                    break
                if self._closed:
                    return
                seeked = generation != self._generation
                generation = self._generation
                at = self._position
            state = self._state_at(at)
            if seeked:
                yield SnapshotUpdate(state)
            else:
                yield DeltaUpdate(delta_between(shown, state))
            shown, shown_at = state, at

    def _next_update_after(self, at: float) -> float | None:
        index = self._index_at(at)
        while index < len(self._times) and self._times[index] <= at:
            index += 1
        return self._times[index] if index < len(self._times) else None

    def stack(self, task_id: str) -> StackReply:
        """The stack recorded in the task's record at the moment shown (no source lines)."""
        for task in self.snapshot()["tasks"]:
            if str(task["id"]) == task_id:
                frames: list[StackFrame] = [
                    {
                        "function": frame["function"],
                        "file": frame["file"],
                        "line": frame["line"],
                        "source": None,
                    }
                    for frame in task["stack"]
                ]
                reply: StackReply = {
                    "type": "stack",
                    "task": task_id,
                    "found": True,
                    "stack": frames,
                    "created_from": [
                        {**frame, "source": None} for frame in task.get("created_from", [])
                    ],
                }
                gap = stack_left_out(task)
                if gap is not None:
                    reply["left_out_at"], reply["left_out"] = gap
                if task["state"] != "pending":
                    reply["record"] = task
                return reply
        return {"type": "stack", "task": task_id, "found": False, "stack": []}

    def cancel(self, task_id: str, message: str | None = None) -> CancelResult:
        raise Unsupported(
            f"a recording of process {self.pid} cannot cancel tasks: it shows the past "
            f"(`taskscope attach {self.pid}` looks at the process itself, if it still runs)"
        )

    def detach(self) -> None:
        raise Unsupported(f"a recording of process {self.pid} has no agent to detach")

    def identity(self) -> ProcessIdentity:
        facts = self.recording.facts
        identity: ProcessIdentity = {"pid": self.pid}
        if isinstance(facts.get("python"), str):
            identity["python"] = facts["python"]
        if isinstance(facts.get("argv"), list):
            identity["argv"] = facts["argv"]
        if isinstance(facts.get("executable"), str):
            identity["executable"] = facts["executable"]
        if isinstance(facts.get("started_at"), int | float):
            identity["started_at"] = float(facts["started_at"])
        return identity

    def process_info(self) -> ProcessInfo:
        """What the recording knows of the process (no live facts: CPU, memory); it was
        alive at every recorded moment."""
        info: ProcessInfo = {"pid": self.pid, "alive": True}
        argv = self.recording.facts.get("argv")
        if isinstance(argv, list):
            info["command"] = " ".join(str(word) for word in argv)
        if isinstance(self.recording.facts.get("python"), str):
            info["python"] = self.recording.facts["python"]
        return info

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()


class RecordingTap:
    """Another source, unchanged, whose subscription is also written to a recording as it
    goes (`taskscope attach PID --record FILE`: record while you watch)."""

    def __init__(self, source: Source, writer: RecordingWriter) -> None:
        self.source = source
        self.writer = writer
        self.pid = source.pid
        self.capabilities = source.capabilities
        #: Why writing stopped (the disk filled up), once it did; the look goes on.
        self.write_error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.source.label}, recorded"

    def snapshot(self, include_finished: bool = True) -> WireSnapshot:
        return self.source.snapshot(include_finished)

    def subscribe(self, interval: float) -> Iterator[Update]:
        for update in self.source.subscribe(interval):
            if self.write_error is None:
                try:
                    if isinstance(update, SnapshotUpdate):
                        self.writer.add_snapshot(update.snapshot)
                    else:
                        self.writer.add_delta(update.delta)
                except OSError as error:
                    self.write_error = error.strerror or str(error)
            yield update

    def stack(self, task_id: str) -> StackReply:
        return self.source.stack(task_id)

    def cancel(self, task_id: str, message: str | None = None) -> CancelResult:
        return self.source.cancel(task_id, message)

    def detach(self) -> None:
        self.source.detach()

    def identity(self) -> ProcessIdentity:
        return self.source.identity()

    def process_info(self) -> ProcessInfo:
        return self.source.process_info()

    def close(self) -> None:
        self.source.close()
        try:
            self.writer.close()
        except OSError:
            pass


def recording_facts(source: Source, interval: float) -> dict[str, Any]:
    """The header facts of a recording of `source` (what `taskscope record` writes)."""
    identity = source.identity()
    facts: dict[str, Any] = {
        key: identity.get(key) for key in ("pid", "python", "argv", "executable")
    }
    facts["started_at"] = identity.get("started_at")
    facts["interval"] = interval
    return facts
