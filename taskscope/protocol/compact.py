"""The compact encoding of snapshots and deltas (negotiated in hello): task rows whose
stacks, origins and coroutine names are indexes into tables that live as long as the
connection, so a subscription sends each stack once. docs/protocol.md, "Compact encoding".
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, Final

from taskscope.protocol import (
    TASK_ROW_KEYS,
    WireAwaiting,
    WireFrame,
    WireTask,
    _encode_small,
    _encoder,
    _small_value_encoder,
    encode,
    materialize_awaiting,
    terminal_safe_json,
)
from taskscope.protocol.slicing import clear_sliced, give_way, give_way_due, start_slicing

# Negotiated in hello. Snapshot and delta messages then carry their tasks as rows (arrays in
# a fixed order) whose stacks, `created_from` and coroutine names are indexes into tables that
# grow for as long as the connection lives: each message sends only the entries the client
# lacks (`intern`). Their `awaiting` objects are indexes into the message's `awaits`, with
# countdowns as end times (see "Countdowns"). Everything else is the schema-1 JSON
# unchanged. docs/protocol.md, "Compact encoding".

#: Where the row keys whose values a row encodes (rather than carries as they are) sit.
_STATE_AT: Final = TASK_ROW_KEYS.index("state")
_CORO_AT: Final = TASK_ROW_KEYS.index("coro")
_STACK_AT: Final = TASK_ROW_KEYS.index("stack")
_AWAITING_AT: Final = TASK_ROW_KEYS.index("awaiting")
#: Where a row's `waiting_seen_at` sits, after the row keys, and its `created_from` index.
_SEEN_AT: Final = len(TASK_ROW_KEYS)
_ORIGIN_AT: Final = _SEEN_AT + 1
#: `state` codes in rows (a state missing here travels as its string).
TASK_STATES: Final[tuple[str, ...]] = ("pending", "done", "cancelled", "failed")
_STATE_CODES: Final = {state: code for code, state in enumerate(TASK_STATES)}
_ROW_VALUES = itemgetter(*TASK_ROW_KEYS)
_NOT_EXTRA: Final = frozenset(TASK_ROW_KEYS) | {"waiting_seen_at", "created_from"}
_FRAME_VALUES = itemgetter("function", "file", "line")
#: Where a remembered row's `awaiting` index goes: JSON text never carries a raw NUL (it
#: escapes control characters), so the first one in a row's text is this.
_AWAIT_HOLE: Final = "\x00"
#: Stands for the hole while a row is encoded (see `CompactTables._row`), and its JSON text.
_HOLE_MARK: Final = "\x00taskscope await\x00"
_HOLE_TEXT: Final = json.dumps(_HOLE_MARK)
#: Rows per piece of an encoded message (see `CompactEncoder.encode_chunks`).
CHUNK_ROWS: Final = 2000
#: Table entries (strings, frames or stacks) after which the agent starts the tables over.
MAX_TABLE_ENTRIES: Final = 1 << 16
#: Lists remembered by identity (see `CompactEncoder`) before that memory is dropped.
MAX_PINNED: Final = 1 << 18

_StackKey = tuple[tuple[str, str, int | None], ...]


class CompactTables:
    """The interning tables and the encoded rows of one agent, shared by all its compact
    connections (each remembers how much of the tables it was sent: `CompactEncoder`).

    Cheap per task: a record that is the same object as in an earlier message (the snapshot
    builder reuses the record of a task that did not change) costs a dictionary look-up, its
    row being kept as text with a hole for its `awaiting` index. For a new record, a coroutine
    name is found by its string, a stack or `created_from` sequence by `id()` (the builder
    shares one stack between the tasks suspended at one place, and one `created_from` between
    the tasks made at one place), and only on a miss by content.
    Sequences and records are pinned (referenced here) so that an id is not reused while
    remembered; records are never mutated once built, which makes this sound. Thread-safe:
    `lock` is held while encoding."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.generation = 0
        #: The row texts of the message being encoded: lists kept from one message to the
        #: next (emptied after each), old for the host's garbage collector, whose young
        #: collections would otherwise walk their 100,000 entries (see introspect's
        #: `_ScratchLists`). Used under `lock`.
        self.scratch: tuple[list[str], list[str]] = ([], [])
        self._clear()

    def _clear(self) -> None:
        self.generation += 1
        self._strings: dict[str, int] = {}
        self.string_list: list[str] = []
        self._frames: dict[tuple[str, str], int] = {}
        self.frame_list: list[list[str]] = []
        self._stacks: dict[_StackKey, int] = {}
        self.stack_list: list[list[list[int | None]]] = []
        self._by_id: dict[int, int] = {}
        self._pinned: list[Any] = []
        #: id(record) -> its row's text with `_AWAIT_HOLE` where its `awaiting` index goes:
        #: a string, which the host's garbage collector does not track (where a tuple holding
        #: the record would be one more object per task in every full collection), and one
        #: object per task rather than a tuple of two.
        self._rows: dict[int, str] = {}
        #: The records of the rows in `_rows`, referenced so that an id there is not reused
        #: by another record while it is remembered: a list, 8 bytes a task, where a second
        #: dictionary by id cost about 80.
        self._row_records: list[Any] = []
        #: id(awaiting) -> its JSON text, and the descriptions themselves, referenced (as the
        #: records of `_rows`) so that an id there is not reused: no tuple per description,
        #: which the collector would track (it holds a dictionary).
        self._awaits: dict[int, str] = {}
        self._await_objects: list[Any] = []

    def rows(self, records: Sequence[Any], remember: bool = True) -> tuple[str, str]:
        """The records as a JSON array of rows, and the JSON array of the `awaiting` objects
        the rows index (an object shared by several records is there once). Rows are kept
        for the next message when `remember` (whole snapshots: a delta's records are those
        that changed, which the next delta does not carry again). Hold `lock`."""
        parts, awaits = self.row_texts(records, remember)
        return "[" + ",".join(parts) + "]", "[" + ",".join(awaits) + "]"

    def row_texts(
        self,
        records: Sequence[Any],
        remember: bool = True,
        into: tuple[list[str], list[str]] | None = None,
    ) -> tuple[list[str], list[str]]:
        """`rows`, as the JSON text of each row and of each `awaiting` object, appended to
        the empty lists `into` when given. Gives the GIL away between slices of
        `SLICE_SECONDS`. Hold `lock`."""
        self._check_limits()
        cached = self._rows
        parts, awaits = into if into is not None else ([], [])
        await_index: dict[int, str] = {}  # id(awaiting) -> its index, as text
        clock = time.perf_counter
        give_way_at = give_way_due()
        count = 0
        for record in records:
            count += 1
            if not count & 127 and clock() >= give_way_at:
                give_way()
                give_way_at = give_way_due()
            row = cached.get(id(record))  # a row remembered is its record's: pinned
            awaiting = record["awaiting"]
            if row is None:
                # A row or an `awaiting` text made anew costs microseconds: 128 of them between
                # two checks above would hold the GIL for milliseconds.
                if clock() >= give_way_at:
                    give_way()
                    give_way_at = give_way_due()
                if awaiting is None and not remember:  # a finished task's, in a delta
                    parts.append(self._row(record, False, "null"))
                    continue
                row = self._row(record, remember)
            if awaiting is None:
                parts.append(row.replace(_AWAIT_HOLE, "null", 1))
                continue
            ref = await_index.get(id(awaiting))
            if ref is None:
                if clock() >= give_way_at:
                    give_way()
                    give_way_at = give_way_due()
                ref = await_index[id(awaiting)] = str(len(awaits))
                awaits.append(self._await_text(awaiting, remember))
            parts.append(row.replace(_AWAIT_HOLE, ref, 1))
        if remember and len(cached) > 2 * len(records) + 4096:  # drop records gone since
            keep = {id(record) for record in records}
            self._rows = {key: row for key, row in cached.items() if key in keep}
            self._row_records = [record for record in records if id(record) in self._rows]
            self._awaits.clear()
            self._await_objects.clear()
        return parts, awaits

    def _row(self, record: WireTask, remember: bool, hole: str = _AWAIT_HOLE) -> str:
        """A record's row as text, `hole` where its `awaiting` index goes (remembered only
        with `_AWAIT_HOLE` there)."""
        values: list[Any] = list(_ROW_VALUES(record))
        seen = record.get("waiting_seen_at")
        values.append(seen)
        state = values[_STATE_AT]
        values[_STATE_AT] = _STATE_CODES.get(state, state)
        coro = values[_CORO_AT]
        coro_index = self._strings.get(coro)
        values[_CORO_AT] = coro_index if coro_index is not None else self._string(coro)
        stack = values[_STACK_AT]
        stack_index = self._by_id.get(id(stack))
        values[_STACK_AT] = stack_index if stack_index is not None else self._list(stack)
        origin = record.get("created_from")
        origin_index = None
        if origin is not None:
            origin_index = self._by_id.get(id(origin))
            if origin_index is None:
                origin_index = self._list(origin)
        values.append(origin_index)
        extras = len(record) - _SEEN_AT - (seen is not None) - (origin is not None)
        if extras == 1:  # most often: a finished task's result or exception, its last key
            keyed: Any = record  # read by key names the type does not know
            for key in reversed(keyed):
                if key not in _NOT_EXTRA:
                    values.append({key: keyed[key]})
                    break
            else:  # a `created_from` or `waiting_seen_at` of None, counted as an extra key
                values.append({})
        elif extras > 0:
            values.append({k: v for k, v in record.items() if k not in _NOT_EXTRA})
        # One encoding of the whole row, a stand-in where the hole goes (a row whose own
        # strings encode as the stand-in does is encoded in two halves around it instead).
        values[_AWAITING_AT] = _HOLE_MARK
        head, _mark, tail = _encode_small(values).partition(_HOLE_TEXT)
        if _HOLE_TEXT not in tail:
            row = head + hole + tail
        else:
            head = _encode_small(values[:_AWAITING_AT])[:-1]
            row = head + "," + hole + "," + _encode_small(values[_AWAITING_AT + 1 :])[1:]
        if remember:
            self._rows[id(record)] = row
            self._row_records.append(record)
        return row

    def _await_text(self, awaiting: Any, remember: bool) -> str:
        known = self._awaits.get(id(awaiting))  # a text remembered is its description's
        if known is not None:
            return known
        countdown = awaiting.get("countdown")
        if countdown is not None and not isinstance(countdown, tuple | list):
            # a plain sleep's end alone (`countdown_parts`): the pair on the wire
            text = _encode_small({**awaiting, "countdown": (countdown, None)})
        else:
            text = _encode_small(awaiting)
        if remember:
            self._awaits[id(awaiting)] = text
            self._await_objects.append(awaiting)
        return text

    def _check_limits(self) -> None:
        sizes = (len(self.string_list), len(self.frame_list), len(self.stack_list))
        if max(sizes) > MAX_TABLE_ENTRIES:
            self._clear()
        elif len(self._pinned) > MAX_PINNED:
            self._by_id.clear()
            self._pinned.clear()

    def _string(self, value: str) -> int:
        index = self._strings[value] = len(self.string_list)
        self.string_list.append(value)
        return index

    def _list(self, frames: Sequence[Any]) -> int:
        key: _StackKey = tuple(map(_FRAME_VALUES, frames))
        index = self._stacks.get(key)
        if index is None:
            entries: list[list[int | None]] = []
            for function, file, line in key:
                frame_index = self._frames.get((function, file))
                if frame_index is None:
                    frame_index = self._frames[function, file] = len(self.frame_list)
                    self.frame_list.append([function, file])
                entries.append([frame_index, line])
            index = self._stacks[key] = len(self.stack_list)
            self.stack_list.append(entries)
        self._by_id[id(frames)] = index
        self._pinned.append(frames)
        return index


