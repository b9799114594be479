"""RecordingSource's controls: where it stands in time, what a seek, a step and playing make
its subscription say, and what it refuses to do."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from taskscope.sources.base import DeltaUpdate, SnapshotUpdate, Unsupported
from taskscope.sources.recording import RecordingSource
from tests.test_recording import _by_id, _write


@pytest.fixture
def source(tmp_path: Path) -> Any:
    path = tmp_path / "session.tsrec"
    expected = _write(path, steps=12)  # a message every 0.5 s from t=1000 to t=1006
    made = RecordingSource(path, at=1000.0)
    made.expected = expected
    yield made
    made.close()


def _subscribed(source: RecordingSource) -> queue.Queue[Any]:
    out: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        for update in source.subscribe(0.5):
            out.put(update)
        out.put("end")

    threading.Thread(target=run, daemon=True).start()
    return out


def test_the_snapshot_is_the_state_at_the_position(source: Any) -> None:
    assert source.position == 1000.0 and source.now() == 1000.0
    assert _by_id(source.snapshot()) == source.expected[0]
    assert source.seek(1002.75) == 1002.75
    assert _by_id(source.snapshot()) == source.expected[5]
    # Outside the recording: its nearest end.
    assert source.seek(5000) == 1006.0
    assert _by_id(source.snapshot()) == source.expected[-1]
    assert source.seek(0) == 1000.0


def test_steps_go_from_update_to_update(source: Any) -> None:
    assert source.step(1) == 1000.5
    assert source.step(3) == 1002.0
    source.seek(1002.25)  # between two updates: back is the one before, on is the next
    assert source.step(-1) == 1002.0
    source.seek(1002.25)
    assert source.step(1) == 1002.5
    assert source.step(-100) == 1000.0
    assert source.step(100) == 1006.0
    assert source.seek_by(-1.5) == 1004.5


def test_a_seek_sends_a_snapshot_and_playing_sends_deltas_at_the_pace(source: Any) -> None:
    out = _subscribed(source)
    first = out.get(timeout=10)
    assert isinstance(first, SnapshotUpdate) and first.snapshot["taken_at"] == 1000.0
    # Paused: nothing more comes.
    with pytest.raises(queue.Empty):
        out.get(timeout=0.3)
    source.seek(1003.0)
    seeked = out.get(timeout=10)
    assert isinstance(seeked, SnapshotUpdate)
    assert _by_id(seeked.snapshot) == source.expected[6]
    # Played at 4x: the next updates (0.5 s apart) come as deltas about 0.125 s apart.
    source.faster(), source.faster(), source.faster()  # 1x -> 2x -> 4x -> 8x
    source.slower()
    assert source.speed == 4.0
    started = time.monotonic()
    source.play()
    deltas = [out.get(timeout=10) for _ in range(4)]
    took = time.monotonic() - started
    assert all(isinstance(update, DeltaUpdate) for update in deltas)
    assert [update.delta["taken_at"] for update in deltas] == [1003.5, 1004.0, 1004.5, 1005.0]
    assert 0.3 < took < 3.0
    # The deltas fold to the recorded state.
    source.pause()
    assert source.position == 1005.0 or source.position > 1005.0
    # Played to the end, it pauses there.
    source.play()
    while source.playing:
        out.get(timeout=10)
    assert source.position == 1006.0


def test_close_ends_the_subscription(source: Any) -> None:
    out = _subscribed(source)
    assert isinstance(out.get(timeout=10), SnapshotUpdate)
    source.close()
    assert out.get(timeout=10) == "end"


def test_what_a_recording_cannot_do(source: Any) -> None:
    with pytest.raises(Unsupported, match="a recording of process 42 cannot cancel tasks"):
        source.cancel("1")
    with pytest.raises(Unsupported, match="no agent to detach"):
        source.detach()
    reply = source.stack("1")
    assert reply["found"] and reply["stack"][0]["function"] == "work"
    assert source.stack("nope")["found"] is False
