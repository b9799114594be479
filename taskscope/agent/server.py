"""The agent's socket server: a private Unix socket served by one daemon thread.

Only the user who runs the process (or root) may connect: the directory is 0700, the socket
0600, and the peer's uid is checked with SO_PEERCRED. Requests are parsed by
`taskscope.protocol.parse_request`; none of them runs code sent by the client.

One thread serves every connection with non-blocking sockets and a selector, so that no
client can hold a thread, and so that the thread can be stopped before the host forks and
started again afterwards: a process with a second thread makes Python 3.12+ warn on every
`os.fork()`, and a thread holding a lock at the fork would leave it locked in the child.

A connection that has not said hello within `HELLO_TIMEOUT` is told so and closed; when the
slots for greeted clients are full, one that has been idle for `IDLE_EVICTABLE` seconds makes
room for a newcomer; a client that stops reading its replies is dropped after
`SEND_STALL_TIMEOUT`. No careless or hostile client of the same user can lock the others out.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import struct
import sys
import threading
import time
from collections import deque
from types import CodeType
from typing import cast

from taskscope import __version__
from taskscope.agent.cancel import request_cancel
from taskscope.agent.chains import frame_record, walk_frames
from taskscope.agent.flight import FlightRecorder
from taskscope.agent.introspect import SnapshotBuilder, find_task, finished_record
from taskscope.agent.tracker import Tracker, task_coro
from taskscope.protocol import (
    CANCEL_WAIT,
    COMPACT,
    MAX_REQUEST_BYTES,
    PLAIN,
    PROTOCOL_VERSION,
    CancelOutcome,
    CancelReply,
    CompactEncoder,
    CompactTables,
    DetachReply,
    ErrorCode,
    ErrorReply,
    FlightReply,
    HelloReply,
    LineBuffer,
    ProtocolError,
    Reply,
    Request,
    SnapshotReply,
    StackFrame,
    StackReply,
    WireDelta,
    WireSnapshot,
    WireTask,
    encode,
    ensure_private_directory,
    materialize_body,
    parse_request,
    socket_directory,
    socket_path,
)

#: Greeted clients served at once.
MAX_CLIENTS = 16
#: Connections that have not said hello yet; the oldest makes room for a new one.
MAX_UNGREETED = 32
#: Seconds a new connection has to say hello (blank lines do not count).
HELLO_TIMEOUT = 3.0
#: A greeted client without a subscription, silent this long, gives its slot to a newcomer.
IDLE_EVICTABLE = 5.0
#: A client that reads nothing of a pending reply for this long is dropped.
SEND_STALL_TIMEOUT = 10.0
#: After a last error reply, how long what the client still sends is read and dropped.
DRAIN_SECONDS = 1.0
PRUNE_INTERVAL = 10.0
LISTEN_BACKLOG = 64
READ_CHUNK = 65536
#: Requests answered per connection per turn, so that one client cannot starve the others.
LINES_PER_TURN = 32
#: A subscription spends at most this share of wall time building snapshots.
MAX_DUTY = 0.1
#: A snapshot younger than this (and than its cost allows) is reused for the next request.
MAX_SNAPSHOT_REUSE = 1.0
_PEERCRED = struct.Struct("3i")


def peer_credentials(conn: socket.socket) -> tuple[int, int] | None:
    """(pid, uid) of the process at the other end of a Unix socket."""
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except (OSError, AttributeError):
        return None
    pid, uid, _gid = _PEERCRED.unpack(raw)
    return int(pid), int(uid)


def peer_uid(conn: socket.socket) -> int | None:
    credentials = peer_credentials(conn)
    return credentials[1] if credentials is not None else None


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


class AgentServer:
    """Listens on the process's socket and answers every client on one daemon thread."""

    def __init__(self, tracker: Tracker, directory: str | None = None) -> None:
        self.tracker = tracker
        self.directory = directory or socket_directory()
        self._pid = os.getpid()
        self.path = socket_path(self._pid, self.directory)
        self._listener: socket.socket | None = None
        #: The inode of the socket file we bound: a file at our path with another is not ours.
        self._inode: int | None = None
        self._stopping = threading.Event()
        self._pausing = False
        self._control = threading.Lock()
        self._wake_read = -1
        self._wake_write = -1
        self._connections: dict[int, _Connection] = {}
        self._selector: selectors.BaseSelector | None = None
        self._registered_listener: socket.socket | None = None
        self._snapshot_lock = threading.Lock()
        self._snapshots: dict[bool, tuple[float, float, WireSnapshot]] = {}
        #: The last minute (or so) kept in memory, when turned on (`start_flight_recorder`).
        self.flight: FlightRecorder | None = None
        #: The compact encoding's tables and encoded rows, shared by all connections.
        self.tables = CompactTables()
        self._thread: threading.Thread | None = None
        self.started_at = time.time()
        self._next_prune = 0.0

    # --- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        ensure_private_directory(self.directory)
        self._listener = self._bind()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._start_thread()

    def _bind(self) -> socket.socket:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self.path)
            os.chmod(self.path, 0o600)
            listener.listen(LISTEN_BACKLOG)
            listener.setblocking(False)
            self._inode = os.stat(self.path).st_ino
        except BaseException:
            listener.close()
            raise
        return listener

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._run, name="taskscope-agent", daemon=True)
        self._thread = thread
        thread.start()

    def listening(self) -> bool:
        """Whether our socket file is still there (someone may have deleted it)."""
        try:
            return os.stat(self.path).st_ino == self._inode
        except OSError:
            return False

    def ensure_listening(self) -> None:
        """Make a new socket when ours vanished (deleted by hand or by a careless tool)."""
        with self._control:
            if self._stopping.is_set() or self.listening():
                return
            ensure_private_directory(self.directory)
            self._listener = self._bind()
        self.wake()

    def stop(self) -> None:
        self._stopping.set()
        self.wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self.listening():
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        for connection in list(self._connections.values()):
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
            connection.sock.close()
        self._connections.clear()
        self._close_wake_pipe()

    def pause_for_fork(self) -> None:
        """Before a fork: stop the thread (connections stay open) so the process forks with
        one thread less: no warning from Python, no lock of ours held in the child."""
        thread = self._thread
        if thread is None or not thread.is_alive() or self._stopping.is_set():
            return
        before = _thread_count()
        self._pausing = True
        self.wake()
        thread.join(timeout=2.0)
        if thread.is_alive():  # busy for longer than a fork should wait: carry on
            self._pausing = False
            return
        self._thread = None
        # join() can return a moment before the OS thread is gone, which is what Python counts.
        deadline = time.monotonic() + 0.1
        while before and _thread_count() >= before and time.monotonic() < deadline:
            time.sleep(0.001)

    def resume(self) -> None:
        """Start the thread again after a fork (from a loop callback or a loop starting)."""
        with self._control:
            if not self._pausing or self._stopping.is_set() or os.getpid() != self._pid:
                return
            self._pausing = False
            self._start_thread()

    def paused(self) -> bool:
        return self._pausing

    def close_inherited(self) -> None:
        """In a forked child: close every socket of the parent's agent (its listener and its
        clients' connections) without touching its socket file or shutting anything down,
        so that the parent's clients hear EOF as soon as the parent goes."""
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.close()
        for connection in list(self._connections.values()):
            with contextlib.suppress(OSError):
                connection.sock.close()
        self._connections.clear()
        selector, self._selector = self._selector, None
        if selector is not None:
            with contextlib.suppress(Exception):
                selector.close()
        self._close_wake_pipe()

    def _close_wake_pipe(self) -> None:
        for fd in (self._wake_read, self._wake_write):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_read = self._wake_write = -1

    def start_flight_recorder(self, window: float) -> None:
        """Keep the last `window` seconds from now on, fed by this server's thread."""
        if self.flight is None:
            self.flight = FlightRecorder(window)
            self.wake()

    def _feed_flight(self, now: float) -> None:
        """Give the flight recorder a snapshot when it is due: the one subscribers share when
        it is fresh enough, built here on the agent's thread otherwise (never on a loop's),
        at most `MAX_DUTY` of the time like any subscription."""
        flight = self.flight
        if flight is None or now < flight.next_due:
            return
        snapshot, cost = self.snapshot(True)
        flight.feed(dict(snapshot))
        flight.next_due = time.monotonic() + max(flight.interval, cost / MAX_DUTY)

    def wake(self) -> None:
        """Make the thread look at its work now (safe from any thread)."""
        if self._wake_write >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_write, b"\0")

    # --- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            selector = selectors.DefaultSelector()
        except Exception:
            return
        self._selector = selector
        self._registered_listener = None
        try:
            selector.register(self._wake_read, selectors.EVENT_READ, None)
            for connection in self._connections.values():
                connection.mask = 0
                self._update_interest(connection)
            while not self._stopping.is_set() and not self._pausing:
                self._sync_listener(selector)
                events = selector.select(self._timeout())
                for key, mask in events:
                    if key.data is None:
                        with contextlib.suppress(OSError):
                            os.read(self._wake_read, 4096)
                    elif key.data == "listen":
                        self._accept_all()
                    else:
                        self._ready(key.data, mask)
                self._tick()
        except BaseException:
            pass  # the agent never raises into its host; a broken thread just stops serving
        finally:
            self._selector = None
            self._registered_listener = None
            with contextlib.suppress(Exception):
                selector.close()

    def _sync_listener(self, selector: selectors.BaseSelector) -> None:
        listener = self._listener
        if listener is self._registered_listener:
            return
        old = self._registered_listener
        if old is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                selector.unregister(old)
            old.close()
        if listener is not None:
            selector.register(listener, selectors.EVENT_READ, "listen")
        self._registered_listener = listener

    def _timeout(self) -> float:
        now = time.monotonic()
        soonest = self._next_prune
        if self.flight is not None:
            soonest = min(soonest, self.flight.next_due)
        for connection in self._connections.values():
            due = connection.next_due()
            if due is not None and due < soonest:
                soonest = due
        return max(0.0, min(soonest - now, PRUNE_INTERVAL))

    def _accept_all(self) -> None:
        listener = self._registered_listener
        while listener is not None:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._shed_ungreeted()  # out of descriptors: the silent ones go first
                return
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        credentials = peer_credentials(sock)
        if credentials is None or credentials[1] not in (os.getuid(), 0):
            pid = credentials[0] if credentials is not None else 0
        else:
            pid = credentials[0]
        ungreeted = [c for c in self._connections.values() if not c.greeted]
        if len(ungreeted) >= MAX_UNGREETED:
            oldest = min(ungreeted, key=lambda c: c.accepted_at)
            self._fail(oldest, "timeout", "connection closed: no hello, and others waiting")
        sock.setblocking(False)
        connection = _Connection(self, sock, pid)
        self._connections[sock.fileno()] = connection
        self._update_interest(connection)
        if credentials is None or credentials[1] not in (os.getuid(), 0):
            # Say who may connect (the uid is no secret: /proc shows it), then hang up.
            self._fail(
                connection,
                "forbidden",
                "only the process's own user or root may connect",
                uid=os.getuid(),
            )

    def _shed_ungreeted(self) -> None:
        for connection in list(self._connections.values()):
            if not connection.greeted:
                self._close(connection)

    def _ready(self, connection: _Connection, mask: int) -> None:
        if connection.closed:
            return
        try:
            if mask & selectors.EVENT_WRITE:
                connection.flush()
            if mask & selectors.EVENT_READ and not connection.closed:
                connection.receive()
            if not connection.closed:
                connection.work()
        except Exception:
            self._close(connection)  # a broken client never reaches the host program
            return
        if not connection.closed:
            self._update_interest(connection)

    def _tick(self) -> None:
        now = time.monotonic()
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_INTERVAL
            with contextlib.suppress(Exception):
                self.tracker.prune()
        try:
            self._feed_flight(now)
        except Exception:
            self.flight = None  # a recorder that fails is dropped; the agent goes on serving
        for connection in list(self._connections.values()):
            if connection.closed:
                continue
            try:
                connection.on_time(now)
                if not connection.closed:
                    connection.work()
            except Exception:
                self._close(connection)
                continue
            if not connection.closed:
                self._update_interest(connection)

    def _update_interest(self, connection: _Connection) -> None:
        selector = self._selector
        if selector is None or connection.closed:
            return
        mask = connection.interest()
        if mask == connection.mask:
            return
        try:
            if connection.mask == 0:
                selector.register(connection.sock, mask, connection)
            elif mask == 0:
                selector.unregister(connection.sock)
            else:
                selector.modify(connection.sock, mask, connection)
        except (KeyError, ValueError, OSError):
            self._close(connection)
            return
        connection.mask = mask

    def _close(self, connection: _Connection) -> None:
        if connection.closed:
            return
        connection.closed = True
        selector = self._selector
        if selector is not None and connection.mask:
            with contextlib.suppress(KeyError, ValueError, OSError):
                selector.unregister(connection.sock)
        connection.mask = 0
        self._connections.pop(connection.fd, None)
        with contextlib.suppress(OSError):
            connection.sock.close()

    def _fail(
        self, connection: _Connection, code: ErrorCode, message: str, uid: int | None = None
    ) -> None:
        """A last error reply, then hang up (the client reads it before EOF)."""
        if connection.closing or connection.closed:
            self._close(connection)
            return
        connection.lines.clear()
        connection.waiting = None
        connection.interval = None
        reply: ErrorReply = {"type": "error", "code": code, "message": message}
        if uid is not None:
            reply["uid"] = uid
        connection.send(reply)
        connection.closing = True
        if not connection.out:
            self._hang_up(connection)
        self._update_interest(connection)

    def _hang_up(self, connection: _Connection) -> None:
        """Our side is finished: shut down writing, then read and discard what the client
        still sends, for a moment. Closing with its requests unread would make the kernel
        reset the connection, and the client would lose our last reply."""
        if connection.closed or connection.draining_until is not None:
            return
        with contextlib.suppress(OSError):
            connection.sock.shutdown(socket.SHUT_WR)
        connection.lines.clear()
        connection.draining_until = time.monotonic() + DRAIN_SECONDS
        self._update_interest(connection)

    def take_slot(self, newcomer: _Connection) -> bool:
        """Room for one more greeted client: free, or given up by one idle for long enough."""
        greeted = [
            c
            for c in self._connections.values()
            if c.greeted and not c.closing and c is not newcomer
        ]
        if len(greeted) < MAX_CLIENTS:
            return True
        now = time.monotonic()
        idle = [
            c
            for c in greeted
            if c.interval is None
            and not c.out
            and c.waiting is None
            and now - c.last_active >= IDLE_EVICTABLE
        ]
        if not idle:
            return False
        longest = min(idle, key=lambda c: c.last_active)
        self._fail(longest, "evicted", "connection closed: idle while other clients waited")
        return True

    def holders(self) -> list[int]:
        """The pids of the processes holding the greeted slots, for a `busy` reply."""
        return sorted(
            {c.peer_pid for c in self._connections.values() if c.greeted and not c.closing}
        )

    # --- snapshots -----------------------------------------------------------------------------

    def snapshot(self, include_finished: bool = True) -> tuple[WireSnapshot, float]:
        """A snapshot as the agent sends it (countdowns as end times, records reused) and what
        it cost. One built a moment ago is handed out again rather than built anew: building
        takes at most `MAX_DUTY` of the time, however many clients ask."""
        with self._snapshot_lock:
            now = time.monotonic()
            cached = self._snapshots.get(include_finished)
            if cached is not None:
                built_at, cost, snapshot = cached
                if now - built_at < min(MAX_SNAPSHOT_REUSE, cost / MAX_DUTY):
                    return snapshot, cost
            snapshot = SnapshotBuilder(self.tracker).build_raw(include_finished)
            cost = time.monotonic() - now
            self._snapshots[include_finished] = (time.monotonic(), cost, snapshot)
            return snapshot, cost