#: Stand-ins for the rows and the awaits of a message while the rest of it is encoded; the
#: encoded rows replace them. A message whose own strings happen to encode the same way is
#: encoded the slow way instead.
_ROWS_MARK: Final = "\x00taskscope rows\x00"
_AWAITS_MARK: Final = "\x00taskscope awaits\x00"
_ROWS_TEXT: Final = json.dumps(_ROWS_MARK)
_AWAITS_TEXT: Final = json.dumps(_AWAITS_MARK)


class CompactEncoder:
    """The agent's side of one compact connection: which part of the shared tables the
    client has, and the encoding of each message for it."""

    def __init__(self, tables: CompactTables | None = None) -> None:
        self.tables = tables if tables is not None else CompactTables()
        self._generation = 0
        self._sent = (0, 0, 0)

    def encode(self, message: Mapping[str, Any]) -> bytes:
        """The line for a `snapshot` or `delta` message in the compact encoding; any other
        message as `encode` makes it. Must be sent, in order, on this encoder's connection."""
        return b"".join(self.encode_chunks(message))

    def encode_chunks(self, message: Mapping[str, Any]) -> list[bytes]:
        """`encode`, in pieces of at most `CHUNK_ROWS` rows each: no single call holds the
        GIL for long (a join, a replace and an encode of 10 MB would, at 100,000 tasks), and
        the GIL is given away between pieces every `SLICE_SECONDS`."""
        kind = message.get("type")
        if kind == "snapshot":
            rows_key = "tasks"
        elif kind == "delta":
            rows_key = "changed"
        else:
            return [encode(message)]
        tables = self.tables
        start_slicing()
        with tables.lock:
            rows, awaits = tables.row_texts(
                message[kind][rows_key], remember=kind == "snapshot", into=tables.scratch
            )
            try:
                return self._pieces(message, kind, rows_key, rows, awaits)
            finally:
                clear_sliced(rows)
                clear_sliced(awaits)

    def _pieces(
        self,
        message: Mapping[str, Any],
        kind: str,
        rows_key: str,
        rows: list[str],
        awaits: list[str],
    ) -> list[bytes]:
        intern = self._take_intern()
        body = dict(message[kind])
        body[rows_key] = _ROWS_MARK
        body["awaits"] = _AWAITS_MARK
        out: dict[str, Any] = {}
        for key, value in message.items():
            if key == kind:
                if intern is not None:
                    out["intern"] = intern
                out[key] = body
            else:
                out[key] = value
        text = _encoder.encode(out)
        if text.count(_ROWS_TEXT) != 1 or text.count(_AWAITS_TEXT) != 1:
            body[rows_key] = json.loads("[" + ",".join(rows) + "]")
            body["awaits"] = json.loads("[" + ",".join(awaits) + "]")
            return [encode(out)]
        # The rows come before the awaits: the body keeps its keys' order, "awaits" is last.
        head, rest = text.split(_ROWS_TEXT)
        middle, tail = rest.split(_AWAITS_TEXT)
        chunks: list[bytes] = []
        clock = time.perf_counter
        give_way_at = give_way_due()
        for opening, texts, closing in ((head, rows, middle), ("", awaits, tail + "\n")):
            pieces = [opening + "["]
            for start in range(0, len(texts), CHUNK_ROWS):
                if clock() >= give_way_at:
                    give_way()
                    give_way_at = give_way_due()
                piece = ",".join(texts[start : start + CHUNK_ROWS])
                pieces.append("," + piece if start else piece)
                if len(pieces) > 1 or start:
                    chunks.append("".join(pieces).encode("utf-8", "surrogatepass"))
                    pieces = []
            pieces.append("]" + closing)
            chunks.append("".join(pieces).encode("utf-8", "surrogatepass"))
        return chunks

    def _take_intern(self) -> dict[str, Any] | None:
        """The table entries the client lacks (all of them, after `reset`, when the tables
        started over since its last message)."""
        tables = self.tables
        intern: dict[str, Any] = {}
        strings, frames, stacks = self._sent
        if self._generation != tables.generation:
            if self._generation:
                intern["reset"] = True
            self._generation = tables.generation
            strings = frames = stacks = 0
        if len(tables.string_list) > strings:
            intern["strings"] = tables.string_list[strings:]
        if len(tables.frame_list) > frames:
            intern["frames"] = tables.frame_list[frames:]
        if len(tables.stack_list) > stacks:
            intern["stacks"] = tables.stack_list[stacks:]
        self._sent = (len(tables.string_list), len(tables.frame_list), len(tables.stack_list))
        return intern or None


