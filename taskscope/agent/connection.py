"""One client of the agent's server: its buffers, its subscription, and the answer to each
of its requests (hello, snapshot, subscribe, stack, cancel, detach, flight, time_steps). The
server (`server.py`) accepts it, admits it and gives it turns on its thread; everything the
connection says goes through here.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import threading
import time
from collections import deque
from types import CodeType
from typing import TYPE_CHECKING, cast

from taskscope import __version__

#: Greeted clients served at once.
# The server's limits are read from its module when used: it imports this one.
from taskscope.agent import server as _server
from taskscope.agent.cancel import request_cancel
from taskscope.agent.chains import frame_record, frames_and_gap, walk_frames
from taskscope.agent.flight import FlightRecorder, changes_between
from taskscope.agent.introspect import find_task, finished_record
from taskscope.agent.tracker import task_coro
from taskscope.agent.trio_runs import find_trio_task
from taskscope.protocol import (
    CANCEL_WAIT,
    COMPACT,
    MAX_REQUEST_BYTES,
    PLAIN,
    PROTOCOL_VERSION,
    CancelOutcome,
    CancelReply,
    CompactEncoder,
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
    TimeStepsReply,
    WireDelta,
    WireSnapshot,
    WireTask,
    encode,
    materialize_body,
    parse_request,
    pieces,
)

if TYPE_CHECKING:
    from taskscope.agent.server import AgentServer


class Connection:
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
            return self.last_drained + _server.SEND_STALL_TIMEOUT
        if not self.greeted:
            return self.accepted_at + _server.HELLO_TIMEOUT
        due: float | None = None
        if self.waiting is not None:
            due = self.waiting[1]
        if self.interval is not None and not self.out:
            due = self.next_tick if due is None else min(due, self.next_tick)
        if self.out:
            stall = self.last_drained + _server.SEND_STALL_TIMEOUT
            due = stall if due is None else min(due, stall)
        if self.lines and not self.out and self.waiting is None:
            due = time.monotonic()  # more requests to answer: come back at once
        return due

    def on_time(self, now: float) -> None:
        if self.draining_until is not None:
            if now >= self.draining_until:
                self.server._close(self)
            return
        if (
            not self.greeted
            and not self.closing
            and now >= self.accepted_at + _server.HELLO_TIMEOUT
        ):
            # A hello may wait unread because this thread was kept from the GIL (a loop busy
            # in short steps): the client was not silent, the agent was late to read.
            self.receive()
            if self.closed or self.lines:
                return
            self.server._fail(self, "timeout", f"no hello within {_server.HELLO_TIMEOUT:g} s")
            return
        if self.out and now - self.last_drained >= _server.SEND_STALL_TIMEOUT:
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
            data = self.sock.recv(_server.READ_CHUNK)
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
            and answered < _server.LINES_PER_TURN
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
                    f"too many clients ({len(holders)} processes hold "
                    f"{_server.MAX_CLIENTS} connections)",
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
        elif request.type == "time_steps":
            self.send(self.time_steps(request))
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
                server.snapshots_stale = True  # a flag: the loop's thread takes no lock
                server.wake()

            outcome = request_cancel(self.server.tracker, task_id, request.message, delivered)
            server.snapshots_stale = True
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

    def time_steps(self, request: Request) -> TimeStepsReply | ErrorReply:
        """Turn step timing on or off (a boolean, nothing else: see `StepTimer.set_timed`)."""
        timer = self.server.tracker.steps
        if timer is None:
            return _error("unavailable", "this agent watches no steps", request)
        refused = timer.set_timed(request.on)
        if refused is not None:
            return _error("unavailable", refused, request)
        reply: TimeStepsReply = {"type": "time_steps", "on": timer.timed}
        if request.request_id is not None:
            reply["re"] = request.request_id
        return reply

    def stack(self, request: Request) -> StackReply:
        tracker = self.server.tracker
        task_id = request.task_id or "0"
        number = int(task_id)
        task = find_task(tracker, number)
        if task is None and (trio_found := find_trio_task(tracker, number)) is not None:
            trio_task, origin = trio_found
            frames = walk_frames(trio_task.coro)
            stack = [_stack_frame(frame.f_code, frame.f_lineno) for frame in frames]
            return {
                "type": "stack",
                "task": task_id,
                "found": True,
                "stack": stack,
                "created_from": [_stack_frame(code, line) for code, line in origin],
            }
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
        frames, gap = frames_and_gap(task_coro(task))
        reply["stack"] = [_stack_frame(frame.f_code, frame.f_lineno) for frame in frames]
        if gap is not None:
            reply["left_out_at"], reply["left_out"] = gap
        reply["created_from"] = [
            _stack_frame(code, line) for code, line in (meta.created_from if meta else ())
        ]
        return reply

    def send_delta(self, first: bool = False, request_id: int | None = None) -> None:
        try:
            snapshot, cost = self.server.snapshot(True)
        except Exception as error:
            # Said to the client, which would otherwise see its subscription end unexplained.
            self.server._fail(
                self,
                "internal",
                f"the agent failed to look at the tasks ({type(error).__name__}); please report it",
            )
            return
        interval = self.interval or 0.5
        self.next_tick = time.monotonic() + max(interval, cost / _server.MAX_DUTY)
        if first:
            self.previous = {
                record["id"]: record for piece in pieces(snapshot["tasks"]) for record in piece
            }
            message: SnapshotReply = {"type": "snapshot", "snapshot": snapshot}
            if request_id is not None:
                message["re"] = request_id
            self.send(message)
            return
        self.previous, changed, removed = changes_between(self.previous, snapshot["tasks"])
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
        if "gil_wait" in snapshot:
            delta["gil_wait"] = snapshot["gil_wait"]
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
