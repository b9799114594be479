"""The taskscope wire protocol: message shapes, framing, validation and the socket location.

Both sides import this module: the agent (inside the monitored process) and the client. It is
standard library only. Messages are JSON objects, one per line (newline-delimited JSON) over a
Unix domain socket; `docs/protocol.md` is the human description of what is defined here.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final, Literal, NotRequired, TypedDict

PROTOCOL_VERSION: Final = 2
#: How long the agent's reply to a cancel waits for the task's loop to deliver it: a client
#: expects a cancel to take that long on a blocked loop.
CANCEL_WAIT: Final = 1.0
#: The JSON schema version of a snapshot (`taskscope dump`), independent of the protocol.
SNAPSHOT_SCHEMA: Final = 1

#: Requests are tiny; anything longer is hostile or broken and closes the connection.
MAX_REQUEST_BYTES: Final = 64 * 1024
#: Replies can be large (100,000 tasks); the client still refuses absurd sizes.
MAX_REPLY_BYTES: Final = 1024 * 1024 * 1024

MIN_SUBSCRIBE_INTERVAL: Final = 0.05
MAX_SUBSCRIBE_INTERVAL: Final = 60.0
MAX_CANCEL_MESSAGE: Final = 200
MAX_TASK_ID_LENGTH: Final = 20
MAX_ENCODING_NAME: Final = 64

#: Wire encodings of snapshots and deltas a client may ask for in `hello` (see "Compact
#: encoding" in docs/protocol.md). "plain" is the schema-1 JSON itself, and the default.
PLAIN: Final = "plain"
#: The third compact encoding (awaiting descriptions are facts without words; countdowns
#: travel as the times they end at). An agent asked for a name it does not know, such as the
#: earlier "compact" and "compact2", answers in plain JSON, which a client of theirs reads.
COMPACT: Final = "compact3"
ENCODINGS: Final[frozenset[str]] = frozenset({PLAIN, COMPACT})

RequestType = Literal["hello", "snapshot", "subscribe", "stack", "cancel", "detach"]
REQUEST_TYPES: Final[frozenset[str]] = frozenset(
    {"hello", "snapshot", "subscribe", "stack", "cancel", "detach"}
)

TaskState = Literal["pending", "done", "cancelled", "failed"]
#: `requested`: the task's loop delivered the cancel; `queued`: its loop did not run within
#: a second (blocked) and will deliver it when it runs again; `failed`: it could not be
#: delivered (the reply's `error` says why).
CancelOutcome = Literal["requested", "already_finished", "no_such_task", "queued", "failed"]

ErrorCode = Literal[
    "bad_request",
    "unknown_type",
    "too_large",
    "version_mismatch",
    "no_such_task",
    "internal",
    "busy",
    "timeout",
    "evicted",
    "forbidden",
]


# --- Wire records: what a snapshot says (also the `taskscope dump` JSON contract) -----------


class WireFrame(TypedDict):
    function: str
    file: str
    line: int | None


class WireAwaiting(TypedDict):
    """What a suspended task waits for, as facts: no words (`taskscope.words` makes them)."""

    kind: str
    # Sequences are lists on the wire; the agent keeps tuples (see `_stack_entry`).
    tasks: Sequence[str]
    # The sentence for it, in schema 1 only: filled in on the client side by
    # `taskscope.words.fill_texts` (the agent never sends words).
    text: NotRequired[str]
    # The asyncio call it is suspended in, as `Class.method` of the object's own class
    # (`Queue.get`, `BoundedSemaphore.acquire`, `loop.sock_recv`, `to_thread`...).
    call: NotRequired[str]
    # Optional facts, present when known: seconds to a sleep's end or to a timeout deadline,
    # the object waited on (type, id, size...), a peer address, a callee.
    seconds_left: NotRequired[float | None]
    deadline_in: NotRequired[float | None]
    # How long ago a sleep's end or a deadline passed while the loop has not acted on it.
    seconds_overdue: NotRequired[float]
    deadline_overdue: NotRequired[float]
    object: NotRequired[dict[str, Any]]
    peer: NotRequired[str | None]
    # wait_for: what its awaitable waits for (a description without countdown: the inner
    # sleep's end is this description's own countdown).
    inner: NotRequired[WireAwaiting]
    # Inside the agent and in the compact encoding only (never in schema 1): see "Countdowns".
    countdown: NotRequired[Sequence[Any]]


# A task record's fields are declared here, once: `WireTaskRow` has the keys every record
# has, in their order (also the positions of a compact row: `TASK_ROW_KEYS`), `WireTask` adds
# the keys a record has only when they say something (`TASK_OPTIONAL_KEYS`). The agent's
# records, the compact encoder and decoder and the client's model follow from them.


class WireTaskRow(TypedDict):
    """The keys of every task record, in the order records (and compact rows) have them."""

    id: str
    loop: str
    name: str
    state: TaskState
    coro: str
    stack: Sequence[WireFrame]
    awaiting: WireAwaiting | None
    awaited_by: Sequence[str]
    parent: str | None
    created_at: float | None
    finished_at: float | None


class WireTask(WireTaskRow, total=False):
    """A task record: `WireTaskRow`, then these keys, each only when it says something
    (`created_from` last)."""

    running: bool
    result: str
    exception: str
    first_seen_at: float
    cancel_requested_at: float
    created_from: Sequence[WireFrame]


class WireLoop(TypedDict):
    id: str
    thread_id: int | None
    thread_name: str | None
    running: bool
    closed: bool
    blocked_for: float | None
    lag: float | None
    blocking_stack: list[WireFrame]
    type: str
    tasks: int
    # The task the loop's `run_until_complete` waits for (the main task of `asyncio.run`).
    main_task: NotRequired[str | None]
    # A look at several processes (taskscope/fleet.py): the process the loop runs in.
    pid: NotRequired[int]


class WireProcess(TypedDict):
    """One process of a look at several (a parent and its workers), in `processes`."""

    pid: int
    role: str
    python: str
    loops: int
    tasks: int


class WireSnapshot(TypedDict):
    schema: int
    pid: int
    python: str
    taken_at: float
    loops: list[WireLoop]
    tasks: list[WireTask]
    cycles: list[list[str]]
    history_limit: int
    history_since: NotRequired[float]
    # Inside the agent and in the compact encoding only: the loop clock at `taken_at`.
    loop_time: NotRequired[float]
    # A look read from the process's memory (3.14+, no agent): what it could not know.
    read_only: NotRequired[list[str]]
    # A look at several processes (taskscope/fleet.py): which ones, the parent (`pid`) first.
    processes: NotRequired[list[WireProcess]]


class WireDelta(TypedDict):
    taken_at: float
    loops: list[WireLoop]
    changed: list[WireTask]
    removed: list[str]
    cycles: list[list[str]]
    #: How long the agent took to build the snapshot this delta comes from, in seconds.
    build_seconds: NotRequired[float]
    loop_time: NotRequired[float]


# --- Countdowns ------------------------------------------------------------------------------
#
# A sleep's seconds left and a timeout's deadline change as time passes while the task does
# not move. Inside the agent, and in the compact encoding, an `awaiting` description holds
# them as the loop-clock times they end at, `countdown`: [sleep end or null, deadline or
# null]; the snapshot carries the loop clock (`loop_time`). So the description of a task that
# did not move stays the same object, and comparing two snapshots, or caching what was
# encoded, needs no tolerance. `materialize_awaiting` turns it into the schema-1 numbers:
# `seconds_left`, `deadline_in` and how overdue they are. Both sides call it, so both get the
# same numbers; the words for them are made on the client side (`taskscope.words`).


def materialize_awaiting(awaiting: WireAwaiting, loop_time: float | None) -> WireAwaiting:
    """The schema-1 form of a description (itself when it has no countdown). Raises
    TypeError or ValueError on a malformed countdown."""
    countdown = awaiting.get("countdown")
    if countdown is None:
        return awaiting
    sleep_end, deadline = countdown[0], countdown[1]
    if loop_time is None:
        raise ValueError("a countdown without the loop time")
    result: dict[str, Any] = {key: value for key, value in awaiting.items() if key != "countdown"}
    if sleep_end is not None:
        result["seconds_left"] = round(max(0.0, float(sleep_end) - loop_time), 3)
        late = round(loop_time - float(sleep_end), 3)
        if late > 0:  # the loop has not woken it: blocked, or busy
            result["seconds_overdue"] = late
    if deadline is not None:
        result["deadline_in"] = round(max(0.0, float(deadline) - loop_time), 3)
        late = round(loop_time - float(deadline), 3)
        if late > 0:
            result["deadline_overdue"] = late
    return result  # type: ignore[return-value]


def materialize_record(record: WireTask, loop_time: float | None) -> WireTask:
    """The schema-1 form of a task record (itself when it has no countdown)."""
    awaiting = record["awaiting"]
    if awaiting is None or "countdown" not in awaiting:
        return record
    result = record.copy()
    result["awaiting"] = materialize_awaiting(awaiting, loop_time)
    return result


def materialize_body(body: dict[str, Any], rows_key: str) -> dict[str, Any]:
    """The schema-1 form of a snapshot or delta body: countdowns counted, `loop_time` gone."""
    loop_time = body.get("loop_time")
    result = {key: value for key, value in body.items() if key != "loop_time"}
    result[rows_key] = [materialize_record(record, loop_time) for record in body[rows_key]]
    return result


# --- Requests --------------------------------------------------------------------------------


class ProtocolError(Exception):
    """A message that breaks the protocol; `code` goes back to the peer in an error reply."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code


