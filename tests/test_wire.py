"""The compact wire encoding: negotiated in hello, expanded by the client to exactly the
schema-1 records, and never seen by clients that do not ask for it."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from typing import Any

import pytest

from taskscope import protocol
from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.tracker import Tracker
from taskscope.client import ENCODING_ENV, AgentClient, ClientError
from taskscope.protocol import (
    CompactDecoder,
    CompactEncoder,
    ProtocolError,
    Request,
    compact,
    encode,
    parse_request,
    request_to_wire,
    socket_path,
)
from taskscope.words import fill_texts, schema_text
from tests.helpers import run_cli

# --- In-process: encoder and decoder ---------------------------------------------------------


def _roundtrip(
    encoder: CompactEncoder, decoder: CompactDecoder, message: dict[str, Any]
) -> tuple[bytes, dict[str, Any]]:
    wire = encoder.encode(message)
    return wire, decoder.message(json.loads(wire))


def _same(decoded: dict[str, Any], message: dict[str, Any]) -> None:
    """Equal to what the plain encoding gives, key order included."""
    plain = json.loads(encode(message))
    assert decoded == plain
    assert json.dumps(decoded) == json.dumps(plain)


async def _population() -> tuple[Tracker, list[asyncio.Task[Any]], asyncio.Event]:
    tracker = Tracker()
    tracker.install()
    gate = asyncio.Event()
    queue: asyncio.Queue[int] = asyncio.Queue()

    async def sleeper(seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def waiter() -> None:
        await gate.wait()

    async def consumer() -> None:
        await queue.get()

    async def nested(depth: int) -> None:
        if depth:
            await nested(depth - 1)
        else:
            await gate.wait()

    async def fails() -> None:
        raise ValueError("bad row")

    async def returns() -> int:
        return 42

    async def owner() -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(3):
                group.create_task(waiter())

    tasks = [asyncio.create_task(sleeper(100 + i)) for i in range(5)]
    tasks += [asyncio.create_task(waiter(), name=f"waiter-{i}") for i in range(5)]
    tasks += [asyncio.create_task(consumer()) for _ in range(3)]
    tasks += [asyncio.create_task(nested(i)) for i in range(4)]
    tasks.append(asyncio.create_task(owner()))

    async def gatherer() -> None:
        await asyncio.gather(waiter(), waiter())

    tasks.append(asyncio.create_task(gatherer()))
    finished = [asyncio.create_task(fails()), asyncio.create_task(returns())]
    cancelled = asyncio.create_task(sleeper(100))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    await asyncio.gather(*finished, cancelled, return_exceptions=True)
    return tracker, tasks, gate


async def _teardown(tracker: Tracker, tasks: list[asyncio.Task[Any]]) -> None:
    from taskscope.agent.cancel import _cancel_on_loop

    for task in tasks:
        _cancel_on_loop(task, None)  # safe for tasks in an await cycle, unlike task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tracker.uninstall()


def test_compact_snapshot_expands_to_the_plain_records() -> None:
    async def main() -> None:
        tracker, tasks, _gate = await _population()
        # Built from inside a task: that task is the running one (its record says so).
        snapshot = SnapshotBuilder(tracker).build()
        message = {"type": "snapshot", "snapshot": snapshot, "re": 7}
        wire, decoded = _roundtrip(CompactEncoder(), CompactDecoder(), message)
        _same(decoded, message)
        records = snapshot["tasks"]
        states = {record["state"] for record in records}
        assert {"pending", "done", "failed", "cancelled"} <= states
        assert any(record.get("running") for record in records)
        assert any("exception" in record for record in records)
        assert any("result" in record for record in records)
        assert any("created_from" in record for record in records)
        assert len(wire) * 3 < len(encode(message))
        await _teardown(tracker, tasks)

    asyncio.run(main())


def test_records_have_the_declared_keys_in_the_declared_order() -> None:
    async def main() -> None:
        # GIVEN pending, running, finished, failed and cancelled tasks
        tracker, tasks, _gate = await _population()
        snapshot = SnapshotBuilder(tracker).build()
        message = {"type": "snapshot", "snapshot": snapshot}
        _wire, decoded = _roundtrip(CompactEncoder(), CompactDecoder(), message)
        # THEN every record, as the agent makes it and as the decoder expands it, has the
        # row keys of the declaration in their order, then optional keys in theirs
        declared = list(protocol.TASK_ROW_KEYS) + list(protocol.TASK_OPTIONAL_KEYS)
        for records in (snapshot["tasks"], decoded["snapshot"]["tasks"]):
            for record in records:
                keys = list(record)
                assert keys[: len(protocol.TASK_ROW_KEYS)] == list(protocol.TASK_ROW_KEYS)
                assert keys == [key for key in declared if key in record], keys
        await _teardown(tracker, tasks)

    asyncio.run(main())


def test_the_declared_task_keys_are_the_documented_schema_1_keys() -> None:
    # The contract with users' scripts (docs/protocol.md): spelled out here on purpose.
    assert protocol.TASK_ROW_KEYS == (
        "id",
        "loop",
        "name",
        "state",
        "coro",
        "stack",
        "awaiting",
        "awaited_by",
        "parent",
        "created_at",
        "finished_at",
    )
    assert set(protocol.TASK_OPTIONAL_KEYS) == {
        "running",
        "result",
        "exception",
        "first_seen_at",
        "waiting_seen_at",
        "cancel_requested_at",
        "steps",
        "busy_s",
        "longest_step_s",
        "last_ran_at",
        "waiting_since",
        "traceback",
        "exception_retrieved",
        "unreferenced",
        "cancelling_since",
        "request",
        "stack_left_out",
        "created_from",
    }
    assert protocol.TASK_OPTIONAL_KEYS[-1] == "created_from"  # last in every record


def test_the_model_has_a_field_for_every_declared_task_key() -> None:
    # TaskInfo.from_wire reads each key of the declaration into the field of its name
    from dataclasses import fields

    from taskscope.model import TaskInfo

    names = {field.name for field in fields(TaskInfo)}
    assert set(protocol.TASK_ROW_KEYS) | set(protocol.TASK_OPTIONAL_KEYS) <= names


def test_tables_persist_across_messages_and_only_new_entries_are_sent() -> None:
    async def main() -> None:
        tracker, tasks, gate = await _population()
        encoder, decoder = CompactEncoder(), CompactDecoder()
        builder = SnapshotBuilder(tracker)
        first = {"type": "snapshot", "snapshot": builder.build()}
        wire, decoded = _roundtrip(encoder, decoder, first)
        _same(decoded, first)
        assert b'"intern"' in wire
        # Same places again: nothing new to intern but the stack of the running task (this
        # one, on another line now).
        again = {"type": "snapshot", "snapshot": builder.build(), "re": 3}
        wire, decoded = _roundtrip(encoder, decoder, again)
        _same(decoded, again)
        assert json.loads(wire).get("intern", {}).keys() <= {"stacks"}
        assert len(json.loads(wire).get("intern", {}).get("stacks", ())) <= 1
        # Tasks move on (new stacks, finished ones): a delta adds only what is new.
        gate.set()
        await asyncio.sleep(0.01)
        snapshot = builder.build()
        delta = {
            "type": "delta",
            "delta": {
                "taken_at": snapshot["taken_at"],
                "loops": snapshot["loops"],
                "changed": snapshot["tasks"],
                "removed": ["123"],
                "cycles": snapshot["cycles"],
                "build_seconds": 0.001,
            },
        }
        wire, decoded = _roundtrip(encoder, decoder, delta)
        _same(decoded, delta)
        intern = json.loads(wire)["intern"]
        assert set(intern) <= {"strings", "frames", "stacks"}
        # Other messages go through untouched, in both directions.
        other = {"type": "cancel", "re": 4, "task": "1", "outcome": "requested"}
        assert decoder.message(json.loads(encoder.encode(other))) == other
        await _teardown(tracker, tasks)

    asyncio.run(main())


def test_tables_restart_when_full_and_pins_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        tracker, tasks, _gate = await _population()
        encoder, decoder = CompactEncoder(), CompactDecoder()
        builder = SnapshotBuilder(tracker)
        monkeypatch.setattr(compact, "MAX_TABLE_ENTRIES", 2)
        for _ in range(2):
            message = {"type": "snapshot", "snapshot": builder.build()}
            wire, decoded = _roundtrip(encoder, decoder, message)
            _same(decoded, message)
        assert json.loads(wire)["intern"]["reset"] is True
        monkeypatch.setattr(compact, "MAX_TABLE_ENTRIES", 1 << 16)
        monkeypatch.setattr(compact, "MAX_PINNED", 1)
        for _ in range(2):
            message = {"type": "snapshot", "snapshot": builder.build()}
            _wire, decoded = _roundtrip(encoder, decoder, message)
            _same(decoded, message)
        await _teardown(tracker, tasks)

    asyncio.run(main())


async def _countdowns() -> list[asyncio.Task[Any]]:
    """Tasks whose descriptions count down: a sleep, a sleep under asyncio.timeout, wait_for
    on a sleep, and two tasks awaiting each other under a timeout (a cycle)."""

    async def timed_sleep() -> None:
        async with asyncio.timeout(300):
            await asyncio.sleep(3000)

    async def waits_for() -> None:
        await asyncio.wait_for(asyncio.sleep(3000), 200)

    peers: dict[str, asyncio.Task[Any]] = {}

    async def partner(other: str) -> None:
        await asyncio.sleep(0.001)
        async with asyncio.timeout(400):
            await peers[other]

    tasks = [
        asyncio.create_task(asyncio.sleep(1000)),
        asyncio.create_task(timed_sleep()),
        asyncio.create_task(waits_for()),
    ]
    peers["a"] = asyncio.create_task(partner("b"))
    peers["b"] = asyncio.create_task(partner("a"))
    tasks += peers.values()
    await asyncio.sleep(0.05)
    return tasks


def test_countdowns_travel_as_end_times_and_expand_to_the_plain_words() -> None:
    async def main() -> None:
        tracker, tasks, _gate = await _population()
        tasks += await _countdowns()
        builder = SnapshotBuilder(tracker)
        raw = builder.build_raw()
        plain = protocol.materialize_body(dict(raw), "tasks")
        message = {"type": "snapshot", "snapshot": raw}
        _wire, decoded = _roundtrip(CompactEncoder(), CompactDecoder(), message)
        _same(decoded, {"type": "snapshot", "snapshot": plain})
        # The agent sends facts; the words are the client's, made from them.
        assert not any("text" in (record["awaiting"] or {}) for record in plain["tasks"])
        fill_texts(plain, "tasks")
        texts = [record["awaiting"]["text"] for record in plain["tasks"] if record["awaiting"]]
        assert any(text.startswith("sleep, ") and text.endswith(" s left") for text in texts)
        assert any("sleep, " in text and ", timeout in " in text for text in texts)
        assert any(
            text.startswith("wait_for ") and " s left, timeout in " in text for text in texts
        )
        members = {task_id for cycle in plain["cycles"] for task_id in cycle}
        cycle = [r["awaiting"]["text"] for r in plain["tasks"] if r["id"] in members]
        assert len(cycle) == 2 and all(", timeout in " in text for text in cycle)
        # No countdown reaches schema 1 raw; the plain records say seconds.
        assert not any("countdown" in (record["awaiting"] or {}) for record in plain["tasks"])
        assert "loop_time" not in plain
        assert any(
            300 - 5 < (record["awaiting"] or {}).get("deadline_in", 0) <= 300
            for record in plain["tasks"]
        )
        await _teardown(tracker, tasks)

    asyncio.run(main())


def test_a_task_that_did_not_move_keeps_its_record_object() -> None:
    async def main() -> None:
        tracker, tasks, gate = await _population()
        tasks += await _countdowns()
        builder = SnapshotBuilder(tracker)
        first = {record["id"]: record for record in builder.build_raw()["tasks"]}
        await asyncio.sleep(0.02)  # countdowns move on, tasks do not
        second = {record["id"]: record for record in builder.build_raw()["tasks"]}
        unmoved = [task_id for task_id in second if second[task_id] is first.get(task_id)]
        sleepers = [
            record
            for record in second.values()
            if record["awaiting"] is not None and "countdown" in record["awaiting"]
        ]
        assert len(sleepers) >= 10
        assert all(second[record["id"]] is first[record["id"]] for record in sleepers)
        # Everything pending but the task building the snapshot (this one) stayed put.
        pending = [task_id for task_id, record in second.items() if record["state"] == "pending"]
        assert len(unmoved) >= len(pending) - 1
        # A task that moves gets a new record; so does the one awaiting it.
        gate.set()
        await asyncio.sleep(0.01)
        third = {record["id"]: record for record in builder.build_raw()["tasks"]}
        waiters = [
            task_id for task_id, record in second.items() if record["name"].startswith("waiter-")
        ]
        assert waiters and all(third[task_id] is not second[task_id] for task_id in waiters)
        await _teardown(tracker, tasks)

    asyncio.run(main())


def test_connections_share_tables_and_a_late_one_gets_them_all() -> None:
    async def main() -> None:
        tracker, tasks, _gate = await _population()
        tables = protocol.CompactTables()
        builder = SnapshotBuilder(tracker)
        early, late = CompactEncoder(tables), CompactEncoder(tables)
        early_decoder = CompactDecoder()
        message = {"type": "snapshot", "snapshot": builder.build_raw()}
        _roundtrip(early, early_decoder, message)
        message = {"type": "snapshot", "snapshot": builder.build_raw()}
        wire, decoded = _roundtrip(early, early_decoder, message)
        plain = {
            "type": "snapshot",
            "snapshot": protocol.materialize_body(dict(message["snapshot"]), "tasks"),
        }
        _same(decoded, plain)
        assert len(json.loads(wire).get("intern", {}).get("stacks", ())) <= 1
        # A second connection starts with nothing: it is sent every entry it needs.
        wire, decoded = _roundtrip(late, CompactDecoder(), message)
        _same(decoded, plain)
        assert json.loads(wire)["intern"]["strings"]
        await _teardown(tracker, tasks)

    asyncio.run(main())


def test_rows_of_a_snapshot_stay_encoded_while_deltas_go_by() -> None:
    async def main() -> None:
        tracker, tasks, _gate = await _population()
        tables = protocol.CompactTables()
        encoder, decoder = CompactEncoder(tables), CompactDecoder()
        snapshot = SnapshotBuilder(tracker).build_raw()
        message = {"type": "snapshot", "snapshot": snapshot}
        _wire, first = _roundtrip(encoder, decoder, message)
        kept = dict(tables._rows)
        assert len(kept) == len(snapshot["tasks"])
        changed = [dict(snapshot["tasks"][0], name="renamed")]
        for _ in range(3):
            delta = {
                "taken_at": 1.0,
                "loops": [],
                "changed": changed,
                "removed": [],
                "loop_time": snapshot["loop_time"],
            }
            _roundtrip(encoder, decoder, {"type": "delta", "delta": delta})
        # The delta's record is not kept, and the snapshot's rows are all still there.
        assert tables._rows.keys() == kept.keys()
        _wire, again = _roundtrip(encoder, decoder, message)
        assert again == first
        await _teardown(tracker, tasks)

    asyncio.run(main())


def test_strings_that_look_like_the_encoders_stand_ins_change_nothing() -> None:
    frame = {"function": "f", "file": "/a.py", "line": 3}
    record: dict[str, Any] = {
        "id": "1",
        "loop": "L1",
        "name": "\x00taskscope rows\x00",
        "state": "pending",
        "coro": "\x00taskscope awaits\x00",
        "stack": [frame],
        "awaiting": {"kind": "future", "text": "\x00taskscope rows\x00", "tasks": []},
        "awaited_by": [],
        "parent": None,
        "created_at": 1.5,
        "finished_at": None,
    }
    loops = [{"id": "L1", "thread_name": "\x00taskscope rows\x00"}]
    message = {"type": "snapshot", "snapshot": {"loops": loops, "tasks": [record]}}
    _wire, decoded = _roundtrip(CompactEncoder(), CompactDecoder(), message)
    _same(decoded, message)
    # A row's own stand-in for its `awaiting` index, before it (a name), after it (a
    # result), or both; in a snapshot (rows kept) and in a delta (rows not kept).
    hole = "\x00taskscope await\x00"
    records = [
        {**record, "id": "2", "name": hole},
        {**record, "id": "3", "state": "done", "awaiting": None, "finished_at": 2.5},
        {**record, "id": "4", "name": hole, "awaited_by": [hole], "result": hole},
    ]
    records[1]["result"] = hole
    encoder, decoder = CompactEncoder(), CompactDecoder()
    message = {"type": "snapshot", "snapshot": {"loops": loops, "tasks": records}}
    _wire, decoded = _roundtrip(encoder, decoder, message)
    _same(decoded, message)
    delta = {"type": "delta", "delta": {"loops": loops, "changed": records, "removed": []}}
    _wire, decoded = _roundtrip(encoder, decoder, delta)
    _same(decoded, delta)


def test_unknown_states_and_keys_travel_as_they_are() -> None:
    frame = {"function": "f", "file": "/a.py", "line": 3}
    record: dict[str, Any] = {
        "id": "1",
        "loop": "L1",
        "name": "x",
        "state": "zombie",
        "coro": "f",
        "stack": [frame, {"function": "g", "file": "<string>", "line": None}],
        "awaiting": {"kind": "future", "text": "a future", "tasks": ["2"], "seconds_left": 1.5},
        "awaited_by": ["3"],
        "parent": None,
        "created_at": 1795600000.123456,
        "finished_at": None,
        "running": True,
        "future_key": {"a": [1, "é\n"]},
        "created_from": [],
    }
    message = {"type": "snapshot", "snapshot": {"tasks": [record, dict(record, id="2")]}}
    _wire, decoded = _roundtrip(CompactEncoder(), CompactDecoder(), message)
    _same(decoded, message)


def test_keys_past_the_row_travel_in_their_order_however_many() -> None:
    # GIVEN finished records with no key past the row's, one (a result: the usual case),
    # several, with and without `created_from` (last, as the agent makes records)
    base: dict[str, Any] = {
        "id": "1",
        "loop": "L1",
        "name": "x",
        "state": "done",
        "coro": "f",
        "stack": [],
        "awaiting": None,
        "awaited_by": [],
        "parent": None,
        "created_at": 1795600000.123456,
        "finished_at": 1795600001.654321,
    }
    origin = [{"function": "g", "file": "/b.py", "line": 7}]
    records = [
        dict(base),
        dict(base, id="2", result="None"),
        dict(base, id="3", result="None", created_from=origin),
        dict(base, id="4", first_seen_at=2.5, exception="ValueError('x')", traceback="tb"),
        dict(base, id="5", exception="E", exception_retrieved=False, created_from=origin),
    ]
    encoder, decoder = CompactEncoder(), CompactDecoder()
    for message in (
        {"type": "snapshot", "snapshot": {"tasks": records}},
        {"type": "delta", "delta": {"changed": [dict(r) for r in records], "removed": []}},
    ):
        # WHEN they travel compact (a snapshot keeps its rows, a delta does not)
        _wire, decoded = _roundtrip(encoder, decoder, message)
        # THEN each expands to what the plain encoding says, keys in the same order
        _same(decoded, message)
    # AND records the agent does not make travel as before: a `created_from` of None is
    # left out, a key before the row's comes after them, with its value
    odd = [
        dict(base, id="6", created_from=None),
        dict(base, id="7", created_from=None, result="1"),
        {"result": "3", **dict(base, id="8")},
    ]
    _wire, decoded = _roundtrip(encoder, decoder, {"type": "delta", "delta": {"changed": odd}})
    plain = [{k: v for k, v in r.items() if k != "created_from"} for r in odd]
    assert [json.dumps(r) for r in decoded["delta"]["changed"][:2]] == [
        json.dumps(r) for r in json.loads(json.dumps(plain[:2]))
    ]
    assert decoded["delta"]["changed"][2] == json.loads(json.dumps(plain[2]))


def test_a_broken_compact_message_is_an_error() -> None:
    decoder = CompactDecoder()
    with pytest.raises(ValueError, match="bad compact message"):
        decoder.message({"type": "snapshot", "snapshot": {"tasks": [["1", "L1", "x", 0, 5]]}})
    with pytest.raises(ValueError, match="bad compact message"):
        decoder.message({"type": "delta", "intern": {"stacks": 3}, "delta": {"changed": []}})


def test_hello_carries_the_encoding_as_an_optional_key() -> None:
    request = parse_request(b'{"type": "hello", "protocol": 2, "encoding": "compact4"}')
    assert request.encoding == "compact4"
    assert parse_request(b'{"type": "hello", "protocol": 2}').encoding is None
    with pytest.raises(ProtocolError):
        parse_request(b'{"type": "hello", "protocol": 2, "encoding": 5}')
    with pytest.raises(ProtocolError):
        parse_request(b'{"type": "hello", "protocol": 2, "encoding": "' + b"x" * 100 + b'"}')
    wire = request_to_wire(Request("hello", 1, protocol=2, encoding="compact4"))
    assert wire == {"type": "hello", "id": 1, "protocol": 2, "encoding": "compact4"}
    assert "encoding" not in request_to_wire(Request("hello", 1, protocol=2))


# --- Against a real agent --------------------------------------------------------------------


def _talk(pid: int, *requests: dict[str, Any]) -> list[dict[str, Any]]:
    """Send requests as a client of our own would, one reply each."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(socket_path(pid))
        replies: list[dict[str, Any]] = []
        buffer = b""
        for request in requests:
            sock.sendall(encode(request))
            while b"\n" not in buffer:
                chunk = sock.recv(1 << 20)
                assert chunk, "the agent hung up"
                buffer += chunk
            line, buffer = buffer.split(b"\n", 1)
            replies.append(json.loads(line))
        return replies