class _Connection:
    """One client: its buffers, its subscription and its place in the protocol."""

    def __init__(self, server: AgentServer, sock: socket.socket, peer_pid: int) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.peer_pid = peer_pid
        self.mask = 0
        self.closed = False
        self.accepted_at = time.monotonic()
        self.last_active = self.accepted_at
        self.greeted = False
        self.buffer = LineBuffer(MAX_REQUEST_BYTES)
        self.lines: deque[bytes] = deque()
        self.out: deque[memoryview] = deque()
        #: When the client last took some of what we had to send (monotonic).
        self.last_drained = self.accepted_at
        #: Hang up once everything queued is sent (after an error that ends the connection).
        self.closing = False
        #: Hung up: what the client still sends is read and dropped until then (monotonic).
        self.draining_until: float | None = None
        self.interval: float | None = None
        self.next_tick = 0.0
        #: The records the last message of the subscription described, by task id.
        self.previous: dict[str, WireTask] = {}
        #: Set by a hello that asked for the compact encoding: what this client was sent.
        self.encoder: CompactEncoder | None = None
        #: A cancel reply waiting for the task's loop: the reply, until when it waits, and the
        #: box the loop puts the outcome (and error) in.
        self.waiting: tuple[CancelReply, float, list[tuple[CancelOutcome, str | None]]] | None = (
            None
        )

    # --- what the thread asks --------------------------------------------------------------------

    def interest(self) -> int:
        if self.draining_until is not None:
            return selectors.EVENT_READ
        if self.out:
            return selectors.EVENT_WRITE
        if self.closing or self.lines or self.waiting is not None:
            return 0
        return selectors.EVENT_READ

    def next_due(self) -> float | None:
        if self.draining_until is not None:
            return self.draining_until
        if self.out and self.closing:
            return self.last_drained + SEND_STALL_TIMEOUT
        if not self.greeted:
            return self.accepted_at + HELLO_TIMEOUT
        due: float | None = None
        if self.waiting is not None:
            due = self.waiting[1]
        if self.interval is not None and not self.out:
            due = self.next_tick if due is None else min(due, self.next_tick)
        if self.out:
            stall = self.last_drained + SEND_STALL_TIMEOUT
            due = stall if due is None else min(due, stall)
        if self.lines and not self.out and self.waiting is None:
            due = time.monotonic()  # more requests to answer: come back at once
        return due

    def on_time(self, now: float) -> None:
        if self.draining_until is not None:
            if now >= self.draining_until:
                self.server._close(self)
            return
        if not self.greeted and not self.closing and now >= self.accepted_at + HELLO_TIMEOUT:
            self.server._fail(self, "timeout", f"no hello within {HELLO_TIMEOUT:g} s")
            return
        if self.out and now - self.last_drained >= SEND_STALL_TIMEOUT:
            self.server._close(self)  # it stopped reading: nothing more can reach it
            return
        if self.waiting is not None:
            reply, deadline, box = self.waiting
            if box or now >= deadline:
                self.waiting = None
                if box:
                    reply["outcome"], error = box[0]
                    if error is not None:
                        reply["error"] = error
                else:
                    # Not run by the loop in time: it is blocked, and will run it later.
                    reply["outcome"] = "queued"
                self.send(reply)
        if (
            self.interval is not None
            and not self.out
            and self.waiting is None
            and now >= self.next_tick
        ):
            self.send_delta()

    def receive(self) -> None:
        try:
            data = self.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.server._close(self)
            return
        if not data:
            self.server._close(self)
            return
        if self.closing:
            return  # hung up: dropped unread
        try:
            self.lines.extend(self.buffer.feed(data))
        except ProtocolError as error:
            self.lines.clear()
            self.send(_error(error.code, str(error)))
            self.closing = True

    def work(self) -> None:
        """Answer the requests read so far, a few at a time, in order."""
        answered = 0
        while (
            self.lines
            and not self.out
            and not self.closing
            and self.waiting is None
            and answered < LINES_PER_TURN
        ):
            line = self.lines.popleft()
            if not line.strip():
                continue  # blank lines are allowed, and keep nothing alive
            answered += 1
            self.last_active = time.monotonic()
            try:
                keep = self.handle(line)
            except Exception:
                self.send(_error("internal", "the agent failed"))
                keep = False
            if not keep:
                self.lines.clear()
                self.closing = True
        if self.closing and not self.out:
            self.server._hang_up(self)

    # --- sending ---------------------------------------------------------------------------------

    def send(self, message: Reply) -> None:
        encoder = self.encoder
        if encoder is None:
            self.out.append(memoryview(encode(_plain(message))))
        else:
            # In pieces: no 10 MB string is made in one call holding the GIL (encode_chunks).
            self.out.extend(memoryview(chunk) for chunk in encoder.encode_chunks(message))
        self.flush()

    def flush(self) -> None:
        while self.out:
            view = self.out[0]
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.server._close(self)
                return
            self.last_drained = time.monotonic()
            if sent == len(view):
                self.out.popleft()
            else:
                self.out[0] = view[sent:]
        if self.closing:
            self.server._hang_up(self)

    # --- requests --------------------------------------------------------------------------------

    def handle(self, line: bytes) -> bool:
        """Answer one request; False closes the connection."""
        try:
            request = parse_request(line)
        except ProtocolError as error:
            self.send(_error(error.code, str(error)))
            # Garbage before a successful hello is not a client of ours: hang up.
            return self.greeted and error.code != "too_large"
        reply: HelloReply | SnapshotReply | StackReply
        if request.type == "hello":
            if request.protocol != PROTOCOL_VERSION:
                refusal = _error(
                    "version_mismatch",
                    f"agent speaks protocol {PROTOCOL_VERSION}, client speaks {request.protocol}",
                    request,
                )
                refusal["protocol"] = PROTOCOL_VERSION
                self.send(refusal)
                return False
            if not self.greeted and not self.server.take_slot(self):
                holders = self.server.holders()
                refusal = _error(
                    "busy",
                    f"too many clients ({len(holders)} processes hold {MAX_CLIENTS} connections)",
                    request,
                )
                refusal["clients"] = holders
                self.send(refusal)
                return False
            self.greeted = True
            hello: HelloReply = {
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
                hello["encoding"] = encoding
            reply = hello
        elif not self.greeted:
            self.send(_error("bad_request", "say hello first", request))
            return False
        elif request.type == "snapshot":
            snapshot, _cost = self.server.snapshot(request.include_finished)
            reply = {"type": "snapshot", "snapshot": snapshot}
        elif request.type == "subscribe":
            self.interval = request.interval
            self.previous = {}
            self.send_delta(first=True, request_id=request.request_id)
            return True
        elif request.type == "stack":
            reply = self.stack(request)
        elif request.type == "flight":
            self.send(self.flight(request))
            return True
        elif request.type == "detach":
            detach: DetachReply = {"type": "detach", "outcome": "detaching"}
            if request.request_id is not None:
                detach["re"] = request.request_id
            self.send(detach)
            # On a thread of its own: stopping the server hangs up on this very session.
            threading.Thread(target=_detach_agent, name="taskscope-detach", daemon=True).start()
            return False
        else:
            task_id = request.task_id or ""
            box: list[tuple[CancelOutcome, str | None]] = []
            server = self.server

            def delivered(outcome: CancelOutcome, error: str | None) -> None:  # loop's thread
                box.append((outcome, error))
                server.wake()

            outcome = request_cancel(self.server.tracker, task_id, request.message, delivered)
            # "queued" until the loop says otherwise (see `on_time`).
            cancel: CancelReply
            if request.request_id is None:
                cancel = {"type": "cancel", "task": task_id, "outcome": "queued"}
            else:
                re = request.request_id
                cancel = {"type": "cancel", "task": task_id, "re": re, "outcome": "queued"}
            if outcome is not None:
                cancel["outcome"] = outcome
                self.send(cancel)
            else:
                self.waiting = (cancel, time.monotonic() + CANCEL_WAIT, box)
            return True
        if request.request_id is not None:
            reply["re"] = request.request_id
        self.send(reply)
        return True

    def flight(self, request: Request) -> FlightReply | ErrorReply:
        flight = self.server.flight
        if flight is None:
            return _error("flight_off", "the flight recorder is off", request)
        return _flight_reply(flight, request)

    def stack(self, request: Request) -> StackReply:
        tracker = self.server.tracker
        task_id = request.task_id or "0"
        number = int(task_id)
        task = find_task(tracker, number)
        if task is None:
            for finished in tracker.finished_tasks():
                if finished.task_id == number:
                    record = finished_record(tracker, finished)
                    return {
                        "type": "stack",
                        "task": task_id,
                        "found": True,
                        "record": record,
                        "stack": [],
                    }
            return {"type": "stack", "task": task_id, "found": False, "stack": []}
        reply: StackReply = {"type": "stack", "task": task_id, "found": True, "stack": []}
        meta = tracker.meta_of(task)
        reply["stack"] = [
            _stack_frame(frame.f_code, frame.f_lineno) for frame in walk_frames(task_coro(task))
        ]
        reply["created_from"] = [
            _stack_frame(code, line) for code, line in (meta.created_from if meta else ())
        ]
        return reply

    def send_delta(self, first: bool = False, request_id: int | None = None) -> None:
        snapshot, cost = self.server.snapshot(True)
        interval = self.interval or 0.5
        self.next_tick = time.monotonic() + max(interval, cost / MAX_DUTY)
        current = {record["id"]: record for record in snapshot["tasks"]}
        if first:
            self.previous = current
            message: SnapshotReply = {"type": "snapshot", "snapshot": snapshot}
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
        delta: WireDelta = {
            "taken_at": snapshot["taken_at"],
            "loops": snapshot["loops"],
            "changed": changed,
            "removed": removed,
            "cycles": snapshot["cycles"],
            "build_seconds": round(cost, 4),
        }
        if "loop_time" in snapshot:
            delta["loop_time"] = snapshot["loop_time"]
        self.send({"type": "delta", "delta": delta})


def _detach_agent() -> None:
    """Stop the agent and restore what it changed (`taskscope detach PID`)."""
    try:
        from taskscope import agent

        agent.detach()
    except Exception:
        pass


def _flight_reply(flight: FlightRecorder, request: Request) -> FlightReply | ErrorReply:
    """What the flight recorder holds, in schema 1 (as a plain reply: made once, rarely)."""
    held = flight.export()
    if held is None:
        return _error("flight_off", "the flight recorder has not looked yet", request)
    base, deltas = held
    reply: FlightReply = {
        "type": "flight",
        "window": flight.window,
        "base": cast(WireSnapshot, materialize_body(base, "tasks")),
        "deltas": [cast(WireDelta, materialize_body(delta, "changed")) for delta in deltas],
    }
    if request.request_id is not None:
        reply["re"] = request.request_id
    return reply


def _error(code: ErrorCode, message: str, request: Request | None = None) -> ErrorReply:
    """An error reply, to `request` when given (`re`: its id, or null)."""
    if request is None:
        return {"type": "error", "code": code, "message": message}
    return {"type": "error", "re": request.request_id, "code": code, "message": message}


def _stack_frame(code: CodeType, line: int | None) -> StackFrame:
    """A frame of a `stack` reply, its line of source read by the agent."""
    frame = frame_record(code, line)
    return {
        "function": frame["function"],
        "file": frame["file"],
        "line": frame["line"],
        "source": _source_line(code.co_filename, line),
    }


def _plain(message: Reply) -> Reply:
    """A message in schema 1: the countdowns of its snapshot or delta counted."""
    if message["type"] == "snapshot":
        snapshot = materialize_body(dict(message["snapshot"]), "tasks")
        return {**message, "snapshot": snapshot}  # type: ignore[typeddict-item]
    if message["type"] == "delta":
        delta = materialize_body(dict(message["delta"]), "changed")
        return {**message, "delta": delta}  # type: ignore[typeddict-item]
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
