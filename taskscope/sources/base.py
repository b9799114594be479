"""The `Source` protocol: where the CLI and the dashboard get a process's tasks from.

A source is one look at one process (or, later, at several): it gives schema-1 snapshots,
a subscription (a snapshot, then deltas), a task's stack, and, when it can, cancels a task or
unloads the agent. What it cannot do is said by its `capabilities` flags, and a call it
cannot serve raises `Unsupported`, whose message is the one line to show, so a front end
never fails on a missing feature.

Implementations: `live.LiveSource` (the agent in the process, over its socket),
`readonly.ReadOnlySource` (the process's memory, 3.14+), and the fakes of tests/ui/fakes.py.
tests/test_source_contract.py holds every one to this protocol.

Where a new source goes: a module of this package with a class that follows `Source`, run
through the contract suite (add it to its `SOURCES`), and chosen in `choose.open_source`.
  - a recording file (`taskscope.recording.open_recording`): `snapshot` is the state at the
    chosen time (`Recording.snapshot_at`), `subscribe` replays `Recording.states()` at their
    recorded pace as a snapshot then deltas (`delta_between`); capabilities none;
    `identity` is the recording's facts.
  - a remote host over ssh: `ssh HOST taskscope serve PID` relays the agent's NDJSON, so a
    `client.AgentClient` over that pipe instead of the Unix socket is `LiveSource` again;
    `process_info` comes from the remote side.
  - several processes at once: one source per process, merged by a source that prefixes
    task and loop ids with the pid; `pid` is then the first one and `label` names them all.
A source that can only take whole snapshots subscribes by polling them (`poll_updates`),
which turns successive snapshots into deltas, so the dashboard needs nothing special.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypedDict, runtime_checkable

from taskscope import protocol
from taskscope.client import ClientError
from taskscope.process_facts import (
    ProcessInfo as ProcessInfo,  # process_info()'s facts
    process_name,
    process_state,
    status_field,
)
from taskscope.protocol import WireDelta, WireSnapshot


class ProcessStopped(ClientError):
    """The process is stopped (a SIGSTOP, Ctrl-Z, a debugger holding it): nothing runs in
    it, the agent included, so no agent can answer or be loaded until it runs again."""


def stopped_process(pid: int, traced: bool = False) -> ProcessStopped | None:
    """Why `pid` cannot answer now, if it is stopped: the error to raise or to say, in
    words that tell the user how to let it run; None when it runs (or is gone). `traced`:
    also a process held by a tracer, named (left out where the tracer may be our own gdb,
    which holds a process it loads the agent into for milliseconds)."""
    state = process_state(pid)
    if state == "T":
        return ProcessStopped(
            f"process {pid} is stopped (a SIGSTOP, or Ctrl-Z in its terminal): nothing runs in "
            f"it, the agent included; resume it with `kill -CONT {pid}` (or `fg` in its shell)"
        )
    if state == "t" and traced:
        tracer = status_field(pid, "TracerPid")
        holder = (
            f"{process_name(int(tracer))} (pid {tracer})"
            if tracer not in (None, "0")
            else "a debugger"
        )
        return ProcessStopped(
            f"process {pid} is held by {holder}, a debugger or tracer: nothing runs in it, "
            "the agent included; let it continue there, or detach the debugger"
        )
    return None


class Capability(enum.Flag):
    """What a source can do beyond taking snapshots."""

    NONE = 0
    #: The source pushes deltas as tasks change; without it `subscribe` polls snapshots.
    PUSH = enum.auto()
    #: `cancel` reaches the task's loop.
    CANCEL = enum.auto()
    #: `stack` gives source lines and where the task was created, finished tasks included.
    STACK_SOURCE = enum.auto()
    #: `detach` unloads an agent from the process.
    DETACH = enum.auto()
    #: Snapshots keep finished tasks (history) and what a leaf task waits on.
    HISTORY = enum.auto()


class Unsupported(ClientError):
    """A source was asked for something its capabilities lack; str() is the line to show."""


@dataclass(frozen=True, slots=True)
class SnapshotUpdate:
    """A whole picture: replaces everything known before."""

    snapshot: WireSnapshot


@dataclass(frozen=True, slots=True)
class DeltaUpdate:
    """What changed since the previous update of the same subscription."""

    delta: WireDelta


#: What `subscribe` yields: a `SnapshotUpdate` first, then `DeltaUpdate`s (a later
#: `SnapshotUpdate` replaces everything before it).
Update = SnapshotUpdate | DeltaUpdate


@dataclass(frozen=True, slots=True)
class CancelResult:
    """The answer to a cancel: `outcome` is one of protocol.CancelOutcome ("requested",
    "queued", "already_finished", "no_such_task", "failed"); `error` says why it failed."""

    outcome: str
    error: str | None = None


#: A task's stack: the agent's typed reply (docs/protocol.md, `stack`).
StackReply = protocol.StackReply


class ProcessIdentity(TypedDict, total=False):
    """What the process says it is (the live agent's hello); any of it may be unknown."""

    pid: int
    python: str
    argv: list[str]
    executable: str
    #: When the look began to be possible (the agent's start), in wall-clock seconds.
    started_at: float


@runtime_checkable
class Source(Protocol):
    """A look at a process. Every method may block (the dashboard calls them from worker
    threads, never from its UI thread) and may raise `ClientError` with the line to show."""

    #: The process looked at.
    pid: int
    #: What it can do beyond snapshots.
    capabilities: Capability

    @property
    def label(self) -> str:
        """What the look is, in a few words: "process 4242", "process 4242 (read-only)"."""
        ...

    def snapshot(self, include_finished: bool = True) -> WireSnapshot:
        """A schema-1 snapshot; finished tasks included when asked and known."""
        ...

    def subscribe(self, interval: float) -> Iterator[Update]:
        """A snapshot, then deltas about every `interval` seconds, until the process goes
        away or `close` is called (then the iterator ends or raises `ClientError`)."""
        ...

    def stack(self, task_id: str) -> StackReply:
        """The task's stack, outermost frame first, with source lines when `STACK_SOURCE`."""
        ...

    def cancel(self, task_id: str, message: str | None = None) -> CancelResult:
        """Ask the task's loop to cancel it; `Unsupported` without `CANCEL`."""
        ...

    def detach(self) -> None:
        """Unload the agent and wait for it to be gone; `Unsupported` without `DETACH`."""
        ...

    def identity(self) -> ProcessIdentity:
        """What the process is: pid, Python version, argv, executable (what is known)."""
        ...

    def process_info(self) -> ProcessInfo:
        """Facts for the header: command line, CPU, memory, threads, open files."""
        ...

    def close(self) -> None:
        """Release connections and unblock a running `subscribe`. Safe to call twice."""
        ...


def delta_between(old: WireSnapshot, new: WireSnapshot) -> WireDelta:
    """The delta that turns `old` into `new`: tasks added or changed, tasks gone."""
    before = {task["id"]: task for task in old["tasks"]}
    after = {task["id"]: task for task in new["tasks"]}
    changed = [task for task_id, task in after.items() if before.get(task_id) != task]
    return {
        "taken_at": new["taken_at"],
        "loops": new["loops"],
        "changed": changed,
        "removed": [task_id for task_id in before if task_id not in after],
        "cycles": new["cycles"],
    }


def poll_updates(
    take: Callable[[], WireSnapshot], interval: float, closed: threading.Event
) -> Iterator[Update]:
    """A subscription for a source that can only take whole snapshots: the first snapshot,
    then every `interval` seconds the delta to a fresh one, until `closed` is set."""
    previous = take()
    yield SnapshotUpdate(previous)
    while not closed.wait(interval):
        current = take()
        if closed.is_set():
            return
        yield DeltaUpdate(delta_between(previous, current))
        previous = current
