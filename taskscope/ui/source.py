"""Where the dashboard's data comes from: the `TaskSource` protocol the app is written against,
`AgentSource` (the real one, over the agent's socket) and `ProcessFacts` (psutil facts for the
header).

The app never talks to a socket itself. Tests pass a fake source; a recorded session or an
aiomonitor-backed source could plug in the same way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from taskscope.client import AgentClient
from taskscope.process_facts import ProcessFacts
from taskscope.process_facts import ProcessInfo as ProcessInfo  # the TaskSource protocol's
from taskscope.protocol import StackReply, WireDelta, WireSnapshot

#: What `subscribe` yields: ("snapshot", WireSnapshot) first, then ("delta", WireDelta)...
Update = tuple[str, WireSnapshot | WireDelta]


class TaskSource(Protocol):
    """The dashboard's view of a monitored process. Every method may block (it is called
    from worker threads, never from the UI thread) and may raise `ClientError`."""

    pid: int

    def subscribe(self, interval: float) -> Iterator[Update]:
        """A snapshot, then deltas every `interval` seconds, until the process goes away."""
        ...

    def cancel(self, task_id: str) -> str:
        """Request cancellation: "requested", "already_finished" or "no_such_task"."""
        ...

    def stack(self, task_id: str) -> StackReply:
        """The task's stack with source lines (`found`, `stack`, `created_from`, `record`)."""
        ...

    def snapshot(self) -> WireSnapshot:
        """A full snapshot, finished tasks included (for export)."""
        ...

    def process_info(self) -> ProcessInfo:
        """Facts for the header: command line, CPU, memory, threads, open files."""
        ...

    def close(self) -> None:
        """Release connections; unblocks a running `subscribe`."""
        ...


class AgentSource:
    """The real source: one `AgentClient` for the subscription (its own thread) and another,
    behind a lock, for commands (cancel, stack, snapshot) from any worker thread."""

    def __init__(
        self,
        pid: int,
        *,
        timeout: float = 10.0,
        socket_dir: str | None = None,
        client_factory: Callable[[], AgentClient] | None = None,
        remote: str | None = None,
    ) -> None:
        self.pid = pid
        self.timeout = timeout
        #: Where the agent listens when not where we look (another user's, a chroot's).
        self.socket_dir = socket_dir
        self._feed: AgentClient | None = None
        self._commands: AgentClient | None = None
        self._lock = threading.Lock()
        self._facts = ProcessFacts(pid)
        self._python = ""
        #: Remote processes (taskscope.remote): clients made by `client_factory`, and the
        #: host named in the header instead of this host's psutil facts of a pid not here.
        self._client_factory = client_factory
        self.remote = remote
        self._command_line = ""

    def _new_client(self) -> AgentClient:
        if self._client_factory is not None:
            return self._client_factory()
        return AgentClient(self.pid, timeout=self.timeout, socket_dir=self.socket_dir)

    def subscribe(self, interval: float) -> Iterator[Update]:
        client = self._new_client()
        hello = client.connect()
        self._python = hello["python"]
        self._command_line = " ".join(str(arg) for arg in hello.get("argv") or ())
        self._feed = client
        try:
            yield from client.subscribe(interval)
        finally:
            client.close()

    def _command_client(self) -> AgentClient:
        if self._commands is None:
            client = self._new_client()
            hello = client.connect()
            self._python = self._python or hello["python"]
            self._commands = client
        return self._commands

    def _call(self, method: str, *args: Any) -> Any:
        with self._lock:
            client = self._command_client()
            try:
                return getattr(client, method)(*args)
            except Exception:
                # A broken connection is not reused: the next command reconnects.
                client.close()
                self._commands = None
                raise

    def cancel(self, task_id: str) -> str:
        return str(self._call("cancel", task_id, "cancelled from the taskscope dashboard"))

    def stack(self, task_id: str) -> StackReply:
        reply: StackReply = self._call("stack", task_id)
        return reply

    def snapshot(self) -> WireSnapshot:
        snapshot: WireSnapshot = self._call("snapshot")
        return snapshot

    def process_info(self) -> ProcessInfo:
        if self.remote is not None:
            remote: ProcessInfo = {"pid": self.pid, "host": self.remote}
            if self._command_line:
                remote["command"] = self._command_line
            if self._python:
                remote["python"] = self._python
            return remote
        info = self._facts.read()
        if self._python:
            info["python"] = self._python
        return info

    def close(self) -> None:
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.close()  # also wakes the worker blocked reading the subscription
        with self._lock:
            if self._commands is not None:
                self._commands.close()
                self._commands = None


def default_export_dir() -> str:
    return os.getcwd()
