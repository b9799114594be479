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
import threading
import time

from taskscope.agent.connection import Connection
from taskscope.agent.flight import FlightRecorder
from taskscope.agent.gil import STARVED_AFTER, WORK_GRACE, GilShare
from taskscope.agent.introspect import SnapshotBuilder
from taskscope.agent.loops import HEARTBEAT_INTERVAL
from taskscope.agent.tracker import Tracker
from taskscope.agent.trio_runs import beat_trio_runs, next_trio_beat, trio_turned_since
from taskscope.protocol import (
    CompactTables,
    ErrorCode,
    ErrorReply,
    WireSnapshot,
    ensure_private_directory,
    own_socket_path,
    socket_directory,
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
#: The longest the thread waits while loops run (each wait is a probe for starvation).
STARVATION_PROBE = 1.0
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
        self.path = own_socket_path(self.directory)
        self._listener: socket.socket | None = None
        #: The inode of the socket file we bound: a file at our path with another is not ours.
        self._inode: int | None = None
        self._stopping = threading.Event()
        self._pausing = False
        self._control = threading.Lock()
        self._wake_read = -1
        self._wake_write = -1
        self._connections: dict[int, Connection] = {}
        self._selector: selectors.BaseSelector | None = None
        self._registered_listener: socket.socket | None = None
        self._snapshot_lock = threading.Lock()
        self._snapshots: dict[bool, tuple[float, float, WireSnapshot]] = {}
        #: Set when a cancel was asked for or delivered since the last snapshot was built:
        #: the next request gets a new one, never one that predates the cancel.
        self.snapshots_stale = False
        #: The last minute (or so) kept in memory, when turned on (`start_flight_recorder`).
        self.flight: FlightRecorder | None = None
        #: The compact encoding's tables and encoded rows, shared by all connections.
        self.tables = CompactTables()
        self._thread: threading.Thread | None = None
        #: Whether the program keeps this thread from the GIL, and the interval lowered then.
        self.gil = GilShare()
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
        self.gil.expect_back(time.monotonic() + WORK_GRACE)
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
        self.gil.restore()

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
        self.gil.restore_in_child()

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
        try:
            snapshot, cost = self.snapshot(True)
        except Exception:
            # A look that failed twice: this sample is skipped, the recorder goes on (a
            # recorder that fails itself is dropped, by `_tick`).
            flight.next_due = time.monotonic() + flight.interval
            return
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
                timeout = self._timeout()
                began = time.monotonic()
                self.gil.expect_back(began + timeout)
                events = selector.select(timeout)
                took = time.monotonic() - began
                self.gil.expect_back(began + took + WORK_GRACE)
                if took - timeout >= STARVED_AFTER:
                    self.gil.waited(timeout, took, self._loops_turned_since(began))
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
            self.gil.expect_back(None)  # a thread that stopped is not kept from anything
            self._selector = None
            self._registered_listener = None
            with contextlib.suppress(Exception):
                selector.close()

    def _loops_turned_since(self, began: float) -> bool:
        """Whether a loop's heartbeat (asyncio's, or a trio run's) ran since `began`
        (monotonic): the loops turned while this thread waited, so they starved it; none did:
        a call held the GIL (or the process was stopped), which no switch interval shortens."""
        for record in list(self.tracker.loops.values()):
            due = record.beat_due
            if due is not None and due - HEARTBEAT_INTERVAL > began:
                return True
        return trio_turned_since(self.tracker, began)

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
        steps = self.tracker.steps
        if steps is not None:
            soonest = min(soonest, steps.next_watch)
        if self.flight is not None:
            soonest = min(soonest, self.flight.next_due)
        trio_beat = next_trio_beat()  # the heartbeat of trio's runs, when imported
        if trio_beat is not None:
            soonest = min(soonest, trio_beat)
        for connection in self._connections.values():
            due = connection.next_due()
            if due is not None and due < soonest:
                soonest = due
        # While loops run, a wait never longer than a second: how late it ends tells whether
        # they keep this thread from the GIL (`gil.py`), before a client finds out.
        longest = STARVATION_PROBE if self.tracker.loops else PRUNE_INTERVAL
        return max(0.0, min(soonest - now, longest))

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
        connection = Connection(self, sock, pid)
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

    def _ready(self, connection: Connection, mask: int) -> None:
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
        with contextlib.suppress(Exception):
            self.gil.tick(now, len(self._connections))
        steps = self.tracker.steps
        if steps is not None and now >= steps.next_watch:
            with contextlib.suppress(Exception):
                steps.watch(now)
        with contextlib.suppress(Exception):
            beat_trio_runs(self.tracker, now)  # nothing unless the program imported trio
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

    def _update_interest(self, connection: Connection) -> None:
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

    def _close(self, connection: Connection) -> None:
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
        self, connection: Connection, code: ErrorCode, message: str, uid: int | None = None
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

    def _hang_up(self, connection: Connection) -> None:
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

    def take_slot(self, newcomer: Connection) -> bool:
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
        takes at most `MAX_DUTY` of the time, however many clients ask; but not after a
        cancel (`snapshots_stale`): `cancel` then `ps` must show the cancel."""
        with self._snapshot_lock:
            now = time.monotonic()
            cached = self._snapshots.get(include_finished)
            if cached is not None and not self.snapshots_stale:
                built_at, cost, snapshot = cached
                if now - built_at < min(MAX_SNAPSHOT_REUSE, cost / MAX_DUTY):
                    return snapshot, cost
            if self.snapshots_stale:
                self._snapshots.clear()
                # Cleared before the look: a cancel delivered during it marks it stale again.
                self.snapshots_stale = False
            try:
                snapshot = SnapshotBuilder(self.tracker).build_raw(include_finished)
            except Exception:
                # A look reads what the loops' threads change meanwhile: one that met a change
                # it did not foresee is made once more before the client is told.
                snapshot = SnapshotBuilder(self.tracker).build_raw(include_finished)
            cost = time.monotonic() - now
            gil_wait = self.gil.facts()
            if gil_wait is not None:
                snapshot["gil_wait"] = gil_wait
            self._snapshots[include_finished] = (time.monotonic(), cost, snapshot)
            return snapshot, cost