#: How the decoder expands the row values that are not the record's values as they are
#: (`{}` is the value in the row); every other key of `TASK_ROW_KEYS` is taken as it is.
_ROW_EXPANSIONS: Final = {
    "state": "STATES[{}] if type({}) is int else {}",
    "coro": "strings[{}]",
    "stack": "expand_stack({})",
    "awaiting": "None if {} is None else awaits[{}]",
}


def _row_reader() -> Callable[..., tuple[WireTask, list[Any]]]:
    """`read_row(row, strings, expand_stack, awaits)`: a row's first values as a record under
    `TASK_ROW_KEYS`, expanded by `_ROW_EXPANSIONS`, and the rest of the row. Made from the
    keys, as `dataclasses` makes an `__init__` from the fields: a dict display, five times
    faster than `dict(zip())` and its fix-ups, which matters at 100,000 rows."""
    if not all(key.isidentifier() for key in TASK_ROW_KEYS):  # pragma: no cover
        raise TypeError("task row keys must be identifiers")
    items = ", ".join(
        f"{key!r}: " + _ROW_EXPANSIONS.get(key, "{}").replace("{}", f"row_{key}")
        for key in TASK_ROW_KEYS
    )
    source = (
        "def read_row(row, strings, expand_stack, awaits):\n"
        f"    {', '.join(f'row_{key}' for key in TASK_ROW_KEYS)}, *rest = row\n"
        f"    return {{{items}}}, rest\n"
    )
    namespace: dict[str, Any] = {"STATES": TASK_STATES}
    exec(source, namespace)  # made of our own keys only: nothing from the wire
    reader: Callable[..., tuple[WireTask, list[Any]]] = namespace["read_row"]
    return reader


