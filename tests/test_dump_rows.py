"""`taskscope dump` writes its JSON straight from the compact rows (`CompactSnapshot`): the
same text, byte for byte, as expanding every row to its record, giving it words, finding the
warnings on the whole model and `json.dumps` of it all, on a real process with a bit of
everything (tests/targets/dump_mix.py)."""

from __future__ import annotations

import io
import json
import socket
from typing import Any

import pytest

from taskscope.cli.show import write_rows_dump
from taskscope.lints import find_warnings
from taskscope.model import TaskModel
from taskscope.protocol import (
    COMPACT,
    PROTOCOL_VERSION,
    CompactDecoder,
    encode,
    socket_path,
    terminal_safe_json,
    terminal_safe_line,
)
from taskscope.words import (
    fill_texts,
    finding_text,
    letter_of,
    named_object,
    object_letters,
    schema_text,
)
from tests.helpers import run_cli


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1 << 20)
        assert chunk, "the agent hung up"
        data += chunk
    return data[:-1]


def _snapshot_line(pid: int) -> bytes:
    """The agent's compact snapshot reply, as the bytes of its line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(socket_path(pid))
        hello = {"type": "hello", "id": 1, "protocol": PROTOCOL_VERSION, "encoding": COMPACT}
        sock.sendall(encode(hello))
        assert json.loads(_read_line(sock))["encoding"] == COMPACT
        sock.sendall(encode({"type": "snapshot", "id": 2, "include_finished": True}))
        return _read_line(sock)


def _old_dump(line: bytes) -> str:
    """What `dump` printed before: every row made a record, words filled in, the warnings of
    the model of every record, `json.dumps` of it all, escaped for a terminal."""
    snapshot: Any = CompactDecoder().message(json.loads(line))["snapshot"]
    fill_texts(snapshot, "tasks")
    model = TaskModel.from_snapshot(snapshot)
    snapshot["warnings"] = [
        {"kind": finding.kind, "tasks": list(finding.tasks), "text": finding_text(finding, model)}
        for finding in find_warnings(model)
    ]
    return terminal_safe_json(json.dumps(snapshot, ensure_ascii=False)) + "\n"


def _new_dump(line: bytes, unsafe: bool | None = None) -> str:
    if unsafe is None:
        unsafe = not terminal_safe_line(line)
    rows = CompactDecoder().snapshot_rows(json.loads(line), unsafe)
    out = io.StringIO()
    write_rows_dump(rows, out)
    return out.getvalue()


@pytest.fixture
def mixed_line(start: Any) -> bytes:
    target = start("dump_mix.py").wait_ready()
    return _snapshot_line(target.pid)


def test_the_rows_dump_is_the_records_dump_byte_for_byte(mixed_line: bytes) -> None:
    # GIVEN a real process's compact snapshot with every kind of task
    old = _old_dump(mixed_line)
    parsed = json.loads(old)
    tasks = {task["name"]: task for task in parsed["tasks"]}
    kinds = {task["awaiting"]["kind"] for task in parsed["tasks"] if task["awaiting"]}
    assert {"sleep", "event", "lock", "queue_get", "gather", "wait_for", "task"} <= kinds
    assert {"done", "cancelled", "failed", "pending"} == {t["state"] for t in parsed["tasks"]}
    assert "ValueError: nobody looks at this" in tasks["fails"]["traceback"]
    assert tasks["waits-for"]["awaiting"]["deadline_in"] > 0
    assert len(parsed["loops"]) == 2
    assert parsed["cycles"]
    assert {"lock_deadlock", "await_cycle", "exception_never_retrieved"} <= {
        warning["kind"] for warning in parsed["warnings"]
    }
    assert "rtl\u202eevil" in tasks and "café ☕" in tasks
    # WHEN dump writes it from the rows THEN it is the same text, byte for byte
    new = _new_dump(mixed_line)
    assert new == old
    assert json.loads(new) == parsed
    assert "\u202e" not in new  # the bidi override is escaped, as before


def test_escaping_every_piece_gives_the_same_text(mixed_line: bytes) -> None:
    # GIVEN the line WHEN the rows are escaped piece by piece, needed or not
    # THEN the text is the same (escaping is per character)
    assert _new_dump(mixed_line, unsafe=True) == _new_dump(mixed_line) == _old_dump(mixed_line)


def test_a_task_named_like_the_mark_is_written_the_slow_way(mixed_line: bytes) -> None:
    # GIVEN a snapshot whose own strings hold the mark that stands for the tasks
    message = json.loads(mixed_line)
    message["snapshot"]["python"] = "\x00taskscope tasks\x00"
    line = json.dumps(message, ensure_ascii=False).encode()
    # THEN dump still writes what the records make
    assert _new_dump(line) == _old_dump(line)


def test_rows_with_unexpected_values_are_written_as_their_records(mixed_line: bytes) -> None:
    # GIVEN rows whose values are of types the agent does not send (an int name, a string
    # for a time, extra keys that shadow row keys)
    message = json.loads(mixed_line)
    rows = message["snapshot"]["tasks"]
    rows[0][2] = 7
    rows[1][9] = "yesterday"
    rows[2][7] = ["1", "2"]
    rows[3].append({"name": "shadow", "steps": 3})
    # and a `waiting_seen_at` that is no time, or true (which equals 1.0 as a key)
    rows[4][11], rows[5][11], rows[6][11] = "soon", True, 1.0
    line = json.dumps(message, ensure_ascii=False).encode()
    # THEN the text is still json.dumps of the records the decoder makes
    assert _new_dump(line) == _old_dump(line)


def test_a_wait_seen_beside_other_keys_is_written_as_its_record(mixed_line: bytes) -> None:
    # GIVEN regular rows only (one the fast writer leaves aside would take its whole piece the
    # slow way): a pending task's wait seen with other keys beside it, a first sight that is
    # no time, and one that is
    message = json.loads(mixed_line)
    rows = message["snapshot"]["tasks"]
    rows[0][11] = 1795600000.25
    rows[0].append({"unreferenced": True})
    rows[1].append({"first_seen_at": "early"})
    rows[2][11] = 1795600001.5
    rows[2].append({"first_seen_at": 1795600000.125})
    line = json.dumps(message, ensure_ascii=False).encode()
    # THEN the text is json.dumps of the records the decoder makes, every key kept
    assert _new_dump(line) == _old_dump(line)
    tasks = json.loads(_new_dump(line))["tasks"]
    assert tasks[0]["waiting_seen_at"] == 1795600000.25 and tasks[0]["unreferenced"] is True
    assert tasks[2]["waiting_seen_at"] == 1795600001.5


def test_sleeps_counted_alike_get_their_words_once(mixed_line: bytes) -> None:
    # GIVEN a real process's snapshot with 40 more sleeping tasks, each with a description
    # of its own on the wire (a sleep's end), all ending when the first sleeper's does
    message = json.loads(mixed_line)
    body = message["snapshot"]
    awaits = body["awaits"]
    sleeping = next(
        row for row in body["tasks"] if row[6] is not None and awaits[row[6]]["kind"] == "sleep"
    )
    for n in range(40):
        body["awaits"].append(dict(body["awaits"][sleeping[6]]))
        body["tasks"].append([f"9{n:03}", *sleeping[1:6], len(body["awaits"]) - 1, *sleeping[7:]])
    line = json.dumps(message, ensure_ascii=False).encode()
    described: list[Any] = []
    rows = CompactDecoder().snapshot_rows(json.loads(line), unsafe=True)
    # (the two deadlocked tasks' locks go by one name: lettered, as `dump` letters them)
    letters = object_letters(named for named in map(named_object, rows.awaits) if named)
    assert len(letters) == 2

    def describe(awaiting: Any, in_cycle: bool) -> str:
        described.append(awaiting)
        return schema_text(awaiting, in_cycle=in_cycle, letter=letter_of(awaiting, letters))

    text = "".join(rows.json_rows(describe))
    # THEN they share one description, whose words are made once, and the text is the same
    # as the records' (the other descriptions' words made once each as before)
    copies = rows.awaits[len(rows.awaits) - 40 :]
    assert all(copy is rows.awaits[sleeping[6]] for copy in copies)
    assert sum(awaiting is copies[0] for awaiting in described) == 1
    assert json.loads(text) == json.loads(_old_dump(line))["tasks"]
    assert _new_dump(line) == _old_dump(line)


def test_a_row_that_does_not_decode_is_one_line(start: Any) -> None:
    # GIVEN a bad row THEN ValueError before any of the rows' text (the CLI says it in a line)
    target = start("dump_mix.py").wait_ready()
    message = json.loads(_snapshot_line(target.pid))
    message["snapshot"]["tasks"][5] = ["1"]
    rows = CompactDecoder().snapshot_rows(message, unsafe=False)
    with pytest.raises(ValueError, match="bad compact message"):
        list(rows.json_rows(lambda awaiting, in_cycle: ""))


def test_dump_on_the_command_line_is_the_old_json(start: Any) -> None:
    # GIVEN a real process WHEN `taskscope dump PID` runs (the rows path) and `dump --indent
    # 2` (records, then json.dumps)
    target = start("dump_mix.py").wait_ready()
    fast = run_cli("dump", str(target.pid))
    slow = run_cli("dump", "--indent", "2", str(target.pid))
    assert fast.returncode == 0, fast.stderr
    assert slow.returncode == 0, slow.stderr
    # THEN the same snapshot but for the moment it was taken
    new, old = json.loads(fast.stdout), json.loads(slow.stdout)
    assert list(new) == list(old)
    assert [task["id"] for task in new["tasks"]] == [task["id"] for task in old["tasks"]]
    assert new["warnings"] == old["warnings"]
    assert fast.stdout.endswith("}\n")
