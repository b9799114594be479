"""One contract for every `Source`: what the CLI and the dashboard may count on, checked
against each implementation the same way (the live agent in a real target process, the
read-only look at one on 3.14+, a recording of one, and the fake the dashboard's tests
drive).

A new source joins by adding a `Looked` maker to `SOURCES`."""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, get_args

import pytest

from taskscope.protocol import TASK_ROW_KEYS, CancelOutcome
from taskscope.recording import RecordingWriter
from taskscope.sources import (
    CancelResult,
    Capability,
    ClientError,
    DeltaUpdate,
    SnapshotUpdate,
    Source,
    Unsupported,
    Update,
)
from taskscope.sources.choose import open_source
from taskscope.sources.live import LiveSource
from taskscope.sources.readonly import ReadOnlySource
from taskscope.sources.recording import RecordingSource, RecordingTap, recording_facts
from tests.helpers import Target, wait_for
from tests.ui.fakes import FakeSource, delta, service_tasks, wire_task

#: The keys every task record of schema 1 has (docs/protocol.md).
TASK_KEYS = set(TASK_ROW_KEYS)
#: An id no source has a task for.
MISSING = "987654321"


@dataclass
class Looked:
    """A source on something to look at, with what the test needs to know about it."""

    source: Source
    pid: int
    #: The id of a pending task the source shows.
    pending_task: str
    #: Makes the source have something new to say (a fake only says what it is told).
    stir: Callable[[], None] = lambda: None
    #: Whether the agent's socket is gone (for sources that can detach).
    agent_gone: Callable[[], bool] = lambda: False
    cleanup: list[Callable[[], None]] = field(default_factory=list)


def _pending(source: Source, name: str) -> str:
    snapshot = wait_for(
        lambda: next((task for task in source.snapshot()["tasks"] if task["name"] == name), None),
        what=f"task {name} in a snapshot",
    )
    assert snapshot["state"] == "pending"
    return str(snapshot["id"])


def live(start: Callable[..., Target]) -> Looked:
    target = start("service.py").wait_ready()
    source = LiveSource(target.pid, timeout=10)
    looked = Looked(source, target.pid, _pending(source, "victim"))
    path = source.path
    looked.agent_gone = lambda: not os.path.exists(path)
    return looked


def read_only(start: Callable[..., Target]) -> Looked:
    if sys.version_info < (3, 14):
        pytest.skip(
            "a read-only look reads a 3.14+ process with an interpreter of its own version; "
            f"this is {sys.version_info.major}.{sys.version_info.minor} (run under 3.14)"
        )
    target = start("service.py", agent=False).wait_ready()
    source = ReadOnlySource(target.pid, timeout=30)
    return Looked(source, target.pid, _pending(source, "victim"))


def fake(start: Callable[..., Target]) -> Looked:
    source = FakeSource()
    # A fresh task each time, so every stir is a change a delta must carry.
    numbers = iter(range(100, 10_000))

    def stir() -> None:
        number = str(next(numbers))
        source.push(delta([wire_task(number, f"job-{number}", "process", parent="3")]))

    return Looked(source, source.pid, "9", stir=stir)


def recording(start: Callable[..., Target]) -> Looked:
    # A recording of the live agent's subscription, written through RecordingTap as
    # `attach --record` does, read back from its start; playing it makes its deltas.
    target = start("service.py").wait_ready()
    path = target.workdir / "contract.tsrec"
    watched = LiveSource(target.pid, timeout=10)
    tap = RecordingTap(watched, RecordingWriter.create(path, recording_facts(watched, 0.1)))
    for count, _update in enumerate(tap.subscribe(0.1)):
        if count == 8:
            break
    tap.close()
    source = RecordingSource(path)
    source.seek(source.start)
    return Looked(source, target.pid, _pending(source, "victim"), stir=source.play)


SOURCES: dict[str, Callable[[Callable[..., Target]], Looked]] = {
    "live": live,
    "read_only": read_only,
    "fake": fake,
    "recording": recording,
}


@pytest.fixture(params=list(SOURCES))
def looked(request: pytest.FixtureRequest, start: Callable[..., Target]) -> Iterator[Looked]:
    made = SOURCES[request.param](start)
    yield made
    made.source.close()


def _updates(looked: Looked, interval: float) -> tuple[queue.Queue[Any], threading.Thread]:
    """Iterate a subscription on its own thread (as the dashboard does) into a queue; the
    queue ends with "end" or the error that ended it."""
    out: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        try:
            for update in looked.source.subscribe(interval):
                out.put(update)
        except ClientError as error:
            out.put(error)
        out.put("end")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return out, thread


def _next(out: queue.Queue[Any], looked: Looked, within: float = 30.0) -> Update:
    deadline = time.monotonic() + within
    while True:
        looked.stir()
        try:
            item = out.get(timeout=0.2)
        except queue.Empty:
            if time.monotonic() > deadline:
                raise AssertionError(f"no update within {within} s") from None
            continue
        assert isinstance(item, SnapshotUpdate | DeltaUpdate), item
        return item


# --- the contract ------------------------------------------------------------------------------


def test_it_follows_the_protocol(looked: Looked) -> None:
    # GIVEN a source THEN it has every member of the protocol, its pid and a label naming it
    assert isinstance(looked.source, Source)
    assert looked.source.pid == looked.pid
    assert f"process {looked.pid}" in looked.source.label
    assert isinstance(looked.source.capabilities, Capability)