@dataclass(frozen=True, slots=True)
class Request:
    """A validated request from a client. Only the fields of its `type` are meaningful."""

    type: RequestType
    request_id: int | None = None
    protocol: int | None = None
    interval: float = 0.5
    task_id: str | None = None
    message: str | None = None
    include_finished: bool = True
    #: hello only: the encoding the client asks for (None: it did not ask, plain it is).
    encoding: str | None = None


def _optional_int(raw: dict[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value < 2**53:
        raise ProtocolError("bad_request", f"{key!r} must be a non-negative integer")
    return value


def _task_id(raw: dict[str, Any]) -> str:
    value = raw.get("task")
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_TASK_ID_LENGTH
        or not value.isascii()
        or not value.isdigit()
    ):
        raise ProtocolError("bad_request", "'task' must be a task id (a string of digits)")
    return value


def parse_request(line: bytes) -> Request:
    """Validate one request line; raise ProtocolError for anything malformed."""
    if len(line) > MAX_REQUEST_BYTES:
        raise ProtocolError("too_large", f"requests are limited to {MAX_REQUEST_BYTES} bytes")
    # UTF-8 only: json.loads would also take UTF-16, UTF-32 and a byte-order mark.
    if line.startswith(b"\xef\xbb\xbf"):
        raise ProtocolError("bad_request", "requests are UTF-8 without a byte-order mark")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("bad_request", "requests are UTF-8") from None
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_request", "a request must be one JSON object per line") from None
    if not isinstance(raw, dict):
        raise ProtocolError("bad_request", "a request must be a JSON object")
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_request", "'type' must be a string")
    if kind not in REQUEST_TYPES:
        raise ProtocolError("unknown_type", f"unknown request type {kind[:40]!r}")
    request_id = _optional_int(raw, "id")
    if kind == "hello":
        protocol = _optional_int(raw, "protocol")
        if protocol is None:
            raise ProtocolError("bad_request", "hello needs 'protocol'")
        encoding = raw.get("encoding")
        if encoding is not None and (
            not isinstance(encoding, str) or len(encoding) > MAX_ENCODING_NAME
        ):
            raise ProtocolError("bad_request", "'encoding' must be the name of an encoding")
        return Request("hello", request_id, protocol=protocol, encoding=encoding)
    if kind == "snapshot":
        include = raw.get("include_finished", True)
        if not isinstance(include, bool):
            raise ProtocolError("bad_request", "'include_finished' must be a boolean")
        return Request("snapshot", request_id, include_finished=include)
    if kind == "subscribe":
        interval = raw.get("interval", 0.5)
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            raise ProtocolError("bad_request", "'interval' must be a number of seconds")
        if not MIN_SUBSCRIBE_INTERVAL <= interval <= MAX_SUBSCRIBE_INTERVAL:
            raise ProtocolError(
                "bad_request",
                f"'interval' must be between {MIN_SUBSCRIBE_INTERVAL} and {MAX_SUBSCRIBE_INTERVAL}",
            )
        return Request("subscribe", request_id, interval=float(interval))
    if kind == "stack":
        return Request("stack", request_id, task_id=_task_id(raw))
    if kind == "detach":
        return Request("detach", request_id)
    message = raw.get("message")
    if message is not None and (not isinstance(message, str) or len(message) > MAX_CANCEL_MESSAGE):
        raise ProtocolError(
            "bad_request", f"'message' must be a string of at most {MAX_CANCEL_MESSAGE} characters"
        )
    return Request("cancel", request_id, task_id=_task_id(raw), message=message)


def request_to_wire(request: Request) -> dict[str, Any]:
    """The JSON object a client sends for `request`."""
    wire: dict[str, Any] = {"type": request.type}
    if request.request_id is not None:
        wire["id"] = request.request_id
    if request.type == "hello":
        wire["protocol"] = request.protocol
        if request.encoding is not None:
            wire["encoding"] = request.encoding
    elif request.type == "snapshot":
        wire["include_finished"] = request.include_finished
    elif request.type == "subscribe":
        wire["interval"] = request.interval
    elif request.type == "stack":
        wire["task"] = request.task_id
    elif request.type == "cancel":
        wire["task"] = request.task_id
        if request.message is not None:
            wire["message"] = request.message
    return wire


# --- Replies ---------------------------------------------------------------------------------
#
# What the agent sends back. A reply to a request carries the request's `id` as `re` (when it
# had one); an error that answers no request in particular has no `re` or a null one.


class HelloReply(TypedDict):
    type: Literal["hello"]
    re: NotRequired[int]
    protocol: int
    #: The agent's taskscope version.
    agent: str
    pid: int
    python: str
    executable: str
    argv: list[str]
    started_at: float
    #: Present when the hello asked for an encoding: the one this connection uses.
    encoding: NotRequired[str]


class SnapshotReply(TypedDict):
    type: Literal["snapshot"]
    re: NotRequired[int]
    snapshot: WireSnapshot


class DeltaMessage(TypedDict):
    """Pushed to a subscribed connection every interval (no `re`)."""

    type: Literal["delta"]
    delta: WireDelta


class StackFrame(WireFrame):
    """A frame of a `stack` reply: a `WireFrame` with its line of source (None: unreadable)."""

    source: str | None


class StackReply(TypedDict):
    type: Literal["stack"]
    re: NotRequired[int]
    task: str
    #: False: no such task, pending or in the history.
    found: bool
    #: Outermost first; empty for a finished task.
    stack: list[StackFrame]
    #: A pending task's creation site (empty when unknown).
    created_from: NotRequired[list[StackFrame]]
    #: A finished task's record.
    record: NotRequired[WireTask]


class CancelReply(TypedDict):
    type: Literal["cancel"]
    re: NotRequired[int]
    task: str
    outcome: CancelOutcome
    #: Why a cancel `failed`.
    error: NotRequired[str]


class DetachReply(TypedDict):
    type: Literal["detach"]
    re: NotRequired[int]
    outcome: Literal["detaching"]


class ErrorReply(TypedDict):
    type: Literal["error"]
    re: NotRequired[int | None]
    code: ErrorCode
    message: str
    #: version_mismatch: the protocol the agent speaks.
    protocol: NotRequired[int]
    #: busy: the pids of the processes holding the agent's connections.
    clients: NotRequired[list[int]]
    #: forbidden: the uid the agent serves.
    uid: NotRequired[int]


#: Every message an agent sends (after the compact encoding, if any, is undone).
Reply = (
    HelloReply | SnapshotReply | DeltaMessage | StackReply | CancelReply | DetachReply | ErrorReply
)


# --- Framing ---------------------------------------------------------------------------------

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def _small_value_encoder() -> Callable[[Any], str]:
    """`_encoder.encode` without its set-up cost per call (half the time for a short list):
    the C encoder it builds on each call, built once. Checked against it on a sample, and
    left aside wherever it is missing or differs."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _encoder.encode
    try:
        encoder = make(
            None,
            _encoder.default,
            json.encoder.encode_basestring,
            None,
            ":",
            ",",
            False,
            False,
            True,
        )
        sample = ["é\n\x00", 1.5, 1795600000.123456, None, True, {"k": [1, -2]}, []]
        if "".join(encoder(sample, 0)) != _encoder.encode(sample):
            return _encoder.encode
    except Exception:
        return _encoder.encode
    return lambda value: "".join(encoder(value, 0))


_encode_small = _small_value_encoder()


#: Characters JSON may carry raw that a terminal acts on or hides: DEL and the C1 controls
#: (U+009B starts an escape sequence in many terminals), zero-width characters, line and
#: paragraph separators, bidi embeddings, overrides and isolates, the byte-order mark, and
#: lone surrogates (not UTF-8 at all).
_TERMINAL_UNSAFE = re.compile(
    "[\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)


def terminal_safe_json(text: str) -> str:
    """JSON text with every terminal-unsafe character written as a \\uXXXX escape: the same
    JSON value, inert when printed. Such characters only ever occur inside JSON strings,
    where the escape means the character itself."""
    return _TERMINAL_UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def encode(message: dict[str, Any] | Any) -> bytes:
    """One message as a line of UTF-8 JSON. JSON escapes newlines inside strings."""
    return _encoder.encode(message).encode("utf-8", "surrogatepass") + b"\n"


# --- The compact encoding ------------------------------------------------------------------
#
# Negotiated in hello. Snapshot and delta messages then carry their tasks as rows (arrays in
# a fixed order) whose stacks, `created_from` and coroutine names are indexes into tables that
# grow for as long as the connection lives: each message sends only the entries the client
# lacks (`intern`). Their `awaiting` objects are indexes into the message's `awaits`, with
# countdowns as end times (see "Countdowns"). Everything else is the schema-1 JSON
# unchanged. docs/protocol.md, "Compact encoding".

#: The first positions of a compact task row, the keys of `WireTaskRow` in their order; then
#: `created_from` (a stack index or null when the record has none) and, only when the record
#: has other keys, an object of them.
TASK_ROW_KEYS: Final[tuple[str, ...]] = tuple(WireTaskRow.__annotations__)
#: The keys a task record has only when they say something.
TASK_OPTIONAL_KEYS: Final[tuple[str, ...]] = tuple(
    key for key in WireTask.__annotations__ if key not in TASK_ROW_KEYS
)
#: Where the row keys whose values a row encodes (rather than carries as they are) sit.
_STATE_AT: Final = TASK_ROW_KEYS.index("state")
_CORO_AT: Final = TASK_ROW_KEYS.index("coro")
_STACK_AT: Final = TASK_ROW_KEYS.index("stack")
_AWAITING_AT: Final = TASK_ROW_KEYS.index("awaiting")
#: Where a row's `created_from` index sits, after the row keys.
_ORIGIN_AT: Final = len(TASK_ROW_KEYS)
#: `state` codes in rows (a state missing here travels as its string).
TASK_STATES: Final[tuple[str, ...]] = ("pending", "done", "cancelled", "failed")
_STATE_CODES: Final = {state: code for code, state in enumerate(TASK_STATES)}
_ROW_VALUES = itemgetter(*TASK_ROW_KEYS)
_NOT_EXTRA: Final = frozenset(TASK_ROW_KEYS) | {"created_from"}
_FRAME_VALUES = itemgetter("function", "file", "line")
#: Rows per piece of an encoded message (see `CompactEncoder.encode_chunks`).
CHUNK_ROWS: Final = 2000
#: While encoding, the agent's thread gives the GIL away (`time.sleep(0)`) this often, so
#: that the host's loop thread never waits for it longer (the switch interval is 5 ms).
SLICE_SECONDS: Final = 0.001
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
        #: id(record) -> (row text before the `awaiting` index, row text after it): a tuple
        #: of strings, which the host's garbage collector stops tracking, where one holding
        #: the record would be one more object per task in every full collection.
        self._rows: dict[int, tuple[str, str]] = {}
        #: id(record) -> record, for the rows in `_rows` (so that an id is not reused).
        self._row_records: dict[int, Any] = {}
        #: id(awaiting) -> (awaiting, its JSON text)
        self._awaits: dict[int, tuple[Any, str]] = {}

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
        cached, pinned = self._rows, self._row_records
        parts, awaits = into if into is not None else ([], [])
        await_index: dict[int, int] = {}
        clock, give_way = time.perf_counter, time.sleep
        give_way_at = clock() + SLICE_SECONDS
        count = 0
        for record in records:
            count += 1
            if not count & 127 and clock() >= give_way_at:
                give_way(0)
                give_way_at = clock() + SLICE_SECONDS
            row = cached.get(id(record))
            if row is None or pinned.get(id(record)) is not record:
                row = self._row(record, remember)
            awaiting = record["awaiting"]
            if awaiting is None:
                parts.append(row[0] + "null" + row[1])
                continue
            ref = await_index.get(id(awaiting))
            if ref is None:
                ref = await_index[id(awaiting)] = len(awaits)
                awaits.append(self._await_text(awaiting, remember))
            parts.append(f"{row[0]}{ref}{row[1]}")
        if remember and len(cached) > 2 * len(records) + 4096:  # drop records gone since
            keep = {id(record) for record in records}
            self._rows = {key: row for key, row in cached.items() if key in keep}
            self._row_records = {key: row for key, row in pinned.items() if key in keep}
            self._awaits.clear()
        return parts, awaits

    def _row(self, record: WireTask, remember: bool) -> tuple[str, str]:
        """A record's row as the text before its `awaiting` index and the text after it."""
        values: list[Any] = list(_ROW_VALUES(record))
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
        head = values[:_AWAITING_AT]
        tail = values[_AWAITING_AT + 1 :]
        tail.append(origin_index)
        if len(record) > _ORIGIN_AT + (origin is not None):
            tail.append({k: v for k, v in record.items() if k not in _NOT_EXTRA})
        row = (_encode_small(head)[:-1] + ",", "," + _encode_small(tail)[1:])
        if remember:
            self._rows[id(record)] = row
            self._row_records[id(record)] = record
        return row

    def _await_text(self, awaiting: Any, remember: bool) -> str:
        known = self._awaits.get(id(awaiting))
        if known is not None and known[0] is awaiting:
            return known[1]
        text = _encode_small(awaiting)
        if remember:
            self._awaits[id(awaiting)] = (awaiting, text)
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
        with tables.lock:
            rows, awaits = tables.row_texts(
                message[kind][rows_key], remember=kind == "snapshot", into=tables.scratch
            )
            try:
                return self._pieces(message, kind, rows_key, rows, awaits)
            finally:
                rows.clear()
                awaits.clear()

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
        clock, give_way = time.perf_counter, time.sleep
        give_way_at = clock() + SLICE_SECONDS
        for opening, texts, closing in ((head, rows, middle), ("", awaits, tail + "\n")):
            pieces = [opening + "["]
            for start in range(0, len(texts), CHUNK_ROWS):
                if clock() >= give_way_at:
                    give_way(0)
                    give_way_at = clock() + SLICE_SECONDS
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
        """A row back to its record: `TASK_ROW_KEYS` from the row's first positions, the
        other keys (if any) from its object, `created_from` last."""
        record, rest = _read_row(row, self._strings, self._stack, awaits)
        if len(rest) > 1:  # the record's other keys
            (others,) = rest[1:]
            record.update(others)
        origin = rest[0]
        if origin is not None:
            record["created_from"] = self._stack(origin)
        return record


class LineBuffer:
    """Splits a byte stream into lines, refusing any line longer than `limit`."""

    __slots__ = ("_chunks", "_limit", "_pending")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._pending = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Yield each complete line in `data` (without its newline); raise ProtocolError if a
        line grows past the limit."""
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self._chunks:
                self._chunks.append(data[start:end])
                line = b"".join(self._chunks)
                self._chunks.clear()
                self._pending = 0
            else:
                line = data[start:end]
            if len(line) > self._limit:
                raise ProtocolError("too_large", f"message longer than {self._limit} bytes")
            yield line
            start = end + 1
        rest = data[start:]
        if rest:
            self._pending += len(rest)
            if self._pending > self._limit:
                raise ProtocolError("too_large", f"message longer than {self._limit} bytes")
            self._chunks.append(rest)


# --- Where agents listen ---------------------------------------------------------------------


class InsecureDirectory(Exception):
    """The socket directory exists but could be read or written by someone else."""


def socket_directory(
    environ: Mapping[str, str] | None = None, uid: int | None = None, root: str | None = None
) -> str:
    """The per-user directory holding agent sockets (not created here): ours, or that of a
    process with environment `environ` and owner `uid` whose root, when not ours, we reach
    through `root` (the path returned is as that process names it)."""
    environ = os.environ if environ is None else environ
    uid = os.getuid() if uid is None else uid
    override = environ.get("TASKSCOPE_SOCKET_DIR")
    if override:
        return override
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        seen = runtime if root is None else root + runtime
        try:
            info = os.stat(seen)
        except OSError:
            info = None
        if info is not None and stat.S_ISDIR(info.st_mode) and info.st_uid == uid:
            return os.path.join(runtime, "taskscope")
    return os.path.join("/tmp", f"taskscope-{uid}")


def fallback_socket_directory() -> str | None:
    """Where agents listen when the usual directory is not private (another user made
    `/tmp/taskscope-UID` first): a directory in the user's home, which nobody else can
    create. None when there is no home, or its path is too long for a socket."""
    try:
        home = os.path.expanduser("~")
    except Exception:
        return None
    if not home or home == "~" or not os.path.isabs(home):
        return None
    path = os.path.join(home, ".taskscope-sockets")
    # A socket path is limited to 107 bytes; the longest pid has 7 digits.
    return path if len(os.fsencode(path)) + len("/4194304.sock") <= 107 else None


def socket_directories() -> list[str]:
    """Where a client looks for agents: the usual directory, then the fallback (unless the
    user chose one with $TASKSCOPE_SOCKET_DIR)."""
    primary = socket_directory()
    if os.environ.get("TASKSCOPE_SOCKET_DIR"):
        return [primary]
    fallback = fallback_socket_directory()
    return [primary] if fallback is None or fallback == primary else [primary, fallback]


def directory_is_private(path: str) -> bool:
    """Whether `path` is a directory of ours that nobody else can read or write."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def ensure_private_directory(path: str) -> None:
    """Create `path` with mode 0700, or check that the existing one is ours and private."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise InsecureDirectory(f"{path} is not a directory")
    if info.st_uid != os.getuid():
        raise InsecureDirectory(f"{path} belongs to uid {info.st_uid}, not to us")
    if info.st_mode & 0o077:
        raise InsecureDirectory(f"{path} is readable or writable by others")


def socket_path(pid: int, directory: str | None = None) -> str:
    """Where the agent of process `pid` listens."""
    return os.path.join(directory or socket_directory(), f"{pid}.sock")