def _declared(reply: dict[str, Any], kind: type) -> None:
    """`reply` has only keys its TypedDict declares, and its type tag."""
    assert set(reply) <= set(kind.__annotations__), (set(reply), kind.__annotations__)
    assert reply["type"] in str(kind.__annotations__["type"])


def test_every_reply_has_the_keys_its_type_declares(start: Any) -> None:
    # GIVEN a service with pending and finished tasks
    target = start("service.py").wait_ready()
    # WHEN a client asks for each kind of reply
    hello, snapshot, bad, wrong_task, unknown = _talk(
        target.pid,
        {"type": "hello", "id": 1, "protocol": protocol.PROTOCOL_VERSION, "encoding": "plain"},
        {"type": "snapshot", "id": 2},
        {"type": "stack", "id": 3},
        {"type": "cancel", "id": 4, "task": "999999"},
        {"type": "stack", "id": 5, "task": "999999"},
    )
    tasks = snapshot["snapshot"]["tasks"]
    pending = next(task for task in tasks if task["state"] == "pending")
    finished = next(task for task in tasks if task["state"] != "pending")
    stack, finished_stack, mismatch = _talk(
        target.pid,
        {"type": "hello", "id": 1, "protocol": protocol.PROTOCOL_VERSION},
        {"type": "stack", "id": 6, "task": pending["id"]},
        {"type": "stack", "id": 7, "task": finished["id"]},
    )[1:] + _talk(target.pid, {"type": "hello", "id": 8, "protocol": 99})
    # THEN each has the keys of its declaration in taskscope.protocol, and no other
    _declared(hello, protocol.HelloReply)
    assert hello["encoding"] == "plain" and hello["pid"] == target.pid
    _declared(snapshot, protocol.SnapshotReply)
    _declared(bad, protocol.ErrorReply)
    assert bad["code"] == "bad_request" and "re" not in bad  # it could not be read
    _declared(wrong_task, protocol.CancelReply)
    assert wrong_task["outcome"] == "no_such_task" and wrong_task["re"] == 4
    _declared(unknown, protocol.StackReply)
    assert unknown["found"] is False and unknown["stack"] == []
    _declared(stack, protocol.StackReply)
    assert stack["found"] is True and stack["stack"]
    for frame in stack["stack"] + stack["created_from"]:
        assert set(frame) == set(protocol.StackFrame.__annotations__)
    _declared(finished_stack, protocol.StackReply)
    assert finished_stack["record"]["id"] == finished["id"]
    _declared(mismatch, protocol.ErrorReply)
    assert mismatch["code"] == "version_mismatch" and mismatch["re"] == 8
    assert mismatch["protocol"] == protocol.PROTOCOL_VERSION