_read_row = _row_reader()


class CompactDecoder:
    """The client's side of one compact connection: applies each message's `intern` to its
    tables and expands rows back to the schema-1 records (`WireTask`), key order included.
    Records of one connection share their stack lists and frame objects, as the agent's do:
    treat them as read-only. Raises ValueError on a message that does not decode."""

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self._strings: list[str] = []
        self._frames: list[list[str]] = []
        self._stacks: list[list[list[Any]]] = []
        self._expanded: list[list[WireFrame] | None] = []

    def message(self, message: dict[str, Any]) -> dict[str, Any]:
        """The plain form of a compact message (in place). Every message of the connection
        must go through here, in order."""
        intern = message.pop("intern", None)
        try:
            if intern is not None:
                self._apply(intern)
            kind = message.get("type")
            if kind == "snapshot":
                rows_key = "tasks"
            elif kind == "delta":
                rows_key = "changed"
            else:
                return message
            body = message[kind]
            loop_time = body.get("loop_time")
            awaits = [materialize_awaiting(item, loop_time) for item in body.get("awaits", ())]
            task = self._task
            plain: dict[str, Any] = {}
            for key, value in body.items():
                if key == rows_key:
                    plain[key] = [task(row, awaits) for row in value]
                elif key not in ("awaits", "loop_time"):
                    plain[key] = value
            message[kind] = plain
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"bad compact message: {error!r}") from None
        return message

    def snapshot_rows(self, message: dict[str, Any], unsafe: bool = True) -> CompactSnapshot:
        """A compact `snapshot` message left in rows (`CompactSnapshot`): what `message`
        expands to, without making 100,000 records. `unsafe`: whether the message may hold
        a character `terminal_safe_json` escapes (False only when its line was checked).
        The next message of the connection must wait until the rows are read."""
        intern = message.pop("intern", None)
        try:
            if intern is not None:
                self._apply(intern)
            body = message["snapshot"]
            awaits = _materialize_awaits(body.get("awaits", ()), body.get("loop_time"))
            rows = body["tasks"]
            if not isinstance(rows, list):
                raise TypeError("rows are not a list")
            plain = {key: value for key, value in body.items() if key not in _NOT_PLAIN}
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"bad compact message: {error!r}") from None
        return CompactSnapshot(self, plain, rows, awaits, unsafe)

    def _apply(self, intern: dict[str, Any]) -> None:
        if intern.get("reset"):
            self._clear()
        self._strings.extend(intern.get("strings", ()))
        self._frames.extend(intern.get("frames", ()))
        stacks = intern.get("stacks", ())
        self._stacks.extend(stacks)
        self._expanded.extend([None] * len(stacks))

    def _stack(self, index: int) -> list[WireFrame]:
        if index < 0:
            raise IndexError(index)
        stack = self._expanded[index]
        if stack is None:
            frames = self._frames
            stack = self._expanded[index] = [
                {"function": frames[frame][0], "file": frames[frame][1], "line": line}
                for frame, line in self._stacks[index]
            ]
        return stack

    def _task(self, row: list[Any], awaits: Sequence[Any]) -> WireTask:
        """A row back to its record: `TASK_ROW_KEYS` from the row's first positions, then
        `waiting_seen_at` (if any), the other keys (if any) from its object, `created_from`
        last."""
        record, rest = _read_row(row, self._strings, self._stack, awaits)
        seen = rest[0]
        if seen is not None:
            record["waiting_seen_at"] = seen
        if len(rest) > 2:  # the record's other keys
            (others,) = rest[2:]
            record.update(others)
        origin = rest[1]
        if origin is not None:
            record["created_from"] = self._stack(origin)
        return record


