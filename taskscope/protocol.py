"""The taskscope wire protocol: message shapes, framing, validation and the socket location.

Both sides import this module: the agent (inside the monitored process) and the client. It is
standard library only. Messages are JSON objects, one per line (newline-delimited JSON) over a
Unix domain socket; `docs/protocol.md` is the human description of what is defined here.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final, Literal, NotRequired, TypedDict

PROTOCOL_VERSION: Final = 1
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
COMPACT: Final = "compact"
ENCODINGS: Final[frozenset[str]] = frozenset({PLAIN, COMPACT})

RequestType = Literal["hello", "snapshot", "subscribe", "stack", "cancel"]
REQUEST_TYPES: Final[frozenset[str]] = frozenset(
    {"hello", "snapshot", "subscribe", "stack", "cancel"}
)

TaskState = Literal["pending", "done", "cancelled", "failed"]
CancelOutcome = Literal["requested", "already_finished", "no_such_task"]

ErrorCode = Literal[
    "bad_request", "unknown_type", "too_large", "version_mismatch", "no_such_task", "internal"
]


# --- Wire records: what a snapshot says (also the `taskscope dump` JSON contract) -----------


class WireFrame(TypedDict):
    function: str
    file: str
    line: int | None


class WireAwaiting(TypedDict):
    kind: str
    text: str
    tasks: list[str]
    # Optional facts, present when known: seconds to a sleep's end or to a timeout deadline,
    # the object waited on (type, id, size...), a peer address, a callee.
    seconds_left: NotRequired[float | None]
    deadline_in: NotRequired[float | None]
    object: NotRequired[dict[str, Any]]
    peer: NotRequired[str | None]


class WireTask(TypedDict):
    id: str
    loop: str
    name: str
    state: TaskState
    coro: str
    stack: list[WireFrame]
    awaiting: WireAwaiting | None
    awaited_by: list[str]
    parent: str | None
    created_at: float | None
    finished_at: float | None
    running: NotRequired[bool]
    created_from: NotRequired[list[WireFrame]]
    result: NotRequired[str]
    exception: NotRequired[str]


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


class WireSnapshot(TypedDict):
    schema: int
    pid: int
    python: str
    taken_at: float
    loops: list[WireLoop]
    tasks: list[WireTask]
    cycles: list[list[str]]
    history_limit: int


class WireDelta(TypedDict):
    taken_at: float
    loops: list[WireLoop]
    changed: list[WireTask]
    removed: list[str]
    cycles: list[list[str]]


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
    try:
        raw = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError("bad_request", "a request must be one JSON object per line") from None
    if not isinstance(raw, dict):
        raise ProtocolError("bad_request", "a request must be a JSON object")
    kind = raw.get("type")
    if kind not in REQUEST_TYPES:
        raise ProtocolError("unknown_type", f"unknown request type {kind!r}")
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


# --- Framing ---------------------------------------------------------------------------------

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def encode(message: dict[str, Any] | Any) -> bytes:
    """One message as a line of UTF-8 JSON. JSON escapes newlines inside strings."""
    return _encoder.encode(message).encode("utf-8", "surrogatepass") + b"\n"


# --- The compact encoding ------------------------------------------------------------------
#
# Negotiated in hello. Snapshot and delta messages then carry their tasks as rows (arrays in
# a fixed order) whose stacks, `created_from` and coroutine names are indexes into tables that
# live as long as the connection: each message sends only the entries it adds (`intern`).
# Everything else is the schema-1 JSON unchanged. docs/protocol.md, "Compact encoding".

#: The first eleven positions of a compact task row; then `created_from` (a stack index or
#: null when the record has none) and, only when the record has other keys, an object of them.
TASK_ROW_KEYS: Final = (
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
#: `state` codes in rows (a state missing here travels as its string).
TASK_STATES: Final[tuple[str, ...]] = ("pending", "done", "cancelled", "failed")
_STATE_CODES: Final = {state: code for code, state in enumerate(TASK_STATES)}
_ROW_VALUES = itemgetter(*TASK_ROW_KEYS)
_NOT_EXTRA: Final = frozenset(TASK_ROW_KEYS) | {"created_from"}
_FRAME_VALUES = itemgetter("function", "file", "line")
#: Table entries (strings, frames or stacks) after which the agent starts the tables over.
MAX_TABLE_ENTRIES: Final = 1 << 16
#: Lists remembered by identity (see `CompactEncoder`) before that memory is dropped.
MAX_PINNED: Final = 1 << 18

_StackKey = tuple[tuple[str, str, int | None], ...]


class CompactEncoder:
    """The agent's side of one compact connection: its interning tables, and what the next
    message must add to the client's copy of them.

    Cheap per task: a coroutine name is found by its string (whose hash is cached), a stack or
    `created_from` list by `id()`. The snapshot builder shares stack lists between tasks
    suspended at the same place and keeps each task's `created_from` list for its life, so an
    `id()` hit is the common case. The lists are pinned (referenced here) so that an id cannot
    be reused by another list while remembered; on a miss the list is interned by content.
    Records are never mutated after they are built, which makes this sound."""

    def __init__(self) -> None:
        self._reset_pending = False
        self._clear()

    def _clear(self) -> None:
        self._strings: dict[str, int] = {}
        self._frames: dict[tuple[str, str], int] = {}
        self._stacks: dict[_StackKey, int] = {}
        self._by_id: dict[int, int] = {}
        self._pinned: list[Any] = []
        self._new_strings: list[str] = []
        self._new_frames: list[list[str]] = []
        self._new_stacks: list[list[list[int | None]]] = []

    def message(self, message: dict[str, Any]) -> dict[str, Any]:
        """The compact form of a plain `snapshot` or `delta` message; any other message as it
        is. Must be sent, in order, on the connection this encoder belongs to."""
        kind = message.get("type")
        if kind == "snapshot":
            rows_key = "tasks"
        elif kind == "delta":
            rows_key = "changed"
        else:
            return message
        self._check_limits()
        body = dict(message[kind])
        rows, awaits = self.rows(body[rows_key])
        body[rows_key] = rows
        body["awaits"] = awaits
        out: dict[str, Any] = {}
        for key, value in message.items():
            if key == kind:
                intern = self.take_intern()
                if intern is not None:
                    out["intern"] = intern
                out[key] = body
            else:
                out[key] = value
        return out

    def rows(self, records: Sequence[Any]) -> tuple[list[list[Any]], list[Any]]:
        """Task records as rows, and the message's table of `awaiting` objects they index
        (an object shared by several records is sent once)."""
        rows: list[list[Any]] = []
        awaits: list[Any] = []
        await_index: dict[int, int] = {}
        strings = self._strings
        by_id = self._by_id
        values = _ROW_VALUES
        states = _STATE_CODES
        for record in records:
            (
                task_id,
                loop,
                name,
                state,
                coro,
                stack,
                awaiting,
                awaited_by,
                parent,
                created_at,
                finished_at,
            ) = values(record)
            coro_index = strings.get(coro)
            if coro_index is None:
                coro_index = self._string(coro)
            stack_index = by_id.get(id(stack))
            if stack_index is None:
                stack_index = self._list(stack)
            await_ref = None
            if awaiting is not None:
                await_ref = await_index.get(id(awaiting))
                if await_ref is None:
                    await_ref = await_index[id(awaiting)] = len(awaits)
                    awaits.append(awaiting)
            origin = record.get("created_from")
            origin_index = None
            if origin is not None:
                origin_index = by_id.get(id(origin))
                if origin_index is None:
                    origin_index = self._list(origin)
            row = [
                task_id,
                loop,
                name,
                states.get(state, state),
                coro_index,
                stack_index,
                await_ref,
                awaited_by,
                parent,
                created_at,
                finished_at,
                origin_index,
            ]
            if len(record) > 11 + (origin is not None):
                row.append({k: v for k, v in record.items() if k not in _NOT_EXTRA})
            rows.append(row)
        return rows, awaits

    def take_intern(self) -> dict[str, Any] | None:
        """The table entries added since the last call (and whether the tables restarted)."""
        intern: dict[str, Any] = {}
        if self._reset_pending:
            intern["reset"] = True
            self._reset_pending = False
        if self._new_strings:
            intern["strings"], self._new_strings = self._new_strings, []
        if self._new_frames:
            intern["frames"], self._new_frames = self._new_frames, []
        if self._new_stacks:
            intern["stacks"], self._new_stacks = self._new_stacks, []
        return intern or None

    def _check_limits(self) -> None:
        if max(len(self._strings), len(self._frames), len(self._stacks)) > MAX_TABLE_ENTRIES:
            self._clear()
            self._reset_pending = True
        elif len(self._pinned) > MAX_PINNED:
            self._by_id.clear()
            self._pinned.clear()

    def _string(self, value: str) -> int:
        index = self._strings[value] = len(self._strings)
        self._new_strings.append(value)
        return index

    def _list(self, frames: list[Any]) -> int:
        key: _StackKey = tuple(map(_FRAME_VALUES, frames))
        index = self._stacks.get(key)
        if index is None:
            entries: list[list[int | None]] = []
            for function, file, line in key:
                frame_index = self._frames.get((function, file))
                if frame_index is None:
                    frame_index = self._frames[function, file] = len(self._frames)
                    self._new_frames.append([function, file])
                entries.append([frame_index, line])
            index = self._stacks[key] = len(self._stacks)
            self._new_stacks.append(entries)
        self._by_id[id(frames)] = index
        self._pinned.append(frames)
        return index


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
            awaits = body.get("awaits", ())
            task = self._task
            plain: dict[str, Any] = {}
            for key, value in body.items():
                if key == rows_key:
                    plain[key] = [task(row, awaits) for row in value]
                elif key != "awaits":
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
        (
            task_id,
            loop,
            name,
            state,
            coro,
            stack,
            await_ref,
            awaited_by,
            parent,
            created_at,
            finished_at,
            origin,
            *extra,
        ) = row
        record: WireTask = {
            "id": task_id,
            "loop": loop,
            "name": name,
            "state": TASK_STATES[state] if type(state) is int else state,  # type: ignore[typeddict-item]
            "coro": self._strings[coro],
            "stack": self._stack(stack),
            "awaiting": None if await_ref is None else awaits[await_ref],
            "awaited_by": awaited_by,
            "parent": parent,
            "created_at": created_at,
            "finished_at": finished_at,
        }
        if extra:
            record.update(extra[0])
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


def socket_directory() -> str:
    """The per-user directory holding agent sockets (not created here)."""
    override = os.environ.get("TASKSCOPE_SOCKET_DIR")
    if override:
        return override
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        try:
            info = os.stat(runtime)
        except OSError:
            info = None
        if info is not None and info.st_uid == os.getuid():
            return os.path.join(runtime, "taskscope")
    return os.path.join("/tmp", f"taskscope-{os.getuid()}")


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
