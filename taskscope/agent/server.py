"""The agent's socket server: a private Unix socket, one daemon thread per client.

Only the user who runs the process (or root) may connect: the directory is 0700, the socket
0600, and the peer's uid is checked with SO_PEERCRED. Requests are parsed by
`taskscope.protocol.parse_request`; none of them runs code sent by the client.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import sys
import threading
import time
from typing import Any

from taskscope import __version__
from taskscope.agent.cancel import request_cancel
from taskscope.agent.introspect import (
    SnapshotBuilder,
    find_task,
    finished_record,
    frame_record,
    walk_frames,
)
from taskscope.agent.tracker import Tracker, task_coro
from taskscope.protocol import (
    COMPACT,
    MAX_REQUEST_BYTES,
    PLAIN,
    PROTOCOL_VERSION,
    CompactEncoder,
    CompactTables,
    LineBuffer,
    ProtocolError,
    Request,
    WireTask,
    encode,
    ensure_private_directory,
    materialize_body,
    parse_request,
    socket_directory,
    socket_path,
)

MAX_CLIENTS = 16
PRUNE_INTERVAL = 10.0
SEND_TIMEOUT = 10.0
#: A subscription spends at most this share of wall time building snapshots.
MAX_DUTY = 0.1
_PEERCRED = struct.Struct("3i")


def peer_uid(conn: socket.socket) -> int | None:
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except (OSError, AttributeError):
        return None
    _pid, uid, _gid = _PEERCRED.unpack(raw)
    return int(uid)


class AgentServer:
    """Listens on the process's socket and answers clients on daemon threads."""

    def __init__(self, tracker: Tracker, directory: str | None = None) -> None:
        self.tracker = tracker
        self.directory = directory or socket_directory()
        self.path = socket_path(os.getpid(), self.directory)
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        #: The compact encoding's tables and encoded rows, shared by all connections.
        self.tables = CompactTables()
        self._thread: threading.Thread | None = None
        self.started_at = time.time()

    def start(self) -> None:
        ensure_private_directory(self.directory)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        os.chmod(self.path, 0o600)
        listener.listen(8)
        listener.settimeout(PRUNE_INTERVAL)  # wake now and then to tidy the tracker
        self._listener = listener
        self._thread = threading.Thread(
            target=self._accept_loop, name="taskscope-agent", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with contextlib.suppress(FileNotFoundError, OSError):
            os.unlink(self.path)
        with self._clients_lock:
            clients = list(self._clients)
        for conn in clients:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def close_inherited(self) -> None:
        """In a forked child: drop the parent's sockets without touching its socket file."""
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            listener = self._listener
            if listener is None:
                return
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                self.tracker.prune()
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)
                continue
            uid = peer_uid(conn)
            if uid is None or (uid != os.getuid() and uid != 0):
                conn.close()
                continue
            with self._clients_lock:
                if len(self._clients) >= MAX_CLIENTS:
                    self._send_quietly(
                        conn, {"type": "error", "code": "busy", "message": "too many clients"}
                    )
                    conn.close()
                    continue
                self._clients.add(conn)
            threading.Thread(
                target=self._serve_client, args=(conn,), name="taskscope-client", daemon=True
            ).start()

    def _send_quietly(self, conn: socket.socket, message: Any) -> None:
        with contextlib.suppress(OSError):
            conn.settimeout(1.0)
            conn.sendall(encode(message))

    def _serve_client(self, conn: socket.socket) -> None:
        try:
            _ClientSession(self, conn).run()
        except Exception:
            pass  # a broken client never reaches the host program
        finally:
            with self._clients_lock:
                self._clients.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def snapshot(self, include_finished: bool = True) -> dict[str, Any]:
        """A snapshot as the agent sends it: countdowns as end times, records reused."""
        with self._snapshot_lock:
            return dict(SnapshotBuilder(self.tracker).build_raw(include_finished))