#: The keys of a plain sleep's description on the wire, in their order (see
#: `_materialize_awaits`).
_SLEEP_KEYS: Final = ["kind", "tasks", "countdown"]


def _materialize_awaits(items: Sequence[Any], loop_time: Any) -> list[Any]:
    """`materialize_awaiting` of each description, a plain sleep's (`{"kind": "sleep",
    "tasks": [], "countdown": [end, null]}`: one per sleeping task, each with its own end)
    shared with every other whose counted seconds are the same: the schema-1 form of such a
    sleep is made of those numbers alone, so its words and text are made once per value
    (`CompactSnapshot.json_rows` keeps them per description object), not once per task."""
    if type(loop_time) is not float:
        return [materialize_awaiting(item, loop_time) for item in items]
    counted: dict[tuple[float, float], Any] = {}
    result: list[Any] = []
    append = result.append
    for item in items:
        countdown = item.get("countdown") if type(item) is dict else None
        if (
            type(countdown) is list
            and len(countdown) == 2
            and countdown[1] is None
            and type(countdown[0]) is float
            and item.get("kind") == "sleep"
            and item.get("tasks") == []
            and list(item) == _SLEEP_KEYS
        ):
            end = countdown[0]
            key = (round(max(0.0, end - loop_time), 3), round(loop_time - end, 3))
            shared = counted.get(key)
            if shared is None:
                shared = counted[key] = materialize_awaiting(item, loop_time)
            append(shared)
        else:
            append(materialize_awaiting(item, loop_time))
    return result


