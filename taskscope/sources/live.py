"""The live source: the taskscope agent inside the process, over its Unix socket.

`client.AgentClient` stays the wire client (one connection, not thread-safe); `LiveSource`
holds one for the subscription (its own thread) and another, behind a lock, for commands
from any thread. `open_live` connects, finding an agent the target put elsewhere or loading
one into the process when none runs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar, cast

from taskscope.client import AgentClient, ClientError, NoAgent, no_agent_message
from taskscope.early import SentAhead
from taskscope.process_facts import ProcessFacts
from taskscope.protocol import CompactSnapshot, WireDelta, WireSnapshot
from taskscope.sources.base import (
    CancelResult,
    Capability,
    DeltaUpdate,
    ProcessIdentity,
    ProcessInfo,
    SnapshotUpdate,
    StackReply,
    Update,
)

_Result = TypeVar("_Result")


class DetachFailed(ClientError):
    """The agent was asked to stop and its socket is still there."""


class LiveSource:
    """The agent in process `pid`. Connections open on first use; `connect` opens the one
    for commands now (and says at once when no agent answers)."""

    capabilities = (
        Capability.PUSH
        | Capability.CANCEL
        | Capability.STACK_SOURCE
        | Capability.DETACH
        | Capability.HISTORY
    )

    def __init__(
        self,
        pid: int,
        *,
        timeout: float = 10.0,
        socket_dir: str | None = None,
        on_slow: Callable[[float], None] | None = None,
        injected: bool = False,
        client_factory: Callable[[], AgentClient] | None = None,
        remote: str | None = None,
        ahead: SentAhead | None = None,
        hint_starved: bool = False,
    ) -> None:
        self.pid = pid
        self.timeout = timeout
        #: Where the agent listens when not where we look (another user's, a chroot's).
        self.socket_dir = socket_dir
        #: Told the seconds waited when the agent is slow to answer (see `AgentClient`).
        self.on_slow = on_slow
        #: The agent was loaded into the process to take this look.
        self.injected = injected
        self._feed: AgentClient | None = None
        self._commands: AgentClient | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._facts = ProcessFacts(pid)
        self._hello: dict[str, object] = {}
        #: A process on another host (taskscope.remote): its clients are made by
        #: `client_factory` (ssh to a bridge there), and `remote` names the host, whose
        #: process facts are not this host's psutil's to give.
        self._client_factory = client_factory
        self.remote = remote
        #: Requests sent before the imports (taskscope/early.py), for the first client.
        self._ahead = ahead
        #: When the agent is slow to answer, and the process runs only its main thread, ask
        #: the agent to check whether it is kept from the GIL (`attach.hint_starved_agent`;
        #: an injection, so only where the user lets taskscope inject), until it was told.
        self.hint_starved = hint_starved and remote is None
        self._hinted = False

    @property
    def label(self) -> str:
        where = f" on {self.remote}" if self.remote else ""
        return f"process {self.pid}{where}"

    @property
    def path(self) -> str:
        """The agent's socket."""
        if self._commands is not None:
            return self._commands.path
        return self._client().path

    def _client(self) -> AgentClient:
        if self._client_factory is not None:
            return self._client_factory()
        ahead, self._ahead = self._ahead, None
        return AgentClient(
            self.pid,
            timeout=self.timeout,
            socket_dir=self.socket_dir,
            on_slow=self._slow if self.on_slow is not None or self.hint_starved else None,
            ahead=ahead,
        )

    def _slow(self, seconds: float) -> None:
        if self.on_slow is not None:
            self.on_slow(seconds)
        if self.hint_starved and not self._hinted:
            from taskscope.attach import hint_starved_agent

            self._hinted = hint_starved_agent(
                self.pid, seconds, timeout=max(1.0, min(10.0, self.timeout / 2))
            )

    def connect(self) -> None:
        with self._lock:
            self._command_client()

    def command_client(self) -> AgentClient:
        """The connected client for commands (for what only a live agent's client can do,
        such as a remote bridge's own questions)."""
        with self._lock:
            return self._command_client()

    def _command_client(self) -> AgentClient:
        if self._commands is None:
            client = self._client()
            hello = client.connect()
            self._hello = self._hello or dict(hello)
            self._commands = client
        return self._commands

    def _call(self, request: Callable[[AgentClient], _Result]) -> _Result:
        with self._lock:
            client = self._command_client()
            try:
                return request(client)
            except Exception:
                # A broken connection is not reused: the next command reconnects.
                client.close()
                self._commands = None
                raise

    def snapshot(self, include_finished: bool = True) -> WireSnapshot:
        return self._call(lambda client: client.snapshot(include_finished=include_finished))

    def snapshot_rows(self, include_finished: bool = True) -> CompactSnapshot | WireSnapshot:
        """`snapshot`, its task rows left as the agent sent them (`AgentClient.snapshot_rows`):
        what `dump` writes its JSON from. Read them before the next command."""
        return self._call(lambda client: client.snapshot_rows(include_finished=include_finished))

    def subscribe(self, interval: float) -> Iterator[Update]:
        client = self._client()
        hello = client.connect()
        with self._lock:
            self._hello = self._hello or dict(hello)
            if self._closed.is_set():
                client.close()
                return
            self._feed = client
        try:
            for kind, payload in client.subscribe(interval):
                if kind == "snapshot":
                    yield SnapshotUpdate(cast(WireSnapshot, payload))
                else:
                    yield DeltaUpdate(cast(WireDelta, payload))
        finally:
            client.close()

    def stack(self, task_id: str) -> StackReply:
        return self._call(lambda client: client.stack(task_id))

    def cancel(self, task_id: str, message: str | None = None) -> CancelResult:
        reply = self._call(lambda client: client.cancel_reply(task_id, message))
        error = reply.get("error")
        return CancelResult(str(reply.get("outcome")), None if error is None else str(error))

    def detach(self) -> None:
        """Ask the agent to stop and undo what it changed in the process, then wait (up to
        the timeout) for its socket to go."""
        path = self.path
        self._call(lambda client: client.detach())
        with self._lock:
            if self._commands is not None:
                self._commands.close()  # the agent hangs up after answering
                self._commands = None
        if not _wait_gone(path, self.timeout):
            raise DetachFailed(f"the agent of process {self.pid} did not stop")

    def identity(self) -> ProcessIdentity:
        """From the agent's hello (connecting when not yet connected)."""
        with self._lock:
            self._command_client()
        hello = self._hello
        identity: ProcessIdentity = {"pid": self.pid}
        if isinstance(hello.get("python"), str):
            identity["python"] = str(hello["python"])
        argv = hello.get("argv")
        if isinstance(argv, list):
            identity["argv"] = [str(arg) for arg in argv]
        if isinstance(hello.get("executable"), str):
            identity["executable"] = str(hello["executable"])
        started_at = hello.get("started_at")
        if isinstance(started_at, int | float):
            identity["started_at"] = float(started_at)
        return identity

    def process_info(self) -> ProcessInfo:
        if self.remote is not None:
            remote: ProcessInfo = {"pid": self.pid, "host": self.remote}
            argv = self._hello.get("argv")
            if isinstance(argv, list):
                remote["command"] = " ".join(str(arg) for arg in argv)
            if isinstance(self._hello.get("python"), str):
                remote["python"] = str(self._hello["python"])
            return remote
        info = self._facts.read()
        python = self._hello.get("python")
        if python:
            info["python"] = str(python)
        return info

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            feed, self._feed = self._feed, None
        if feed is not None:
            feed.close()  # also wakes the worker blocked reading the subscription
        with self._lock:
            if self._commands is not None:
                self._commands.close()
                self._commands = None


def open_live(
    pid: int,
    *,
    timeout: float = 10.0,
    inject: bool = True,
    on_slow: Callable[[float], None] | None = None,
) -> LiveSource:
    """A connected `LiveSource` for `pid`: its agent where we look, else where the target
    put it (another user's directory, a chroot or container), else (with `inject`) one loaded
    into the process now. `NoAgent` when there is none and `inject` is off."""
    source = LiveSource(pid, timeout=timeout, on_slow=on_slow, hint_starved=inject)
    try:
        source.connect()
        return source
    except NoAgent:
        pass
    from taskscope.attach import agent_socket, load_agent

    path = agent_socket(pid)
    injected = False
    if path is None:
        if not inject:
            raise NoAgent(no_agent_message(pid))
        path = load_agent(pid, timeout=timeout)
        injected = True
    source = LiveSource(
        pid,
        timeout=timeout,
        socket_dir=os.path.dirname(path),
        on_slow=on_slow,
        injected=injected,
        hint_starved=inject,
    )
    source.connect()
    return source


def _wait_gone(path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
