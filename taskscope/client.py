"""Talks to the agent of one process over its Unix socket: hello, snapshot, subscribe, stack,
cancel. Every failure a user can meet becomes a `ClientError` whose message is one line that
says what to do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from taskscope.early import HELLO_ID, SNAPSHOT_ID, SentAhead
from taskscope.process_facts import gone_since, process_exists, process_uid, user_name
from taskscope.protocol import (
    CANCEL_WAIT,
    COMPACT,
    MAX_REPLY_BYTES,
    PLAIN,
    PROTOCOL_VERSION,
    CancelOutcome,
    CancelReply,
    CompactDecoder,
    CompactSnapshot,
    DetachReply,
    ErrorReply,
    FlightReply,
    HelloReply,
    LineBuffer,
    ProtocolError,
    Reply,
    Request,
    SnapshotReply,
    StackReply,
    TimeStepsReply,
    WireDelta,
    WireSnapshot,
    directory_is_private,
    encode,
    pid_in_own_namespace,
    request_to_wire,
    socket_directories,
    socket_path,
    terminal_safe_line,
)
from taskscope.words import NamedWaits, fill_texts


class ClientError(Exception):
    """A problem the user can act on; str() is the one line to show."""


class NoSuchProcess(ClientError):
    pass


class NoAgent(ClientError):
    pass


class AgentGone(ClientError):
    pass


class FlightOff(ClientError):
    """The agent keeps no flight recording (it was not turned on)."""


class PermissionDenied(ClientError):
    pass


class VersionMismatch(ClientError):
    pass


def other_user_message(pid: int, uid: int) -> str:
    name = user_name(uid)
    return (
        f"process {pid} runs as {name}: only that user or root may connect to its agent; "
        f"run taskscope as that user (sudo -u {name.split()[0]} taskscope ...)"
    )


def no_agent_message(pid: int) -> str:
    owner = process_uid(pid)
    if owner is not None and owner != os.getuid() and os.getuid() != 0:
        return other_user_message(pid, owner)
    return (
        f"process {pid} has no taskscope agent: run `taskscope attach {pid}` to load one, "
        "or start the program with `taskscope run` or call taskscope.install()"
    )


#: A reply slower than this (seconds) means the process is keeping its agent from running.
SLOW_REPLY = 1.0
#: How much shorter than the wait a loop's heartbeat lag may be and still explain it.
BLOCK_MARGIN = 0.5

#: Overrides the encoding clients ask for (`plain` to see the schema-1 JSON on the wire).
ENCODING_ENV = "TASKSCOPE_ENCODING"


class AgentClient:
    """One connection to one agent. Not thread-safe: use one per thread.

    Asks for the compact wire encoding (`encoding`, else $TASKSCOPE_ENCODING, else compact)
    and expands it: `snapshot()` and `subscribe()` give the schema-1 records either way. An
    agent that does not know encodings sends plain JSON. Records of one connection may share
    lists (stacks): treat them as read-only."""

    def __init__(
        self,
        pid: int,
        *,
        timeout: float = 10.0,
        socket_dir: str | None = None,
        encoding: str | None = None,
        on_slow: Callable[[float], None] | None = None,
        connected: socket.socket | None = None,
        ahead: SentAhead | None = None,
    ) -> None:
        self.pid = pid
        self.timeout = timeout
        #: Called once per request whose reply takes longer than `SLOW_REPLY` seconds (the
        #: process is keeping its agent from running), with that many seconds.
        self.on_slow = on_slow
        #: The longest wait for a reply on this connection so far, in seconds.
        self.longest_wait = 0.0
        #: A socket already connected to the agent through a relay (ssh's standard streams,
        #: see taskscope.remote): used instead of the Unix socket, with no peer check, since
        #: the peer is the relay, not the agent. `path` is then empty.
        self._connected = connected
        self._connected_through_relay = connected is not None
        #: The pid the process has in its own pid namespace, once needed (`_renumber`).
        self._own_pid: int | None = None
        self.path = (
            "" if connected is not None else socket_path(pid, socket_dir or _directory_of(pid))
        )
        self._sock: socket.socket | None = None
        self._buffer = LineBuffer(MAX_REPLY_BYTES)
        self._lines: deque[bytes] = deque()
        self._next_id = 1
        self._pushed: deque[Reply] = deque()
        self._hello: HelloReply | None = None
        #: What to ask for in hello, then what the agent chose.
        self.requested_encoding = encoding or os.environ.get(ENCODING_ENV) or COMPACT
        self.encoding = PLAIN
        self._decoder: CompactDecoder | None = None
        #: The named objects the tasks of the last snapshot and its deltas wait on: a delta's
        #: words letter them as its snapshot's did (`taskscope.words.NamedWaits`).
        self._named_waits = NamedWaits()
        #: A snapshot reply is left in rows (`snapshot_rows`) while this is set.
        self._keep_rows = False
        #: A connection on which hello and a snapshot were sent before the command line's
        #: imports (taskscope/early.py): `connect` reads its hello reply, the first
        #: `snapshot` or `snapshot_rows` (finished tasks included) its snapshot.
        self._ahead = ahead
        if ahead is not None:
            self.path = ahead.path

    # --- connection ----------------------------------------------------------------------------

    def connect(self) -> HelloReply:
        hello = Request("hello", protocol=PROTOCOL_VERSION, encoding=self.requested_encoding)
        ahead = self._ahead
        if ahead is not None and ahead.sock is not None:
            self._sock, ahead.sock = ahead.sock, None
            self._sock.settimeout(self.timeout)
            self._decoder = None
            self._next_id = SNAPSHOT_ID + 1
            # Waits are counted from now: the replies may have come during the imports.
            reply = cast(HelloReply, self._reply(hello, HELLO_ID, time.monotonic()))
        else:
            self._ahead = None
            if self._connected is not None:
                sock, self._connected = self._connected, None
                sock.settimeout(self.timeout)
            else:
                sock = self.open_socket()
            self._sock = sock
            self._decoder = None
            reply = cast(HelloReply, self._request(hello))
        self.encoding = COMPACT if reply.get("encoding") == COMPACT else PLAIN
        if self.encoding == COMPACT:
            self._decoder = CompactDecoder()
        self._hello = reply
        return reply

    def open_socket(self) -> socket.socket:
        """A socket connected to the agent's Unix socket and checked to be served by the
        process itself, before any request (the relay of `taskscope bridge` uses it raw)."""
        if not process_exists(self.pid):
            raise NoSuchProcess(f"no process with pid {self.pid}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            self._connect(sock)
        except FileNotFoundError:
            sock.close()
            raise NoAgent(no_agent_message(self.pid)) from None
        except ConnectionRefusedError:
            sock.close()
            raise NoAgent(no_agent_message(self.pid)) from None
        except PermissionError:
            sock.close()
            owner = process_uid(self.pid)
            if owner is not None and owner != os.getuid():
                raise PermissionDenied(other_user_message(self.pid, owner)) from None
            raise PermissionDenied(
                f"permission denied on {self.path}: run taskscope as the user who owns "
                f"process {self.pid}"
            ) from None
        except OSError as error:
            sock.close()
            raise NoAgent(
                f"cannot reach the agent of process {self.pid}: {error.strerror}"
            ) from None
        served_by = _peer_pid(sock)
        if served_by not in (None, 0, self.pid):
            sock.close()
            raise NoAgent(
                f"{self.path} is served by process {served_by}, not {self.pid}: "
                f"{no_agent_message(self.pid)}"
            )
        return sock

    @property
    def hello(self) -> HelloReply:
        """The agent's hello (ClientError before `connect`)."""
        if self._hello is None:
            raise ClientError("not connected")
        return self._hello

    def _connect(self, sock: socket.socket) -> None:
        """connect(), waiting while the agent's listen queue is full (EAGAIN: the agent is
        taking connections and will have room in a moment)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                sock.connect(self.path)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)

    def close(self) -> None:
        """Close the connection; a thread blocked reading it (a subscription) wakes up."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def __enter__(self) -> AgentClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests ------------------------------------------------------------------------------

    def snapshot(self, include_finished: bool = True) -> WireSnapshot:
        """A snapshot. When the agent could not answer for more than `SLOW_REPLY` seconds
        and a loop's last heartbeat came that late too, the loop was blocked (a call that held
        the GIL kept the agent from running as well): it is reported blocked for as long as
        that heartbeat was late, though it ran again just before the answer."""
        reply = cast(SnapshotReply, self._snapshot_reply(include_finished))
        snapshot = reply["snapshot"]
        self._mark_blocked(snapshot.get("loops", ()))
        return snapshot

    def _snapshot_reply(self, include_finished: bool) -> Reply:
        """The reply to a snapshot request: the one sent ahead when there is one (and it
        asked for the same), else one sent now."""
        request = Request("snapshot", include_finished=include_finished)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and include_finished:
            return self._reply(request, SNAPSHOT_ID, time.monotonic())
        return self._request(request)

    def snapshot_rows(self, include_finished: bool = True) -> CompactSnapshot | WireSnapshot:
        """`snapshot`, its task rows left as the compact encoding sent them (`dump` writes
        its JSON from them); the schema-1 snapshot when the connection is plain. The rows
        must be read before this connection's next request."""
        if self._decoder is None:
            return self.snapshot(include_finished)
        self._keep_rows = True
        try:
            reply = self._snapshot_reply(include_finished)
        finally:
            self._keep_rows = False
        rows = cast(CompactSnapshot, reply["snapshot"])  # type: ignore[typeddict-item]
        self._mark_blocked(rows.body.get("loops") or ())
        return rows

    def _mark_blocked(self, loops: Iterable[Any]) -> None:
        """When the agent could not answer for more than `SLOW_REPLY` seconds, the loops
        whose last heartbeat came that late too were blocked (see `snapshot`)."""
        if self.longest_wait < SLOW_REPLY:
            return
        for loop in loops:
            lag = loop.get("lag")
            if (
                loop.get("blocked_for") is None
                and isinstance(lag, int | float)
                and lag >= self.longest_wait - BLOCK_MARGIN
            ):
                loop["blocked_for"] = lag
                loop["blocked_ended"] = True

    def stack(self, task_id: str) -> StackReply:
        return cast(StackReply, self._request(Request("stack", task_id=task_id)))

    def cancel(self, task_id: str, message: str | None = None) -> CancelOutcome:
        return self.cancel_reply(task_id, message)["outcome"]

    def cancel_reply(self, task_id: str, message: str | None = None) -> CancelReply:
        """The agent's whole answer: `outcome`, and `error` when the cancel failed."""
        return cast(CancelReply, self._request(Request("cancel", task_id=task_id, message=message)))

    def detach(self) -> str:
        """Ask the agent to stop and undo what it changed in the process; it hangs up after
        answering (`detaching`)."""
        reply = cast(DetachReply, self._request(Request("detach")))
        return reply["outcome"]

    def flight(self) -> FlightReply | None:
        """What the agent's flight recorder holds (its base snapshot and the deltas after
        it, schema 1), or None when the recorder is off in the process."""
        try:
            reply = cast(FlightReply, self._request(Request("flight")))
        except FlightOff:
            return None
        named = NamedWaits()
        fill_texts(reply["base"], "tasks", named)
        for delta in reply["deltas"]:
            fill_texts(delta, "changed", named)
        return reply

    def time_steps(self, on: bool) -> bool:
        """Turn the agent's step timing on or off; whether it times every step now."""
        reply = cast(TimeStepsReply, self._request(Request("time_steps", on=on)))
        return bool(reply["on"])

    def subscribe(self, interval: float = 0.5) -> Iterator[tuple[str, WireSnapshot | WireDelta]]:
        """The first snapshot, then deltas as the agent sends them, until the agent goes."""
        reply = cast(
            SnapshotReply, self._request(Request("subscribe", interval=interval), timeout=None)
        )
        yield "snapshot", reply["snapshot"]
        while True:
            message = self._pushed.popleft() if self._pushed else self._read_message(None)
            if message["type"] == "delta":
                yield "delta", message["delta"]
            elif message["type"] == "error":
                raise ClientError(f"agent error: {message['message']}")

    # --- plumbing ------------------------------------------------------------------------------

    def _request(self, request: Request, timeout: float | None = -1.0) -> Reply:
        """The agent's reply to `request`, of the request's type (an error reply raises)."""
        if self._sock is None:
            raise ClientError("not connected")
        request_id = self._next_id
        self._next_id += 1
        wire = request_to_wire(dataclasses.replace(request, request_id=request_id))
        sent = time.monotonic()
        try:
            self._sock.settimeout(self.timeout)
            self._sock.sendall(encode(wire))
        except OSError as error:
            raise self._gone(error) from None
        return self._reply(request, request_id, sent, timeout)

    def _reply(
        self, request: Request, request_id: int, sent: float, timeout: float | None = -1.0
    ) -> Reply:
        """The reply to `request`, sent with `request_id` at `sent` (monotonic)."""
        # A cancel's reply waits for a blocked loop by design: slow only after that wait.
        slow_from = sent + CANCEL_WAIT if request.type == "cancel" else sent
        while True:
            message = self._read_message(
                self.timeout if timeout == -1.0 else timeout, slow_from=slow_from
            )
            self.longest_wait = max(self.longest_wait, time.monotonic() - sent)
            if message.get("re") == request_id or (
                message["type"] == "error" and message.get("re") is None
            ):
                if message["type"] == "error":
                    raise self._error(message)
                if message["type"] != request.type and request.type != "subscribe":
                    raise ClientError(
                        f"bad reply from the agent: {message['type']!r} to a {request.type!r}"
                    )
                return message
            self._pushed.append(message)

    def _error(self, message: ErrorReply) -> ClientError:
        """The one line for an error reply."""
        refusal = self._refusal(message)
        if refusal is not None:
            return refusal
        if message.get("code") == "flight_off":
            return FlightOff(message["message"])
        if message.get("code") == "version_mismatch":
            return VersionMismatch(
                f"protocol version mismatch: the agent in process {self.pid} "
                f"speaks {message.get('protocol')}, this taskscope speaks "
                f"{PROTOCOL_VERSION}; use the same taskscope version on both sides"
            )
        return ClientError(f"the agent refused the request: {message.get('message')}")

    def _read_message(self, timeout: float | None, slow_from: float | None = None) -> Reply:
        """The next message, expanded from the compact encoding; one that is not an object
        with a string `type` raises."""
        # Read through this socket even when another thread closes the client meanwhile
        # (`close` unblocks a subscription): that ends in AgentGone, never in a stray OSError.
        sock = self._sock
        deadline = None if timeout is None else time.monotonic() + timeout
        slow_at = None
        if slow_from is not None and self.on_slow is not None:
            slow_at = slow_from + SLOW_REPLY
        while not self._lines:
            if sock is None:
                raise AgentGone(f"the connection to the agent of process {self.pid} was closed")
            now = time.monotonic()
            remaining = None if deadline is None else max(0.01, deadline - now)
            if slow_at is not None:
                remaining = (
                    max(0.01, slow_at - now)
                    if remaining is None
                    else min(remaining, max(0.01, slow_at - now))
                )
            try:
                sock.settimeout(remaining)
                data = sock.recv(1 << 20)
            except TimeoutError:
                if slow_at is not None and time.monotonic() >= slow_at and self.on_slow:
                    self.on_slow(time.monotonic() - slow_at + SLOW_REPLY)
                    slow_at = None
                    continue
                raise AgentGone(
                    f"the agent of process {self.pid} did not answer within {timeout:.0f} s"
                ) from None
            except OSError as error:
                raise self._gone(error) from None
            if not data:
                raise self._gone(None)
            try:
                self._lines.extend(self._buffer.feed(data))
            except ProtocolError as error:
                raise ClientError(f"bad reply from the agent: {error}") from None
        line = self._lines.popleft()
        try:
            message = json.loads(line)
        except ValueError:
            raise ClientError("bad reply from the agent: not JSON") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ClientError("bad reply from the agent: not an object with a type")
        if self._decoder is not None:
            # Every message, in the order received: the tables grow with them.
            try:
                if self._keep_rows and message["type"] == "snapshot":
                    unsafe = not terminal_safe_line(line)
                    rows = self._decoder.snapshot_rows(message, unsafe)
                    self._renumber(rows.body)
                    message["snapshot"] = rows
                    return cast(Reply, message)
                message = self._decoder.message(message)
            except ValueError as error:
                raise ClientError(f"bad reply from the agent: {error}") from None
        kind = message.get("type")
        if kind == "snapshot" or kind == "delta":
            # Schema 1 says what each task awaits in words too: made here, from the facts.
            rows_key = "tasks" if kind == "snapshot" else "changed"
            fill_texts(message[kind], rows_key, self._named_waits)
        if kind == "snapshot":
            self._renumber(message["snapshot"])
        return cast(Reply, message)

    def _renumber(self, snapshot: dict[str, Any]) -> None:
        """A process in a pid namespace of its own (a container) says its own pid (often 1):
        its snapshots give the pid it has here, the one the user typed and can pass on."""
        said = snapshot.get("pid")
        if said == self.pid or self._connected_through_relay or not isinstance(said, int):
            return
        if self._own_pid is None:
            self._own_pid = pid_in_own_namespace(self.pid)
        if said == self._own_pid:
            snapshot["pid"] = self.pid

    def _refusal(self, message: ErrorReply) -> ClientError | None:
        """The one line for an agent that will not serve this client, by its error code."""
        code = message.get("code")
        if code == "busy":
            holders = [str(pid) for pid in message.get("clients") or () if isinstance(pid, int)]
            return ClientError(
                f"the agent of process {self.pid} is busy with other clients"
                + (f" (processes {', '.join(holders)})" if holders else "")
                + "; close one of them, or retry in a few seconds"
            )
        if code == "forbidden":
            uid = message.get("uid")
            if isinstance(uid, int):
                return PermissionDenied(other_user_message(self.pid, uid))
            return PermissionDenied(f"the agent of process {self.pid} refused this user")
        if code in ("timeout", "evicted"):
            return AgentGone(
                f"the agent of process {self.pid} closed the connection: {message.get('message')}"
            )
        return None

    def _gone(self, error: OSError | None) -> ClientError:
        if not process_exists(self.pid):
            return AgentGone(f"process {self.pid} exited")
        if error is not None and error.errno == errno.EPIPE:
            return AgentGone(f"the agent of process {self.pid} closed the connection")
        return AgentGone(f"the agent of process {self.pid} closed the connection")


