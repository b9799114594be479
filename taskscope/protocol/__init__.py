"""The taskscope wire protocol: message shapes, framing, validation and the socket location.

Both sides import this module: the agent (inside the monitored process) and the client. It is
standard library only. Messages are JSON objects, one per line (newline-delimited JSON) over a
Unix domain socket; `docs/protocol.md` is the human description of what is defined here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
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
#: The fourth compact encoding (awaiting descriptions are facts without words; countdowns
#: travel as the times they end at; a pending task's `waiting_seen_at` has a place of its own
#: in its row). An agent asked for a name it does not know, such as the earlier "compact" to
#: "compact3", answers in plain JSON, which a client of theirs reads.
COMPACT: Final = "compact4"
ENCODINGS: Final[frozenset[str]] = frozenset({PLAIN, COMPACT})

RequestType = Literal[
    "hello", "snapshot", "subscribe", "stack", "cancel", "detach", "flight", "time_steps"
]
REQUEST_TYPES: Final[frozenset[str]] = frozenset(
    {"hello", "snapshot", "subscribe", "stack", "cancel", "detach", "flight", "time_steps"}
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
    "flight_off",
    "unavailable",
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
    # Inside the agent a plain sleep's is its end alone, a float (see `countdown_parts`).
    countdown: NotRequired[Sequence[Any] | float]


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


class WireRequest(TypedDict):
    """The web request a task serves: `{"method": "GET", "path": "/items/7"}`, and once the
    application matched a route, its path template: `"route": "/items/{item_id}"`."""

    method: str
    path: str
    route: NotRequired[str]


class WireTask(WireTaskRow, total=False):
    """A task record: `WireTaskRow`, then these keys, each only when it says something
    (`created_from` last)."""

    # A pending task suspended on a future: Unix time of the first look that found it
    # suspended on that very future (the wait began before, maybe long before the first look).
    # First of these keys: in a compact row it has a place of its own (`COMPACT_ROW_KEYS`).
    waiting_seen_at: float
    running: bool
    result: str
    exception: str
    first_seen_at: float
    cancel_requested_at: float
    # Runtime figures (issue 12), when the agent times steps: how many steps the task ran, the
    # seconds spent in them, its longest one, when it last ran and since when it has waited in
    # its current wait (wall clock).
    steps: int
    busy_s: float
    longest_step_s: float
    last_ran_at: float
    waiting_since: float
    # A failed task: its formatted traceback (bounded), and whether anyone retrieved the
    # exception (awaited the task, or called result()/exception()).
    traceback: str
    exception_retrieved: bool
    # A pending task that nothing but asyncio's weak registry and its own wait keeps alive: the
    # collector may destroy it mid-run ("Task was destroyed but it is pending!").
    unreferenced: bool
    # A pending task whose cancel was delivered and that goes on (it caught the CancelledError
    # without `uncancel()`: asyncio's `Task.cancelling()` stays above 0): since when the agent
    # has seen it so, Unix time.
    cancelling_since: float
    # The web request a pending task serves (uvicorn's and aiohttp's request tasks): `method`
    # (`WEBSOCKET` for a websocket) and `path`, without its query string.
    request: WireRequest
    # A pending task whose chain of coroutines is deeper than the agent sends (a recursion):
    # [where, how many]: that many coroutines are left out before `stack[where]`; the stack
    # has the outermost and the innermost frames.
    stack_left_out: Sequence[int]
    created_from: Sequence[WireFrame]


class WireStall(TypedDict):
    """One step that held a loop longer than its stall threshold (issue 12)."""

    # Wall-clock start and length of the step, in seconds.
    started_at: float
    duration: float
    # The task whose step it was (id and name, kept even after the task is gone), or else the
    # callback that ran (its qualified name), None when neither is known.
    task: str | None
    task_name: str | None
    callback: str | None
    # The loop thread's stack sampled while the step still ran: the blocking line is there.
    stack: list[WireFrame]
    # Still running when the snapshot was taken.
    ongoing: NotRequired[bool]
    # The web request the task served (`WireTask.request`), read while the step ran.
    request: NotRequired[WireRequest]


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
    # Runtime figures (issue 12), when the agent times steps: steps per second and the share
    # of time spent in steps (0-1), both over the last second or so; the steps longer than
    # `stall_threshold` seconds, oldest first, bounded.
    steps_per_s: NotRequired[float]
    busy_share: NotRequired[float]
    stall_threshold: NotRequired[float]
    stalls: NotRequired[list[WireStall]]
    # A trio run: Unix time from which the agent sees its tasks spawn and end (their
    # creators, and the history); absent while it does not (tasks not tracked).
    spawns_seen_since: NotRequired[float]
    spawns_watch_pending: NotRequired[bool]


class WireProcess(TypedDict):
    """One process of a look at several (a parent and its workers), in `processes`."""

    pid: int
    role: str
    python: str
    loops: int
    tasks: int


class WireWarning(TypedDict):
    """A warning (`taskscope.lints`), as `taskscope dump` adds them: found and worded on the
    client side, never sent by the agent."""

    kind: str
    tasks: list[str]
    text: str


class WireGilWait(TypedDict):
    """How long the program kept the agent's thread from the GIL, and the switch interval
    the agent holds lowered meanwhile (`taskscope.agent.gil`)."""

    longest: float | None
    at: float | None
    lowered_from: float | None
    lowered_to: float | None


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
    # `taskscope dump` only (the client finds them, issue 12): the snapshot's warnings.
    warnings: NotRequired[list[WireWarning]]
    # Once the program kept the agent from the GIL, or while the agent lowered the interval.
    gil_wait: NotRequired[WireGilWait]


class WireDelta(TypedDict):
    taken_at: float
    loops: list[WireLoop]
    changed: list[WireTask]
    removed: list[str]
    cycles: list[list[str]]
    #: How long the agent took to build the snapshot this delta comes from, in seconds.
    build_seconds: NotRequired[float]
    loop_time: NotRequired[float]
    gil_wait: NotRequired[WireGilWait]


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


def countdown_parts(countdown: Any) -> tuple[Any, Any]:
    """(sleep end, deadline) of a countdown: a pair, or inside the agent a plain sleep's end
    alone (a float), so that a sleep's description holds no tuple: a dictionary of untracked
    values is not tracked by the garbage collector on 3.11-3.13, and a look makes one per
    new sleep. The compact encoding sends the pair. TypeError or IndexError on another."""
    if not isinstance(countdown, tuple | list):
        return countdown, None
    return countdown[0], countdown[1]


def materialize_awaiting(awaiting: WireAwaiting, loop_time: float | None) -> WireAwaiting:
    """The schema-1 form of a description (itself when it has no countdown). Raises
    TypeError or ValueError on a malformed countdown."""
    countdown = awaiting.get("countdown")
    if countdown is None:
        return awaiting
    sleep_end, deadline = countdown_parts(countdown)
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


def stack_left_out(record: WireTask | Mapping[str, Any]) -> tuple[int, int] | None:
    """A record's `stack_left_out` as (where, count) when it is a place and a count of
    coroutines, else None (absent, or not what the agent sends)."""
    value = record.get("stack_left_out")
    if isinstance(value, list | tuple) and len(value) == 2:
        at, count = value
        if type(at) is int and type(count) is int and at >= 0 and count > 0:
            return at, count
    return None


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
    #: time_steps only: whether the agent is to time every step from now on.
    on: bool = False


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
    if kind == "flight":
        return Request("flight", request_id)
    if kind == "time_steps":
        on = raw.get("on")
        if not isinstance(on, bool):
            raise ProtocolError("bad_request", "'on' must be true or false")
        return Request("time_steps", request_id, on=on)
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
    elif request.type == "time_steps":
        wire["on"] = request.on
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
    #: A chain of coroutines too deep to send whole (a recursion) is sent as its outermost
    #: and innermost frames: `left_out` coroutines were left out before `stack[left_out_at]`.
    left_out: NotRequired[int]
    left_out_at: NotRequired[int]
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


class TimeStepsReply(TypedDict):
    """The answer to `time_steps`: whether the agent times every step now."""

    type: Literal["time_steps"]
    re: NotRequired[int]
    on: bool


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
class FlightReply(TypedDict):
    """The answer to `flight`: what the agent's flight recorder holds, oldest first: the
    state at its start (`base`, a schema-1 snapshot) and each change after it (`deltas`)."""

    type: Literal["flight"]
    re: NotRequired[int]
    window: float
    base: WireSnapshot
    deltas: list[WireDelta]


Reply = (
    HelloReply
    | SnapshotReply
    | DeltaMessage
    | StackReply
    | CancelReply
    | DetachReply
    | FlightReply
    | TimeStepsReply
    | ErrorReply
)


# --- Framing ---------------------------------------------------------------------------------

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def _small_value_encoder(encoder: json.JSONEncoder = _encoder) -> Callable[[Any], str]:
    """`encoder.encode` (ensure_ascii off, no indent) without its set-up cost per call (half
    the time for a short list): the C encoder it builds on each call, built once. Checked
    against it on a sample, and left aside wherever it is missing or differs."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encoder.encode
    try:
        c_encoder = make(
            None,
            encoder.default,
            json.encoder.encode_basestring,
            None,
            encoder.key_separator,
            encoder.item_separator,
            False,
            False,
            True,
        )
        sample = ["é\n\x00", 1.5, 1795600000.123456, None, True, {"k": [1, -2]}, []]
        if "".join(c_encoder(sample, 0)) != encoder.encode(sample):
            return encoder.encode
    except Exception:
        return encoder.encode
    return lambda value: "".join(c_encoder(value, 0))


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


