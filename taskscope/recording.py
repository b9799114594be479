"""The recording file: a subscription (a snapshot, then deltas, with their times) written to
disk compactly, and read back as the snapshot it was at any moment.

Layout (documented for users in docs/recording.md):

    b"TASKSCOPE-RECORDING 1\\n"         magic line, with the format version
    chunk*                             each: flags (1 byte), time (float64), length (uint32),
                                       big-endian, then `length` bytes of zlib data

The first chunk (flag HEADER) holds the recording's facts as JSON (pid, python, command,
when it started). Then each message of the subscription is one chunk holding one JSON
line, `{"snapshot": SNAPSHOT}` or `{"delta": DELTA}`, in the same schema-1 form as
`taskscope dump`. Chunks are grouped in segments: a segment starts with a KEYFRAME (the
whole state as a snapshot) and goes on with deltas, all compressed by one zlib stream that
is flushed (Z_SYNC_FLUSH) after each chunk. So:

- a recording cut short (recorder killed, disk full) is readable up to its last whole chunk:
  a chunk whose length runs past the end of the file is ignored;
- reading the state at time T decompresses one segment only (the last one starting at or
  before T), found from the chunk headers alone, without decompressing anything else;
- the deltas of a segment share one compression window, so the stacks and names they repeat
  cost little.
"""

from __future__ import annotations

import gc
import json
import os
import struct
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

FORMAT_VERSION = 1
MAGIC_PREFIX = b"TASKSCOPE-RECORDING "
MAGIC = MAGIC_PREFIX + str(FORMAT_VERSION).encode() + b"\n"

#: flags, time (seconds since the epoch), length of the zlib data that follows
CHUNK_HEADER = struct.Struct(">BdI")

HEADER = 2
KEYFRAME = 1
DELTA = 0

#: A new segment (a keyframe) starts after this many seconds of deltas, so that reading the
#: state at any time decompresses at most this much.
DEFAULT_KEYFRAME_EVERY = 30.0


class RecordingError(Exception):
    """A file that is not a recording this taskscope can read; the message is one line."""


#: In a state being folded: task id -> the time its record was taken (not in snapshots).
_RECORDED_AT = "_recorded_at"


def fold(state: dict[str, Any], delta: Mapping[str, Any]) -> None:
    """Apply a delta to a snapshot whose `tasks` is a dict by id (see `_state_of`); when the
    state keeps when each record was taken (`_state_of` makes it so), that too."""
    tasks: dict[str, Any] = state["tasks"]
    recorded_at: dict[str, float] = state.get(_RECORDED_AT, {})
    at = float(delta["taken_at"])
    for record in delta.get("changed", ()):
        task_id = str(record["id"])
        tasks[task_id] = record
        recorded_at[task_id] = at
    for task_id in delta.get("removed", ()):
        tasks.pop(str(task_id), None)
        recorded_at.pop(str(task_id), None)
    state.update(
        (key, value)
        for key, value in delta.items()
        if key not in ("changed", "removed", "build_seconds")
    )