#: The keys of a compact snapshot body that schema 1 does not have.
_NOT_PLAIN: Final = frozenset({"awaits", "loop_time"})
#: `dump`'s JSON (`json.dumps` with ensure_ascii off): ", " and ": " between items.
_encode_schema = _small_value_encoder(json.JSONEncoder(ensure_ascii=False))
_encode_string = json.encoder.encode_basestring
_float_text = float.__repr__
_STATE_TEXTS: Final = tuple(_encode_schema(state) for state in TASK_STATES)
_ROW_KEY_SET: Final = frozenset(TASK_ROW_KEYS) | {"waiting_seen_at", "created_from"}
#: The extra keys that say only when the agent first saw a task (no warning is about them).
_SEEN_KEYS: Final = frozenset({"first_seen_at"})

#: How the JSON writer says each row value (`{}` is the value); a key not here is encoded as
#: it is. A value of another type than the agent sends is encoded as it is too: the text is
#: always `json.dumps` of the record `CompactDecoder` would make.
_STRING_TEXT: Final = "(S({}) if type({}) is str else E({}))"
#: A finite float as `json` writes it (its repr); None, an infinity or NaN through `E`.
_TIME_TEXT: Final = (
    "('null' if {} is None else F({}) if type({}) is float and {} - {} == 0.0 else E({}))"
)
_ROW_TEXTS: Final = {
    "id": _STRING_TEXT,
    "loop": _STRING_TEXT,
    "name": _STRING_TEXT,
    "state": "(STATES[{}] if type({}) is int else E({}))",
    "coro": "CORO[{}]",
    "stack": "STACK[{}]",
    "awaiting": "('null' if {} is None else AWAITS[{}] or AWAIT({}, row_id))",
    "awaited_by": "('[]' if {} == [] else E({}))",
    "parent": "('null' if {} is None else S({}) if type({}) is str else E({}))",
    "created_at": _TIME_TEXT,
    "finished_at": _TIME_TEXT,
}


