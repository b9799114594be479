"""The agent's flight recorder, as a unit: what it keeps folds back into the newest state,
never reaches further back than its window, and never changes what it was fed."""

from __future__ import annotations

import copy
from typing import Any

from taskscope.agent.flight import FlightRecorder
from taskscope.recording import fold


def _snapshot(at: float, tasks: dict[str, int]) -> dict[str, Any]:
    return {
        "schema": 1,
        "taken_at": at,
        "loop_time": at - 900.0,
        "loops": [{"id": "1", "tasks": len(tasks)}],
        "tasks": [{"id": task_id, "line": line} for task_id, line in tasks.items()],
        "cycles": [],
    }


def _replay(base: dict[str, Any], deltas: list[dict[str, Any]]) -> dict[str, Any]:
    state = dict(base, tasks={record["id"]: record for record in base["tasks"]})
    for delta in deltas:
        fold(state, delta)
    return state


def test_it_keeps_the_window_and_folds_back_into_the_newest_state() -> None:
    # GIVEN a recorder of 10 s fed a snapshot a second for 30 s, tasks coming and going
    recorder = FlightRecorder(window=10.0)
    fed = []
    tasks: dict[str, int] = {}
    for second in range(30):
        tasks[str(second)] = second
        tasks["0"] = second  # one task moves every second
        tasks.pop(str(second - 5), None)  # each task leaves five seconds after it came
        snapshot = _snapshot(1000.0 + second, dict(tasks))
        fed.append(copy.deepcopy(snapshot))
        recorder.feed(snapshot)
        recorder.feed(snapshot)  # the server's cache handed out the same look again
    exported = recorder.export()
    assert exported is not None
    base, deltas = exported
    # THEN the base is ten seconds before the newest look, and every delta after it is kept
    assert base["taken_at"] == 1019.0
    assert [delta["taken_at"] for delta in deltas] == [1000.0 + s for s in range(20, 30)]
    assert recorder.span() == 10.0
    # AND the base is what was fed at that time, and base + deltas is the newest look
    by_id = {record["id"]: record for record in fed[19]["tasks"]}
    assert {record["id"]: record for record in base["tasks"]} == by_id
    newest = _replay(base, deltas)
    assert newest["tasks"] == {record["id"]: record for record in fed[-1]["tasks"]}
    assert newest["taken_at"] == 1029.0
    assert newest["loop_time"] == fed[-1]["loop_time"]
    # AND the snapshots it was fed were not changed
    assert [record["line"] for record in fed[0]["tasks"]] == [0]


def test_nothing_before_the_first_look() -> None:
    recorder = FlightRecorder(window=5.0)
    assert recorder.export() is None
    assert recorder.span() == 0.0
    recorder.feed(_snapshot(1.0, {"1": 1}))
    exported = recorder.export()
    assert exported is not None
    assert exported[1] == []
    assert [record["id"] for record in exported[0]["tasks"]] == ["1"]


def test_the_window_is_bounded() -> None:
    assert FlightRecorder(window=10**9).window == 3600.0
    assert FlightRecorder(window=0).window == 1.0