def test_an_old_client_gets_plain_json_unchanged(start: Any) -> None:
    target = start("service.py").wait_ready()
    hello, reply = _talk(
        target.pid, {"type": "hello", "id": 1, "protocol": 2}, {"type": "snapshot", "id": 2}
    )
    assert "encoding" not in hello
    assert set(reply) == {"type", "snapshot", "re"}
    snapshot = reply["snapshot"]
    assert "awaits" not in snapshot and "loop_time" not in snapshot
    assert all(isinstance(task, dict) for task in snapshot["tasks"])
    assert all(isinstance(frame, dict) for task in snapshot["tasks"] for frame in task["stack"])
    assert not any("countdown" in (task["awaiting"] or {}) for task in snapshot["tasks"])
    sleeps = [
        task["awaiting"]
        for task in snapshot["tasks"]
        if task["awaiting"] and task["awaiting"]["kind"] == "sleep"
    ]
    # Facts only: the words are made on the client side, from the seconds.
    assert sleeps and not any("text" in sleep for sleep in sleeps)
    assert all(schema_text(sleep).endswith(" s left") for sleep in sleeps)
    assert all(isinstance(sleep["seconds_left"], float) for sleep in sleeps)
    # A client of an earlier compact encoding is answered in plain JSON, which it reads.
    for earlier in ("compact", "compact2", "compact3"):
        hello, reply = _talk(
            target.pid,
            {"type": "hello", "id": 1, "protocol": 2, "encoding": earlier},
            {"type": "snapshot", "id": 2},
        )
        assert hello["encoding"] == "plain"
        assert isinstance(reply["snapshot"]["tasks"][0], dict)