class _ClientSession:
    def __init__(self, server: AgentServer, conn: socket.socket) -> None:
        self.server = server
        self.conn = conn
        self.greeted = False
        self.interval: float | None = None
        self.next_tick = 0.0
        #: The records the last message of the subscription described, by task id.
        self.previous: dict[str, WireTask] = {}
        #: Set by a hello that asked for the compact encoding: what this client was sent.
        self.encoder: CompactEncoder | None = None

    def send(self, message: Any) -> None:
        encoder = self.encoder
        line = encoder.encode(message) if encoder is not None else encode(_plain(message))
        self.conn.settimeout(SEND_TIMEOUT)
        self.conn.sendall(line)

    def run(self) -> None:
        buffer = LineBuffer(MAX_REQUEST_BYTES)
        conn = self.conn
        while not self.server._stopping.is_set():
            timeout = None
            if self.interval is not None:
                timeout = max(0.0, self.next_tick - time.monotonic())
            readable, _, _ = select.select([conn], [], [], timeout)
            if readable:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                try:
                    for line in buffer.feed(data):
                        if line.strip() and not self.handle(line):
                            return
                except ProtocolError as error:
                    self.send({"type": "error", "code": error.code, "message": str(error)})
                    return
            if self.interval is not None and time.monotonic() >= self.next_tick:
                self.send_delta()

    def handle(self, line: bytes) -> bool:
        """Answer one request; False closes the connection."""
        try:
            request = parse_request(line)
        except ProtocolError as error:
            self.send({"type": "error", "code": error.code, "message": str(error)})
            # Garbage before a successful hello is not a client of ours: hang up.
            return self.greeted and error.code != "too_large"
        reply: dict[str, Any]
        if request.type == "hello":
            if request.protocol != PROTOCOL_VERSION:
                self.send(
                    {
                        "type": "error",
                        "re": request.request_id,
                        "code": "version_mismatch",
                        "message": f"agent speaks protocol {PROTOCOL_VERSION}, "
                        f"client speaks {request.protocol}",
                        "protocol": PROTOCOL_VERSION,
                    }
                )
                return False
            self.greeted = True
            reply = {
                "type": "hello",
                "protocol": PROTOCOL_VERSION,
                "agent": __version__,
                "pid": os.getpid(),
                "python": sys.version.split()[0],
                "executable": sys.executable,
                "argv": list(sys.argv),
                "started_at": self.server.started_at,
            }
            # Only a client that asks hears about encodings. A new hello starts over.
            self.encoder = None
            if request.encoding is not None:
                encoding = COMPACT if request.encoding == COMPACT else PLAIN
                if encoding == COMPACT:
                    self.encoder = CompactEncoder(self.server.tables)
                reply["encoding"] = encoding
        elif not self.greeted:
            self.send(
                {
                    "type": "error",
                    "re": request.request_id,
                    "code": "bad_request",
                    "message": "say hello first",
                }
            )
            return False
        elif request.type == "snapshot":
            reply = {"type": "snapshot", "snapshot": self.server.snapshot(request.include_finished)}
        elif request.type == "subscribe":
            self.interval = request.interval
            self.previous = {}
            self.send_delta(first=True, request_id=request.request_id)
            return True
        elif request.type == "stack":
            reply = self.stack(request)
        else:
            reply = {
                "type": "cancel",
                "task": request.task_id,
                "outcome": request_cancel(
                    self.server.tracker, request.task_id or "", request.message
                ),
            }
        if request.request_id is not None:
            reply["re"] = request.request_id
        self.send(reply)
        return True

    def stack(self, request: Request) -> dict[str, Any]:
        tracker = self.server.tracker
        number = int(request.task_id or 0)
        task = find_task(tracker, number)
        reply: dict[str, Any] = {"type": "stack", "task": request.task_id}
        if task is None:
            for finished in tracker.finished_tasks():
                if finished.task_id == number:
                    reply["found"] = True
                    reply["record"] = finished_record(tracker, finished)
                    reply["stack"] = []
                    return reply
            reply["found"] = False
            reply["stack"] = []
            return reply
        frames = walk_frames(task_coro(task))
        stack = []
        for frame in frames:
            entry: dict[str, Any] = dict(frame_record(frame.f_code, frame.f_lineno))
            entry["source"] = _source_line(frame.f_code.co_filename, frame.f_lineno)
            stack.append(entry)
        meta = tracker.meta_of(task)
        reply["found"] = True
        reply["stack"] = stack
        reply["created_from"] = [
            {**frame_record(code, line), "source": _source_line(code.co_filename, line)}
            for code, line in (meta.created_from if meta else ())
        ]
        return reply

    def send_delta(self, first: bool = False, request_id: int | None = None) -> None:
        started = time.monotonic()
        snapshot = self.server.snapshot(True)
        cost = time.monotonic() - started
        interval = self.interval or 0.5
        self.next_tick = time.monotonic() + max(interval, cost / MAX_DUTY)
        current = {record["id"]: record for record in snapshot["tasks"]}
        if first:
            self.previous = current
            message: dict[str, Any] = {"type": "snapshot", "snapshot": snapshot}
            if request_id is not None:
                message["re"] = request_id
            self.send(message)
            return
        # A record that did not change is the same object as last time (or at least equal:
        # countdowns are end times, which stay put while the task does).
        previous = self.previous
        changed = []
        for task_id, record in current.items():
            before = previous.get(task_id)
            if before is not record and before != record:
                changed.append(record)
        removed = [task_id for task_id in previous if task_id not in current]
        self.previous = current
        self.send(
            {
                "type": "delta",
                "delta": {
                    "taken_at": snapshot["taken_at"],
                    "loops": snapshot["loops"],
                    "changed": changed,
                    "removed": removed,
                    "cycles": snapshot["cycles"],
                    "build_seconds": round(cost, 4),
                    "loop_time": snapshot["loop_time"],
                },
            }
        )


def _plain(message: dict[str, Any]) -> dict[str, Any]:
    """A message in schema 1: the countdowns of its snapshot or delta counted."""
    kind = message.get("type")
    if kind == "snapshot":
        return {**message, "snapshot": materialize_body(message["snapshot"], "tasks")}
    if kind == "delta":
        return {**message, "delta": materialize_body(message["delta"], "changed")}
    return message


_source_cache: dict[str, list[str] | None] = {}


def _source_line(filename: str, line: int | None) -> str | None:
    """A line of source, read by the agent itself: the host's linecache is left alone."""
    if line is None or not filename or filename.startswith("<"):
        return None
    lines = _source_cache.get(filename)
    if lines is None and filename not in _source_cache:
        try:
            with open(filename, encoding="utf-8", errors="replace") as handle:
                lines = handle.read().splitlines()
        except OSError:
            lines = None
        if len(_source_cache) > 256:
            _source_cache.clear()
        _source_cache[filename] = lines
    if lines is None or not 0 < line <= len(lines):
        return None
    return lines[line - 1].strip()[:300]