def _peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process serving a connected Unix socket (SO_PEERCRED)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except (OSError, AttributeError):
        return None
    return int(_PEERCRED.unpack(raw)[0])


_PEERCRED = struct.Struct("3i")


def _directory_of(pid: int) -> str:
    """The first directory holding `pid`'s socket, else the usual one."""
    directories = socket_directories()
    for directory in directories:
        if os.path.exists(socket_path(pid, directory)):
            return directory
    return directories[0]


def has_agent_socket(pid: int) -> bool:
    """Whether an agent socket of process `pid` exists (in a container too, where its name
    is not the pid we have for it)."""
    return any(os.path.exists(socket_path(pid, directory)) for directory in socket_directories())


def live_agents(socket_dir: str | None = None, clean: bool = True) -> list[int]:
    """Pids whose agent socket exists in a private directory and whose process runs.

    A socket is removed (when `clean`) only when its process is proven gone: no such pid,
    or a pid now used by a process started after the socket was made. A failed connect
    proves nothing (an agent's queue can be full for a moment) and is never a reason."""
    directories = [socket_dir] if socket_dir else socket_directories()
    pids: set[int] = set()
    for directory in directories:
        if not directory_is_private(directory):
            continue  # someone else's directory: nothing in it is ours to trust or delete
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if not name.endswith(".sock") or not name[:-5].isdigit():
                continue
            pid = int(name[:-5])
            path = os.path.join(directory, name)
            if not _proven_gone(pid, path):
                pids.add(pid)
            elif clean:
                with contextlib.suppress(OSError):
                    os.unlink(path)
    return sorted(pids)


def _proven_gone(pid: int, path: str) -> bool:
    """Whether the process that made the socket at `path` no longer runs."""
    try:
        made = os.lstat(path).st_mtime
    except OSError:
        return False
    return gone_since(pid, made)