def _row_writer() -> Callable[..., None]:
    """`write_rows(rows, into, CORO, STACK, AWAITS, AWAIT, TAIL, SEEN)`: the schema-1 JSON
    text of each row's record appended to `into`, as `json.dumps` (ensure_ascii off) writes
    the record `CompactDecoder` makes of it. Made from `TASK_ROW_KEYS`, as `_row_reader` is.
    CORO and STACK map an index to its text, AWAITS too (None: ask `AWAIT(index, task_id)`),
    SEEN a `waiting_seen_at` to its text (`_SeenTexts`), TAIL says the values of a row
    with extra keys after its row keys."""
    if "id" not in TASK_ROW_KEYS:  # pragma: no cover
        raise TypeError("task rows begin with their id")
    names = ", ".join(f"row_{key}" for key in TASK_ROW_KEYS)
    items = ", ".join(
        f'"{key}": {{' + _ROW_TEXTS.get(key, "E({})").replace("{}", f"row_{key}") + "}"
        for key in TASK_ROW_KEYS
    )
    source = (
        "def write_rows(rows, into, CORO, STACK, AWAITS, AWAIT, TAIL, SEEN):\n"
        "    append = into.append\n"
        "    for row in rows:\n"
        f"        {names}, *rest = row\n"
        "        if len(rest) == 2:\n"
        "            row_seen, origin = rest\n"
        "            tail = (\n"
        "                '' if row_seen is None\n"
        "                else SEEN[row_seen] if type(row_seen) is float\n"
        "                else SEEN.text(row_seen)\n"
        "            )\n"
        "            if origin is not None:\n"
        "                tail += ', \"created_from\": ' + STACK[origin]\n"
        "        else:\n"
        "            tail = TAIL(rest)\n"
        f'        append(f"""{{{{{items}{{tail}}}}}}""")\n'
    )
    namespace: dict[str, Any] = {
        "S": _encode_string,
        "E": _encode_schema,
        "F": _float_text,
        "STATES": _STATE_TEXTS,
    }
    exec(source, namespace)  # made of our own keys only: nothing from the wire
    writer: Callable[..., None] = namespace["write_rows"]
    return writer


_write_rows = _row_writer()


