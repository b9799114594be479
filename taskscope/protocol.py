"""The taskscope wire protocol: message shapes, framing, validation and the socket location.

Both sides import this module: the agent (inside the monitored process) and the client. It is
standard library only. Messages are JSON objects, one per line (newline-delimited JSON) over a
Unix domain socket; `docs/protocol.md` is the human description of what is defined here.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
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
        return Request("hello", request_id, protocol=protocol)
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