def test_the_agent_answers_which_encoding_it_uses(start: Any) -> None:
    target = start("service.py").wait_ready()
    hello, reply = _talk(
        target.pid,
        {"type": "hello", "id": 1, "protocol": 2, "encoding": "compact4"},
        {"type": "snapshot", "id": 2},
    )
    assert hello["encoding"] == "compact4"
    assert "intern" in reply and isinstance(reply["snapshot"]["tasks"][0], list)
    hello, reply = _talk(
        target.pid,
        {"type": "hello", "id": 1, "protocol": 2, "encoding": "zstd-dreams"},
        {"type": "snapshot", "id": 2},
    )
    assert hello["encoding"] == "plain"
    assert "intern" not in reply and isinstance(reply["snapshot"]["tasks"][0], dict)


VOLATILE = (
    "taken_at",
    "seconds_left",
    "deadline_in",
    "seconds_overdue",
    "deadline_overdue",
    "lag",
    # Runtime figures: a loop's rates over the last second, its stalls (a loaded machine may
    # hold any step past the threshold), a task's step counts and times.
    "busy_share",
    "steps_per_s",
    "stalls",
    "steps",
    "busy_s",
    "longest_step_s",
    "last_ran_at",
    "waiting_since",
    "waiting_seen_at",
    "blocked_for",
)