class CompactSnapshot:
    """A compact snapshot reply as received, its task rows not made into records: the
    schema-1 snapshot they stand for, read either as records (`records`, for a few rows) or
    written straight as its JSON text (`json_rows`), which is what `taskscope dump` prints
    and takes a fraction of the time of making 100,000 records and encoding them.

    `body` is the snapshot without its tasks (schema 1's keys, in order, `tasks` holding the
    rows). Words are the client's: `json_rows` is given the function that makes an
    `awaiting`'s `text` (`taskscope.words.schema_text`). Valid until the connection's next
    message is decoded (it reads the decoder's tables)."""

    def __init__(
        self,
        decoder: CompactDecoder,
        body: dict[str, Any],
        rows: list[Any],
        awaits: list[WireAwaiting],
        unsafe: bool,
    ) -> None:
        self._decoder = decoder
        self.body = body
        self.rows = rows
        #: Each `awaiting` the rows index, in its schema-1 form (countdowns counted).
        self.awaits = awaits
        self._unsafe = unsafe

    def __len__(self) -> int:
        return len(self.rows)

    def rows_about(self, awaits: Container[Any], ids: Container[Any]) -> list[Any]:
        """The rows whose record has keys beyond `TASK_ROW_KEYS`, `waiting_seen_at`,
        `created_from` and when the agent first saw it (`_SEEN_KEYS`: no warning is about
        them), whose `awaiting` is one of `awaits` (indexes into `awaits`) or whose id is in
        `ids`; and any malformed row (`records` says what is wrong with it)."""
        size = _ORIGIN_AT + 1
        seen_keys = _SEEN_KEYS
        return [
            row
            for row in self.rows
            if type(row) is not list
            or row[_AWAITING_AT] in awaits
            or row[0] in ids
            or (
                len(row) != size
                and (
                    len(row) != size + 1
                    or type(extras := row[-1]) is not dict
                    or not extras.keys() <= seen_keys
                )
            )
        ]

    def records(self, rows: Sequence[Any]) -> list[WireTask]:
        """The records of these rows, as `CompactDecoder.message` makes them (sharing the
        `awaits` objects). ValueError on a row that does not decode."""
        task, awaits = self._decoder._task, self.awaits
        try:
            return [task(row, awaits) for row in rows]
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"bad compact message: {error!r}") from None

    def json_rows(
        self, describe: Callable[[Mapping[str, Any], bool], str], chunk: int = CHUNK_ROWS
    ) -> Iterator[str]:
        """The JSON text of the tasks (`[...]`), in pieces of `chunk` rows: what `json.dumps`
        (ensure_ascii off, default separators), then `terminal_safe_json`, make of the
        records `CompactDecoder.message` makes and `fill_texts` gives words (`describe(
        awaiting, in_cycle)` makes an awaiting's `text`). ValueError on a row that does not
        decode, before any text of it."""
        decoder = self._decoder
        strings = decoder._strings
        in_cycle = {task_id for cycle in self.body.get("cycles") or () for task_id in cycle}
        awaits = self.awaits
        await_texts: list[str | None] = [None] * len(awaits)
        safe = terminal_safe_json
        coro = _Texts(lambda index: safe(_encode_schema(strings[index])))
        stack = _Texts(lambda index: safe(_encode_schema(decoder._stack(index))))

        by_object: dict[int, str] = {}  # id(awaiting) -> its text (for a task in no cycle)
        seen_text = _SeenTexts()

        def await_text(index: Any, task_id: Any) -> str:
            awaiting = awaits[index]  # an IndexError as the decoder's
            if task_id in in_cycle:
                return safe(_encode_schema({**awaiting, "text": describe(awaiting, True)}))
            text = by_object.get(id(awaiting))  # descriptions are shared (`awaits` holds them)
            if text is None:
                text = safe(_encode_schema({**awaiting, "text": describe(awaiting, False)}))
                by_object[id(awaiting)] = text
            if not in_cycle:
                await_texts[index] = text
            return text

        def tail(rest: list[Any]) -> str:
            # A ValueError for a row of another length, as decoding's.
            seen, origin, extras = rest
            text = "" if seen is None else seen_text.text(seen)
            if extras:
                if not isinstance(extras, dict) or not _ROW_KEY_SET.isdisjoint(extras):
                    raise _Irregular
                text += ", " + safe(_encode_schema(extras))[1:-1]
            return text + ("" if origin is None else ', "created_from": ' + stack[origin])

        rows = self.rows
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            texts: list[str] = []
            try:
                try:
                    _write_rows(part, texts, coro, stack, await_texts, await_text, tail, seen_text)
                except _Irregular:
                    texts = [self._record_text(row, describe, in_cycle) for row in part]
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
                raise ValueError(f"bad compact message: {error!r}") from None
            text = ", ".join(texts)
            if self._unsafe:
                text = safe(text)
            yield ("[" if not start else ", ") + text
        yield "[]" if not rows else "]"

    def _record_text(
        self,
        row: Any,
        describe: Callable[[Mapping[str, Any], bool], str],
        in_cycle: set[Any],
    ) -> str:
        """The text of one row the fast writer leaves aside, made the slow way."""
        (record,) = self.records([row])
        awaiting = record["awaiting"]
        if awaiting is not None:
            words = describe(awaiting, record["id"] in in_cycle)
            record["awaiting"] = {**awaiting, "text": words}
        return terminal_safe_json(_encode_schema(record))


class _Texts(dict[Any, str]):
    """Index -> text, each made once by `make` on first use (an index the tables lack raises
    as the decoder would). Only ints are indexes: a value of another type is refused."""

    def __init__(self, make: Callable[[Any], str]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, index: Any) -> str:
        if type(index) is not int:
            raise TypeError(f"index {index!r} is not an int")
        text = self[index] = self._make(index)
        return text


class _SeenTexts(dict[Any, str]):
    """A `waiting_seen_at` value -> its key and value as `json.dumps` writes them, each made
    once: the values are a few looks' times, shared by many rows. Keyed by float only (True
    equals 1.0 as a key, and is written `true`): any other value is written as it comes."""

    def text(self, value: Any) -> str:
        if type(value) is not float:
            return ', "waiting_seen_at": ' + terminal_safe_json(_encode_schema(value))
        return self[value]

    def __missing__(self, value: float) -> str:
        text = ', "waiting_seen_at": ' + (
            _float_text(value) if value - value == 0.0 else _encode_schema(value)
        )
        if len(self) < 4096:
            self[value] = text
        return text


class _Irregular(Exception):
    """A row whose extra keys the fast writer does not place (never sent by an agent)."""