def _state_of(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    state = dict(snapshot)
    state["tasks"] = {str(record["id"]): record for record in snapshot["tasks"]}
    at = float(snapshot["taken_at"])
    state[_RECORDED_AT] = dict.fromkeys(state["tasks"], at)
    return state


def _snapshot_of(state: Mapping[str, Any]) -> dict[str, Any]:
    """The state as the snapshot the agent would have sent at its `taken_at`: the records of
    tasks unchanged since an earlier message get their countdowns brought forward (the
    agent does not resend a task because its countdown moved)."""
    snapshot = {key: value for key, value in state.items() if key != _RECORDED_AT}
    taken_at = float(state["taken_at"])
    recorded_at: dict[str, float] = state[_RECORDED_AT]
    tasks = []
    for task_id, record in state["tasks"].items():
        elapsed = taken_at - recorded_at.get(task_id, taken_at)
        awaiting = record.get("awaiting")
        if elapsed > 0 and awaiting and _has_countdown(awaiting):
            record = dict(record, awaiting=_countdowns_after(awaiting, elapsed))
        tasks.append(record)
    snapshot["tasks"] = tasks
    return snapshot


def _has_countdown(awaiting: Mapping[str, Any]) -> bool:
    return awaiting.get("seconds_left") is not None or awaiting.get("deadline_in") is not None


def _countdowns_after(awaiting: Mapping[str, Any], elapsed: float) -> dict[str, Any]:
    """A description's countdowns (sleep, timeout) `elapsed` seconds later: less left, or
    overdue by more."""
    moved = dict(awaiting)
    for left_key, overdue_key in (("seconds_left", "seconds_overdue"),
                                  ("deadline_in", "deadline_overdue")):  # fmt: skip
        left = moved.get(left_key)
        if left is None:
            continue
        overdue = float(moved.get(overdue_key) or 0.0)
        if overdue > 0:
            moved[overdue_key] = overdue + elapsed
            continue
        remaining = float(left) - elapsed
        moved[left_key] = max(0.0, remaining)
        if remaining < 0:
            moved[overdue_key] = -remaining
    return moved


class RecordingWriter:
    """Writes a subscription as it arrives: `add_snapshot` first, then `add_delta`s."""

    def __init__(
        self,
        stream: IO[bytes],
        facts: Mapping[str, Any],
        *,
        keyframe_every: float = DEFAULT_KEYFRAME_EVERY,
    ) -> None:
        self._stream = stream
        self._keyframe_every = keyframe_every
        self._state: dict[str, Any] | None = None
        self._compressor: Any = None
        self._segment_started = 0.0
        self.messages = 0
        stream.write(MAGIC)
        header = dict(facts)
        header.setdefault("format", FORMAT_VERSION)
        header.setdefault("recorded_at", time.time())
        self._write_chunk(HEADER, float(header["recorded_at"]), json.dumps(header), fresh=True)

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], facts: Mapping[str, Any], **options: Any
    ) -> RecordingWriter:
        return cls(open(path, "wb"), facts, **options)  # closed by close()

    def add_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        """A whole state (the subscription's first message, or a new one after a reconnect)."""
        self._state = _state_of(snapshot)
        self._keyframe(float(snapshot["taken_at"]))

    def add_delta(self, delta: Mapping[str, Any]) -> None:
        if self._state is None:
            raise ValueError("a delta before any snapshot")
        fold(self._state, delta)
        at = float(delta["taken_at"])
        if at - self._segment_started >= self._keyframe_every:
            self._keyframe(at)
            return
        self._write_chunk(DELTA, at, json.dumps({"delta": delta}, separators=(",", ":")))

    def _keyframe(self, at: float) -> None:
        assert self._state is not None
        body = json.dumps({"snapshot": _snapshot_of(self._state)}, separators=(",", ":"))
        self._segment_started = at
        self._write_chunk(KEYFRAME, at, body, fresh=True)

    def _write_chunk(self, flags: int, at: float, text: str, *, fresh: bool = False) -> None:
        if fresh or self._compressor is None:
            self._compressor = zlib.compressobj(6)
        data = self._compressor.compress(text.encode() + b"\n")
        data += self._compressor.flush(zlib.Z_SYNC_FLUSH)
        # One write per chunk: a reader never sees a header without the data it announces,
        # except at a cut end, which it ignores.
        self._stream.write(CHUNK_HEADER.pack(flags, at, len(data)) + data)
        self._stream.flush()
        if flags != HEADER:
            self.messages += 1

    def close(self) -> None:
        self._stream.close()


@dataclass(frozen=True, slots=True)
class Chunk:
    flags: int
    at: float
    offset: int
    length: int


@dataclass(slots=True)
class Recording:
    """A recording read back: its facts, the times of its messages, the state at any time."""

    path: str
    facts: dict[str, Any]
    chunks: list[Chunk] = field(default_factory=list)
    #: True when the file ends in the middle of a chunk (the recorder was stopped mid-write).
    cut_short: bool = False

    @property
    def times(self) -> list[float]:
        return [chunk.at for chunk in self.chunks]

    @property
    def start(self) -> float:
        return self.chunks[0].at

    @property
    def end(self) -> float:
        return self.chunks[-1].at

    def snapshot_at(self, at: float | None = None) -> dict[str, Any]:
        """The schema-1 snapshot as it was at `at` (the last message at or before it; the
        first one when `at` is before the recording; the last one when None)."""
        if not self.chunks:
            raise RecordingError(f"{self.path}: the recording holds no snapshot")
        if at is None:
            at = self.end
        index = _last_at_or_before(self.times, at)
        index = max(index, 0)
        start = index
        while self.chunks[start].flags != KEYFRAME:
            start -= 1
        state: dict[str, Any] | None = None
        # A keyframe of 10,000 tasks is tens of thousands of dicts: the collector's passes
        # over them while they are made cost a third of the read, and find nothing to free.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for _chunk, message in self._decode(start, index + 1):
                if "snapshot" in message:
                    state = _state_of(message["snapshot"])
                elif state is not None:
                    fold(state, message["delta"])
        finally:
            if collecting:
                gc.enable()
        assert state is not None
        return _snapshot_of(state)

    def messages(self, start_index: int = 0) -> Iterator[tuple[Chunk, dict[str, Any]]]:
        """Every message from `start_index` (which must be a keyframe) to the end, in order."""
        return self._decode(start_index, len(self.chunks))

    def states(self) -> Iterator[tuple[float, dict[str, Any]]]:
        """The schema-1 snapshot after each message, in order."""
        state: dict[str, Any] | None = None
        for chunk, message in self.messages():
            if "snapshot" in message:
                state = _state_of(message["snapshot"])
            elif state is not None:
                fold(state, message["delta"])
            if state is not None:
                yield chunk.at, _snapshot_of(state)

    def _decode(self, start: int, stop: int) -> Iterator[tuple[Chunk, dict[str, Any]]]:
        decompressor: Any = None
        with open(self.path, "rb") as stream:
            for chunk in self.chunks[start:stop]:
                if chunk.flags == KEYFRAME or decompressor is None:
                    decompressor = zlib.decompressobj()
                stream.seek(chunk.offset)
                try:
                    text = decompressor.decompress(stream.read(chunk.length))
                    message = json.loads(text)
                except (zlib.error, ValueError) as error:
                    raise RecordingError(
                        f"{self.path}: damaged at byte {chunk.offset} ({error})"
                    ) from None
                if not isinstance(message, dict):
                    raise RecordingError(f"{self.path}: damaged at byte {chunk.offset}")
                yield chunk, message


