"""The recording file format: what is written reads back as the state at any time, across
segments, and a file cut anywhere reads up to its last whole message."""

from __future__ import annotations

import copy
import io
import os
import time
from pathlib import Path
from typing import Any

import pytest

from taskscope.recording import (
    KEYFRAME,
    MAGIC,
    RecordingError,
    RecordingWriter,
    open_recording,
    parse_at,
)


def _task(task_id: int, state: str = "pending", line: int = 10) -> dict[str, Any]:
    return {
        "id": str(task_id),
        "loop": "1",
        "name": f"worker-{task_id}",
        "state": state,
        "coro": "work",
        "stack": [{"function": "work", "file": "/app/w.py", "line": line}],
        "awaiting": {"kind": "sleep", "text": "sleep", "tasks": []},
        "awaited_by": [],
        "parent": None,
        "created_at": 1000.0,
        "finished_at": None,
    }


def _session(steps: int = 40) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A snapshot at t=1000 and a delta every 0.5 s: tasks move, finish, appear, go."""
    snapshot = {
        "schema": 1,
        "pid": 42,
        "python": "3.12.1",
        "taken_at": 1000.0,
        "loops": [{"id": "1", "tasks": 5}],
        "tasks": [_task(n) for n in range(1, 6)],
        "cycles": [],
        "history_limit": 1000,
    }
    deltas = []
    for step in range(1, steps + 1):
        changed = [_task(1, line=10 + step)]
        if step % 3 == 0:
            changed.append(_task(100 + step))
        if step % 5 == 0:
            changed.append(_task(100 + step - 3, state="done"))
        removed = [str(100 + step - 9)] if step % 9 == 0 else []
        deltas.append(
            {
                "taken_at": 1000.0 + step * 0.5,
                "loops": [{"id": "1", "tasks": 5 + step}],
                "changed": changed,
                "removed": removed,
                "cycles": [["2", "3"]] if step % 7 == 0 else [],
                "build_seconds": 0.001,
            }
        )
    return snapshot, deltas


def _expected_states(
    snapshot: dict[str, Any], deltas: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The state after each message, folded naively (a dict per message, by task id)."""
    tasks = {t["id"]: t for t in snapshot["tasks"]}
    top = {k: v for k, v in snapshot.items() if k != "tasks"}
    states = [dict(top, tasks=dict(tasks))]
    for delta in deltas:
        for record in delta["changed"]:
            tasks[record["id"]] = record
        for task_id in delta["removed"]:
            tasks.pop(task_id, None)
        top.update(taken_at=delta["taken_at"], loops=delta["loops"], cycles=delta["cycles"])
        states.append(dict(top, tasks=dict(tasks)))
    return states


def _by_id(snapshot: dict[str, Any]) -> dict[str, Any]:
    return dict(snapshot, tasks={t["id"]: t for t in snapshot["tasks"]})


def _write(path: Path, keyframe_every: float = 3.0, steps: int = 40) -> list[dict[str, Any]]:
    snapshot, deltas = _session(steps)
    writer = RecordingWriter.create(
        path, {"pid": 42, "python": "3.12.1"}, keyframe_every=keyframe_every
    )
    writer.add_snapshot(copy.deepcopy(snapshot))
    for delta in deltas:
        writer.add_delta(copy.deepcopy(delta))
    writer.close()
    return _expected_states(snapshot, deltas)


def test_state_at_every_message_matches_a_naive_fold_across_segments(tmp_path: Path) -> None:
    # GIVEN a 20 s session written with a keyframe every 3 s
    path = tmp_path / "session.tsrec"
    expected = _write(path)
    recording = open_recording(path)
    # THEN it has several segments, one message per chunk, and the facts it was given
    assert sum(chunk.flags == KEYFRAME for chunk in recording.chunks) >= 6
    assert len(recording.chunks) == len(expected)
    assert recording.facts["pid"] == 42
    assert not recording.cut_short
    # AND the state at each message's time, and just after it, is the naive fold's
    for at, state in zip(recording.times, expected, strict=True):
        assert _by_id(recording.snapshot_at(at)) == state
        assert _by_id(recording.snapshot_at(at + 0.25)) == state
    # AND before the start is the first state, no time is the last
    assert _by_id(recording.snapshot_at(0)) == expected[0]
    assert _by_id(recording.snapshot_at()) == expected[-1]
    # AND walking the whole recording gives the same states in order
    walked = [(at, _by_id(state)) for at, state in recording.states()]
    assert [state for _, state in walked] == expected


