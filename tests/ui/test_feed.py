"""The update buffer between the feed thread and the UI: deltas are folded, never dropped."""

from __future__ import annotations

import threading
from typing import Any

from textual.pilot import Pilot

from taskscope.model import TaskInfo, TaskModel
from taskscope.sources import SnapshotUpdate
from taskscope.ui.app import TaskscopeApp
from taskscope.ui.feed import UpdateBuffer
from tests.ui.fakes import FakeSource, delta, service_tasks, snapshot, wire_task
from tests.ui.harness import run_app, until


def test_folded_deltas_give_the_same_model_as_applying_each() -> None:
    # GIVEN a snapshot and three deltas: a change, an add, then a removal of the added task
    first = snapshot(service_tasks())
    deltas = [
        delta([wire_task("4", "reporter", "report_loop", parent="1", age=70)]),
        delta([wire_task("40", "job-40", "process", parent="3")], removed=["34"]),
        delta([wire_task("41", "job-41", "process", parent="3")], removed=["40"]),
    ]
    one_by_one = TaskModel.from_snapshot(first)
    for each in deltas:
        one_by_one.apply_delta(each)
    # WHEN they pass through the buffer before the UI looks
    buffer = UpdateBuffer()
    buffer.put_snapshot(first)
    for each in deltas:
        buffer.put_delta(each)
    update = buffer.take()
    # THEN one folded update, applied, gives the same tasks
    assert update is not None
    assert update.received == 4
    folded = TaskModel()
    assert update.snapshot is not None
    update.apply_to(folded)
    assert folded.tasks == one_by_one.tasks
    assert folded.last_removed == {"34"}
    assert buffer.take() is None


def test_a_new_snapshot_replaces_everything_pending() -> None:
    buffer = UpdateBuffer()
    buffer.put_delta(delta([wire_task("4", "reporter", "report_loop")]))
    second = snapshot(service_tasks()[:3])
    buffer.put_snapshot(second)
    update = buffer.take()
    assert update is not None
    assert update.snapshot is second
    assert update.loops is None
    assert not update.changed


def test_a_task_changed_then_removed_is_only_removed() -> None:
    buffer = UpdateBuffer()
    buffer.put_delta(delta([wire_task("4", "reporter", "report_loop")]))
    buffer.put_delta(delta([], removed=["4"]))
    update = buffer.take()
    assert update is not None
    assert update.changed == {}
    assert update.removed == {"4"}


def test_delta_records_are_made_on_the_feeds_thread() -> None:
    # GIVEN a delta put into the buffer (on the feed's thread, in the app)
    buffer = UpdateBuffer()
    buffer.put_delta(delta([wire_task("4", "reporter", "report_loop", parent="1")]))
    update = buffer.take()
    # THEN its records are already model objects: the screen's thread only files them
    assert update is not None
    assert isinstance(update.changed["4"], TaskInfo)
    model = TaskModel.from_snapshot(snapshot(service_tasks()))
    calls: list[object] = []
    original = TaskInfo.from_wire
    try:
        TaskInfo.from_wire = lambda *args: calls.append(args) or original(*args)  # type: ignore[assignment, method-assign, func-returns-value]
        update.apply_to(model)
    finally:
        TaskInfo.from_wire = original  # type: ignore[method-assign]
    assert calls == []
    assert model.tasks["4"] is update.changed["4"]


def test_the_dashboard_makes_no_task_record_on_its_screen_thread(monkeypatch: Any) -> None:
    # GIVEN a dashboard that receives a snapshot, a delta, then a second snapshot
    made_on: list[str] = []
    original = TaskInfo.from_wire

    def recording(raw: Any, observed_at: float = 0.0) -> TaskInfo:
        made_on.append(threading.current_thread().name)
        return original(raw, observed_at)

    monkeypatch.setattr(TaskInfo, "from_wire", staticmethod(recording))

    async def scenario(app: TaskscopeApp, pilot: Pilot[Any], source: FakeSource) -> None:
        source.push(delta([wire_task("40", "job-40", "process", parent="3")]))
        await until(pilot, lambda: "40" in app.model.tasks, what="the delta")
        source.updates.put(SnapshotUpdate(snapshot(service_tasks()[:4])))
        await until(pilot, lambda: len(app.model.tasks) == 4, what="the second snapshot")

    run_app(scenario)
    # THEN every record was made on the feed's thread, none on the screen's (main) thread
    assert len(made_on) >= len(service_tasks()) + 1 + 4
    assert set(made_on) and threading.main_thread().name not in made_on


def test_library_paths_are_shortened_in_the_detail_pane() -> None:
    from taskscope.ui.detail_pane import short_path

    assert short_path("/usr/lib/python3.12/asyncio/tasks.py") == "asyncio/tasks.py"
    assert short_path("/venv/lib/python3.12/site-packages/aiohttp/web.py") == "aiohttp/web.py"
    assert short_path("/home/me/app/service.py") == "/home/me/app/service.py"