def _last_at_or_before(times: list[float], at: float) -> int:
    low, high = 0, len(times)
    while low < high:
        middle = (low + high) // 2
        if times[middle] <= at:
            low = middle + 1
        else:
            high = middle
    return low - 1


def open_recording(path: str | os.PathLike[str]) -> Recording:
    """Read a recording's facts and chunk index (not its contents). Raises RecordingError
    with one line for a file that is missing, not a recording, or of a newer format."""
    name = os.fspath(path)
    try:
        stream = open(name, "rb")  # noqa: SIM115 - closed below
    except OSError as error:
        raise RecordingError(f"cannot read {name}: {error.strerror or error}") from None
    with stream:
        first = stream.readline(64)
        if not first.startswith(MAGIC_PREFIX):
            raise RecordingError(f"{name} is not a taskscope recording")
        try:
            version = int(first[len(MAGIC_PREFIX) :].strip())
        except ValueError:
            raise RecordingError(f"{name} is not a taskscope recording") from None
        if version > FORMAT_VERSION:
            raise RecordingError(
                f"{name} is a recording of format {version}; this taskscope reads format "
                f"{FORMAT_VERSION}: upgrade taskscope to read it"
            )
        size = os.fstat(stream.fileno()).st_size
        offset = stream.tell()
        facts: dict[str, Any] | None = None
        chunks: list[Chunk] = []
        cut_short = False
        while offset < size:
            header = stream.read(CHUNK_HEADER.size)
            if len(header) < CHUNK_HEADER.size:
                cut_short = True
                break
            flags, at, length = CHUNK_HEADER.unpack(header)
            data_offset = offset + CHUNK_HEADER.size
            if data_offset + length > size or flags not in (HEADER, KEYFRAME, DELTA):
                cut_short = True
                break
            if flags == HEADER:
                try:
                    facts = json.loads(zlib.decompressobj().decompress(stream.read(length)))
                except (zlib.error, ValueError):
                    raise RecordingError(f"{name}: its header is damaged") from None
            else:
                chunks.append(Chunk(flags, at, data_offset, length))
                stream.seek(length, os.SEEK_CUR)
            offset = data_offset + length
    if facts is None:
        raise RecordingError(f"{name}: the recording was cut before its header")
    # A cut keyframe drops its whole segment's start: drop deltas left without one.
    while chunks and chunks[0].flags != KEYFRAME:
        chunks.pop(0)
    return Recording(name, facts, chunks, cut_short)


def parse_at(text: str, recording: Recording) -> float:
    """The moment `--at` names, as a time since the epoch: seconds from the start (`90`,
    `1:30`), from the end when negative (`-10`), or a wall-clock time of the recording's day
    (`14:02:11`). Raises ValueError with one line."""
    spoken = text.strip()
    if spoken.count(":") == 2:
        start = time.localtime(recording.start)
        try:
            clock = time.strptime(spoken, "%H:%M:%S")
        except ValueError:
            raise ValueError(f"not a time: {text!r} (use seconds, M:SS or HH:MM:SS)") from None
        at = time.mktime(
            (start.tm_year, start.tm_mon, start.tm_mday, clock.tm_hour, clock.tm_min,
             clock.tm_sec, 0, 0, start.tm_isdst)
        )  # fmt: skip
        if at < recording.start - 1:  # a recording past midnight: the next day's clock
            at += 86400
        return float(at)
    negative = spoken.startswith("-")
    body = spoken[1:] if negative else spoken
    try:
        if ":" in body:
            minutes, seconds = body.split(":")
            offset = int(minutes) * 60 + float(seconds)
        else:
            offset = float(body)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use seconds, M:SS or HH:MM:SS)") from None
    if offset != offset or offset in (float("inf"), float("-inf")):
        raise ValueError(f"not a time: {text!r}")
    return recording.end - offset if negative else recording.start + offset