def _normalise(value: Any) -> Any:
    """Without what changes from one look to the next (countdowns, clocks, their texts)."""
    if isinstance(value, dict):
        out = {key: _normalise(item) for key, item in value.items() if key not in VOLATILE}
        if "seconds_left" in value or "deadline_in" in value:
            out.pop("text", None)
        return out
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    return value


def test_dump_is_the_same_in_both_encodings(start: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    target = start("service.py").wait_ready()
    # The two dumps are two looks: the program's stopper task wakes now and then to poll, and
    # a look that meets it running says so. Up to three pairs, for one pair of quiet looks.
    for _attempt in range(3):
        monkeypatch.delenv(ENCODING_ENV, raising=False)
        compact = run_cli("dump", str(target.pid))
        monkeypatch.setenv(ENCODING_ENV, "plain")
        plain = run_cli("dump", str(target.pid))
        assert compact.returncode == plain.returncode == 0, compact.stderr + plain.stderr
        compact_snapshot, plain_snapshot = json.loads(compact.stdout), json.loads(plain.stdout)
        assert len(plain_snapshot["tasks"]) > 3
        compact_text = json.dumps(_normalise(compact_snapshot))
        plain_text = json.dumps(_normalise(plain_snapshot))
        if compact_text == plain_text:
            break
    assert compact_text == plain_text


def test_client_negotiates_compact_and_subscriptions_expand(start: Any) -> None:
    from taskscope.model import TaskModel

    target = start("churn.py", "3").wait_ready()
    with AgentClient(target.pid, encoding="plain") as client:
        assert client.encoding == "plain"
        plain = client.snapshot()
    with AgentClient(target.pid) as client:
        assert client.encoding == "compact4"
        assert json.dumps(_normalise(client.snapshot())) == json.dumps(_normalise(plain))
        feed = client.subscribe(interval=0.1)
        kind, first = next(feed)
        assert kind == "snapshot"
        model = TaskModel.from_snapshot(first)  # type: ignore[arg-type]
        target.file(f"spawn-{target.pid}").write_text("go")
        for _ in range(50):
            kind, delta = next(feed)
            assert kind == "delta"
            model.apply_delta(delta)  # type: ignore[arg-type]
            if any(task.name == "long-1" for task in model.tasks.values()):
                break
        new = next(task for task in model.tasks.values() if task.name == "long-1")
        assert new.awaiting is not None and new.awaiting.kind == "sleep"
        assert new.stack and new.stack[-1].function == "sleep"
        # A request on the subscribed connection still works between pushes.
        assert client.stack(new.id)["found"] is True


@pytest.mark.parametrize("encoding", ["plain", "compact4"])
def test_subscription_deltas_count_down_in_both_encodings(start: Any, encoding: str) -> None:
    """A delta's new sleeper says its seconds left and the words for them, in schema 1,
    whichever the encoding: end times stay inside the agent and the compact encoding."""
    target = start("churn.py", "3").wait_ready()
    with AgentClient(target.pid, encoding=encoding) as client:
        assert client.encoding == encoding
        feed = client.subscribe(interval=0.1)
        kind, first = next(feed)
        assert "loop_time" not in first
        target.file(f"spawn-{target.pid}").write_text("go")
        for _ in range(50):
            kind, delta = next(feed)
            assert kind == "delta" and "loop_time" not in delta
            records = [r for r in delta["changed"] if r["name"] == "long-1"]  # type: ignore[typeddict-item]
            if records:
                break
        (record,) = records
        awaiting = record["awaiting"]
        assert awaiting is not None and "countdown" not in awaiting
        assert 3590 < awaiting["seconds_left"] <= 3600  # type: ignore[operator]
        assert awaiting["text"] == f"sleep, {awaiting['seconds_left']:.0f} s left"


def test_a_reply_of_another_type_is_a_bad_reply(tmp_path: Any) -> None:
    # GIVEN an agent (a stand-in on a real socket) that answers a stack request with a cancel
    # reply
    directory = tmp_path / "sockets"
    directory.mkdir(mode=0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path(os.getpid(), str(directory)))
    listener.listen(1)

    def serve() -> None:
        connection, _ = listener.accept()
        with connection, connection.makefile("rb") as lines:
            hello = json.loads(lines.readline())
            connection.sendall(
                encode(
                    {
                        "type": "hello",
                        "re": hello["id"],
                        "protocol": protocol.PROTOCOL_VERSION,
                        "agent": "0",
                        "pid": os.getpid(),
                        "python": "3",
                        "executable": "python3",
                        "argv": [],
                        "started_at": 0.0,
                    }
                )
            )
            request = json.loads(lines.readline())
            reply = {"type": "cancel", "re": request["id"], "task": "1", "outcome": "requested"}
            connection.sendall(encode(reply))
            lines.readline()  # until the client hangs up

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    # WHEN the client asks for a stack
    with AgentClient(os.getpid(), socket_dir=str(directory), encoding="plain") as client:
        assert client.hello["python"] == "3"
        # THEN it says the reply is bad, in one line, rather than handing on the wrong shape
        with pytest.raises(ClientError, match="bad reply from the agent: 'cancel' to a 'stack'"):
            client.stack("1")
    server.join(timeout=10)
    listener.close()