def test_a_snapshot_is_schema_1(looked: Looked) -> None:
    # WHEN a snapshot is taken
    snapshot = looked.source.snapshot()
    # THEN it is a schema-1 snapshot of that process, every task a full record
    assert snapshot["schema"] == 1
    assert snapshot["pid"] == looked.pid
    assert snapshot["loops"] and isinstance(snapshot["cycles"], list)
    assert snapshot["tasks"]
    for task in snapshot["tasks"]:
        assert TASK_KEYS <= set(task), TASK_KEYS - set(task)
    ids = [task["id"] for task in snapshot["tasks"]]
    assert len(ids) == len(set(ids)) and looked.pending_task in ids


def test_without_finished_tasks_a_snapshot_has_pending_ones_only(looked: Looked) -> None:
    pending = looked.source.snapshot(include_finished=False)["tasks"]
    assert pending and {task["state"] for task in pending} == {"pending"}


def test_subscribe_gives_a_snapshot_then_deltas(looked: Looked) -> None:
    # WHEN the source is subscribed to
    out, _thread = _updates(looked, interval=0.1)
    # THEN the first update is a whole snapshot, the next ones deltas of schema-1 records
    first = _next(out, looked)
    assert isinstance(first, SnapshotUpdate)
    assert first.snapshot["schema"] == 1
    for _ in range(2):
        update = _next(out, looked)
        assert isinstance(update, DeltaUpdate)
        assert isinstance(update.delta["removed"], list)
        assert update.delta["loops"]
        for task in update.delta["changed"]:
            assert TASK_KEYS <= set(task)


def test_close_unblocks_a_subscription(looked: Looked) -> None:
    # GIVEN a subscription waiting a long time for its next update
    out, thread = _updates(looked, interval=60)  # the longest the agent takes
    assert isinstance(_next(out, looked), SnapshotUpdate)
    # WHEN the source is closed from another thread
    looked.source.close()
    # THEN the subscription ends (or fails with a ClientError) at once
    thread.join(timeout=10)
    assert not thread.is_alive()
    rest = list(out.queue)
    assert rest[-1] == "end"
    assert all(isinstance(item, Update | ClientError) for item in rest[:-1]), rest


def test_the_stack_of_a_task(looked: Looked) -> None:
    reply = looked.source.stack(looked.pending_task)
    assert reply["found"] is True
    assert reply["stack"], "a pending task has frames"
    for frame in reply["stack"]:
        assert {"function", "file", "line"} <= set(frame)
    if Capability.STACK_SOURCE in looked.source.capabilities:
        assert reply["created_from"], "a source with stacks in full says where it was made"
        assert any(frame.get("source") for frame in reply["stack"])


def test_the_stack_of_a_missing_task_is_not_found(looked: Looked) -> None:
    assert looked.source.stack(MISSING)["found"] is False


def test_cancel_of_a_missing_task_says_no_such_task(looked: Looked) -> None:
    if Capability.CANCEL not in looked.source.capabilities:
        pytest.skip("this source cannot cancel (test_what_it_cannot_do_it_says_in_one_line)")
    assert looked.source.cancel(MISSING, "from the contract") == CancelResult("no_such_task")


def test_cancel_of_a_pending_task_is_requested(looked: Looked) -> None:
    if Capability.CANCEL not in looked.source.capabilities:
        pytest.skip("this source cannot cancel (test_what_it_cannot_do_it_says_in_one_line)")
    result = looked.source.cancel(looked.pending_task, "from the contract")
    assert result.outcome in ("requested", "queued")
    assert result.outcome in get_args(CancelOutcome)


@pytest.mark.parametrize(
    ("capability", "call"),
    [
        (Capability.CANCEL, lambda source: source.cancel("1", None)),
        (Capability.DETACH, lambda source: source.detach()),
    ],
    ids=["cancel", "detach"],
)
def test_what_it_cannot_do_it_says_in_one_line(
    looked: Looked, capability: Capability, call: Callable[[Source], object]
) -> None:
    # GIVEN a source without the capability WHEN asked to use it
    if capability in looked.source.capabilities:
        pytest.skip(f"this source can {capability.name}")
    with pytest.raises(Unsupported) as raised:
        call(looked.source)
    # THEN it refuses with one line naming the process, not a traceback or a wire error
    line = str(raised.value)
    assert "\n" not in line and str(looked.pid) in line


def test_detach_unloads_the_agent(looked: Looked) -> None:
    if Capability.DETACH not in looked.source.capabilities:
        pytest.skip("this source has no agent to unload (test_what_it_cannot_do_...)")
    looked.source.detach()
    assert looked.agent_gone()


def test_process_facts_and_identity(looked: Looked) -> None:
    info = looked.source.process_info()
    assert info["pid"] == looked.pid and info.get("alive") is True
    identity = looked.source.identity()
    assert identity["pid"] == looked.pid
    argv = identity.get("argv")
    assert argv is None or (argv and all(isinstance(part, str) for part in argv))


def test_the_fake_of_the_dashboard_tests_answers_for_the_tasks_it_shows() -> None:
    # The fake's cancel answers follow its tasks, as the agent's do (a sanity check of the
    # fake itself, which the dashboard's tests rely on).
    source = FakeSource()
    known = {task["id"] for task in service_tasks()}
    assert source.cancel(sorted(known)[0]).outcome == "requested"
    assert source.cancel(MISSING).outcome == "no_such_task"


def test_a_command_that_needs_the_agent_gets_no_read_only_look() -> None:
    # GIVEN a command that cancels WHEN it asks for a read-only look THEN it is told in one
    # line what a read-only look cannot do, before anything is read
    with pytest.raises(Unsupported) as raised:
        open_source(os.getpid(), read_only=True, needs=Capability.CANCEL | Capability.DETACH)
    assert str(raised.value) == (
        f"a read-only look at process {os.getpid()} cannot cancel a task or detach an agent: "
        "leave out --read-only"
    )