def test_a_recording_cut_anywhere_reads_up_to_its_last_whole_message(tmp_path: Path) -> None:
    path = tmp_path / "whole.tsrec"
    expected = _write(path, steps=12)
    data = path.read_bytes()
    whole = open_recording(path)
    ends = [chunk.offset + chunk.length for chunk in whole.chunks]
    cut_path = tmp_path / "cut.tsrec"
    # Every cut from the end of the first keyframe to the end of the file.
    for size in range(ends[0], len(data) + 1):
        cut_path.write_bytes(data[:size])
        cut = open_recording(cut_path)
        whole_messages = sum(end <= size for end in ends)
        assert len(cut.chunks) == whole_messages
        assert cut.cut_short == (size not in ends)
        assert _by_id(cut.snapshot_at()) == expected[whole_messages - 1]


def test_files_that_are_not_recordings_say_so_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.tsrec"
    with pytest.raises(RecordingError, match="cannot read"):
        open_recording(missing)
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    with pytest.raises(RecordingError, match="is not a taskscope recording"):
        open_recording(other)
    newer = tmp_path / "newer.tsrec"
    newer.write_bytes(b"TASKSCOPE-RECORDING 9\n")
    with pytest.raises(RecordingError, match=r"format 9.*upgrade taskscope") as caught:
        open_recording(newer)
    assert "\n" not in str(caught.value)
    header_only = tmp_path / "empty.tsrec"
    header_only.write_bytes(MAGIC)
    with pytest.raises(RecordingError, match="cut before its header"):
        open_recording(header_only)


def test_a_recording_with_a_header_and_no_message_says_it_holds_no_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "nothing.tsrec"
    RecordingWriter.create(path, {"pid": 1}).close()
    recording = open_recording(path)
    with pytest.raises(RecordingError, match="holds no snapshot"):
        recording.snapshot_at()


def test_damaged_data_is_an_error_naming_where(tmp_path: Path) -> None:
    path = tmp_path / "damaged.tsrec"
    _write(path, steps=4)
    recording = open_recording(path)
    last = recording.chunks[-1]
    data = bytearray(path.read_bytes())
    for index in range(last.offset, last.offset + last.length):
        data[index] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingError, match=f"damaged at byte {last.offset}"):
        open_recording(path).snapshot_at()


def test_a_delta_before_a_snapshot_is_refused() -> None:
    writer = RecordingWriter(io.BytesIO(), {"pid": 1})
    with pytest.raises(ValueError, match="before any snapshot"):
        writer.add_delta({"taken_at": 1.0, "changed": [], "removed": [], "loops": [], "cycles": []})


def test_the_file_is_flushed_after_each_message(tmp_path: Path) -> None:
    # A reader on another process sees each message as soon as it is added.
    path = tmp_path / "live.tsrec"
    snapshot, deltas = _session(3)
    writer = RecordingWriter.create(path, {"pid": 42})
    writer.add_snapshot(snapshot)
    assert len(open_recording(path).chunks) == 1
    writer.add_delta(deltas[0])
    assert len(open_recording(path).chunks) == 2
    writer.close()
    assert os.path.getsize(path) > len(MAGIC)


def test_at_names_a_moment_from_the_start_the_end_or_the_clock(tmp_path: Path) -> None:
    path = tmp_path / "session.tsrec"
    _write(path)
    recording = open_recording(path)
    assert parse_at("0", recording) == recording.start
    assert parse_at("1.5", recording) == recording.start + 1.5
    assert parse_at("0:02", recording) == recording.start + 2
    assert parse_at("-3", recording) == recording.end - 3
    clock = time.strftime("%H:%M:%S", time.localtime(recording.start + 5))
    assert abs(parse_at(clock, recording) - (recording.start + 5)) < 1
    for wrong in ("soon", "1:xx", "nan", "25:00:00"):
        with pytest.raises(ValueError, match="not a time"):
            parse_at(wrong, recording)