def terminal_safe_line(line: bytes) -> bool:
    """Whether a line of UTF-8 JSON holds no character `terminal_safe_json` would escape,
    not even written as a \\u escape (True: what it decodes to needs no escaping)."""
    if b"\\u" in line:
        return False
    if line.isascii():
        return True
    return _TERMINAL_UNSAFE.search(line.decode("utf-8", "surrogatepass")) is None


def encode(message: dict[str, Any] | Any) -> bytes:
    """One message as a line of UTF-8 JSON. JSON escapes newlines inside strings."""
    return _encoder.encode(message).encode("utf-8", "surrogatepass") + b"\n"


#: The keys of `WireTaskRow` in their order: the first positions of a compact task row; then
#: `waiting_seen_at` (null when the record has none), `created_from` (a stack index or null
#: when the record has none) and, only when the record has other keys, an object of them.
TASK_ROW_KEYS: Final[tuple[str, ...]] = tuple(WireTaskRow.__annotations__)
#: The keys a task record has only when they say something.
TASK_OPTIONAL_KEYS: Final[tuple[str, ...]] = tuple(
    key for key in WireTask.__annotations__ if key not in TASK_ROW_KEYS
)


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


# The compact encoding and the socket directory live in modules of their own; their names
# are the protocol's, imported from here by both sides.
from taskscope.protocol.compact import (
    CHUNK_ROWS as CHUNK_ROWS,
    MAX_PINNED as MAX_PINNED,
    MAX_TABLE_ENTRIES as MAX_TABLE_ENTRIES,
    TASK_STATES as TASK_STATES,
    CompactDecoder as CompactDecoder,
    CompactEncoder as CompactEncoder,
    CompactSnapshot as CompactSnapshot,
    CompactTables as CompactTables,
)
from taskscope.protocol.slicing import (
    SLICE_SECONDS as SLICE_SECONDS,
    clear_sliced as clear_sliced,
    give_way as give_way,
    give_way_due as give_way_due,
    pieces as pieces,
    sliced as sliced,
    start_slicing as start_slicing,
)
from taskscope.protocol.sockets import (
    InsecureDirectory as InsecureDirectory,
    directory_is_private as directory_is_private,
    ensure_private_directory as ensure_private_directory,
    fallback_socket_directory as fallback_socket_directory,
    own_socket_path as own_socket_path,
    pid_in_own_namespace as pid_in_own_namespace,
    socket_directories as socket_directories,
    socket_directory as socket_directory,
    socket_path as socket_path,
)
