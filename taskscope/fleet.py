"""Several processes looked at as one: a parent (a uvicorn or gunicorn master, a
multiprocessing parent) and its Python worker processes.

`FleetSource` loads or finds the agent of each process (in parallel threads, each through the
normal attach path), takes one snapshot of each and merges them into one schema-1 snapshot:
task and loop ids become `PID:ID` (`4242:17`) so they stay unique, each task and loop gets a
`pid` field, and a top-level `processes` list says which processes were looked at; `pid`
stays the parent's. `cancel` and `stack` route by the prefix. Children are looked for again
on every look, so a worker restarted by its manager shows up, and one that is gone drops out.

A process that refuses the look (another user's, a Python that cannot be attached) is one
line in `problems`; the others are still shown. A process that runs no asyncio is left out
(and the agent loaded only to find that is unloaded again).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from taskscope.client import AgentClient, AgentGone, ClientError, NoAgent, no_agent_message
from taskscope.process_facts import ProcessFacts, ProcessInfo, process_alive, python_children
from taskscope.protocol import CancelReply, WireDelta, WireLoop, WireProcess, WireSnapshot, WireTask
from taskscope.sources.base import (
    CancelResult,
    Capability,
    DeltaUpdate,
    ProcessIdentity,
    SnapshotUpdate,
    StackReply,
    Unsupported,
    Update,
)

#: Seconds between two looks for new worker processes while subscribed.
REDISCOVER_EVERY = 2.0
#: Seconds before a process that refused is tried again while following (a worker just
#: started may not be attachable yet); its line is said once.
RETRY_REFUSED_AFTER = 4.0


def prefixed(pid: int, local_id: str) -> str:
    """The fleet-wide id of a task or loop of process `pid`: `4242:17`."""
    return f"{pid}:{local_id}"


def split_id(fleet_id: str) -> tuple[int, str] | None:
    """(pid, the id within that process) of `4242:17`; None for an id without a pid prefix."""
    pid_text, sep, local_id = fleet_id.partition(":")
    if not sep or not pid_text.isascii() or not pid_text.isdigit() or not local_id:
        return None
    return int(pid_text), local_id


def _prefix_task(pid: int, task: WireTask) -> WireTask:
    def mark(task_id: str) -> str:
        return prefixed(pid, task_id)

    merged: dict[str, Any] = dict(task)
    merged["id"] = mark(task["id"])
    merged["loop"] = mark(task["loop"])
    merged["awaited_by"] = [mark(other) for other in task["awaited_by"]]
    merged["parent"] = None if task["parent"] is None else mark(task["parent"])
    awaiting = task["awaiting"]
    if awaiting is not None and awaiting.get("tasks"):
        merged["awaiting"] = awaiting = {
            **awaiting,
            "tasks": [mark(other) for other in awaiting["tasks"]],
        }
    facts = awaiting.get("object") if awaiting is not None else None
    if awaiting is not None and facts and facts.get("holders"):
        # A lock's holders are task ids too (the lints follow them to find deadlocks).
        holders = [mark(str(holder)) for holder in facts["holders"]]
        merged["awaiting"] = {**awaiting, "object": {**facts, "holders": holders}}
    merged["pid"] = pid
    result: WireTask = merged  # type: ignore[assignment]
    return result


def _prefix_loop(pid: int, loop: WireLoop) -> WireLoop:
    merged: dict[str, Any] = dict(loop)
    merged["id"] = prefixed(pid, loop["id"])
    if loop.get("main_task"):
        merged["main_task"] = prefixed(pid, str(loop["main_task"]))
    if loop.get("stalls"):
        merged["stalls"] = [
            stall if stall["task"] is None else {**stall, "task": prefixed(pid, stall["task"])}
            for stall in loop["stalls"]
        ]
    merged["pid"] = pid
    result: WireLoop = merged  # type: ignore[assignment]
    return result


def merge_snapshots(parent: int, parts: Sequence[tuple[int, WireSnapshot]]) -> WireSnapshot:
    """One schema-1 snapshot of several processes' snapshots (parent's first if it has one)."""
    loops: list[WireLoop] = []
    tasks: list[WireTask] = []
    cycles: list[list[str]] = []
    processes: list[WireProcess] = []
    for pid, snapshot in parts:
        loops.extend(_prefix_loop(pid, loop) for loop in snapshot["loops"])
        tasks.extend(_prefix_task(pid, task) for task in snapshot["tasks"])
        cycles.extend([prefixed(pid, task_id) for task_id in cycle] for cycle in snapshot["cycles"])
        processes.append(
            {
                "pid": pid,
                "role": "parent" if pid == parent else "worker",
                "python": snapshot["python"],
                "loops": len(snapshot["loops"]),
                "tasks": len(snapshot["tasks"]),
            }
        )
    first = parts[0][1] if parts else None
    merged: WireSnapshot = {
        "schema": 1,
        "pid": parent,
        "python": first["python"] if first else "",
        "taken_at": max((snapshot["taken_at"] for _pid, snapshot in parts), default=time.time()),
        "loops": loops,
        "tasks": tasks,
        "cycles": cycles,
        "history_limit": max((snapshot["history_limit"] for _pid, snapshot in parts), default=0),
    }
    since = [snapshot["history_since"] for _pid, snapshot in parts if "history_since" in snapshot]
    if since:
        merged["history_since"] = min(since)
    merged["processes"] = processes
    return merged


def delta_between(old: WireSnapshot, new: WireSnapshot) -> WireDelta:
    """The delta that turns `old` into `new`: tasks added or changed, tasks gone."""
    before = {task["id"]: task for task in old["tasks"]}
    after = {task["id"]: task for task in new["tasks"]}
    return {
        "taken_at": new["taken_at"],
        "loops": new["loops"],
        "changed": [task for task_id, task in after.items() if before.get(task_id) != task],
        "removed": [task_id for task_id in before if task_id not in after],
        "cycles": new["cycles"],
    }


@dataclass
class _Member:
    """One process of the fleet and the connection to its agent."""

    pid: int
    client: AgentClient
    injected: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Some look found an event loop or a task in it.
    had_asyncio: bool = False


def connect_agent(
    pid: int, timeout: float, no_inject: bool, on_slow: Callable[[float], None] | None = None
) -> tuple[AgentClient, bool]:
    """A connected client for `pid` and whether its agent was loaded just now: the agent
    already there, else one listening where the target put it, else one loaded."""
    client = AgentClient(pid, timeout=timeout, on_slow=on_slow)
    try:
        client.connect()
        return client, False
    except NoAgent:
        pass
    from taskscope.attach import agent_socket, load_agent

    path = agent_socket(pid)
    injected = False
    if path is None:
        if no_inject:
            raise NoAgent(no_agent_message(pid))
        path = load_agent(pid, timeout=timeout)
        injected = True
    client = AgentClient(pid, timeout=timeout, socket_dir=os.path.dirname(path), on_slow=on_slow)
    client.connect()
    return client, injected


def _attach_errors() -> tuple[type[BaseException], ...]:
    from taskscope.attach.errors import InjectionError

    return (ClientError, InjectionError, OSError)


def _not_python(error: BaseException) -> bool:
    from taskscope.attach.errors import NotPython

    return isinstance(error, NotPython)


class NoAsyncio(ClientError):
    """No process of the fleet runs an asyncio event loop."""


class FleetSource:
    """A parent process and its Python workers, seen as one process whose loops are the
    workers' loops: a `sources.base.Source`."""

    capabilities = Capability.CANCEL | Capability.STACK_SOURCE | Capability.HISTORY

    def __init__(
        self,
        pid: int,
        *,
        timeout: float = 10.0,
        no_inject: bool = False,
        on_problem: Callable[[str], None] | None = None,
        follow: bool = False,
    ) -> None:
        self.pid = pid
        self.timeout = timeout
        self.no_inject = no_inject
        #: Looking again and again (the dashboard): a process without asyncio yet keeps its
        #: agent, as a worker just started has not run its loop yet; `close` unloads the
        #: agents loaded into processes that never ran one. Else such a process is left
        #: out, its agent unloaded at once.
        self.follow = follow
        #: One line per process that could not be looked at, said once per process.
        self.problems: dict[int, str] = {}
        #: Why each process that could not be looked at refused (its line in `problems`).
        self.refusals: dict[int, BaseException] = {}
        #: Called with each problem's line (once per process); None: only kept in `problems`.
        self.on_problem = on_problem
        self._problem_lock = threading.Lock()
        self._refused_at: dict[int, float] = {}
        self._members: dict[int, _Member] = {}
        #: Processes looked at and found without asyncio (not asked again).
        self._without_asyncio: set[int] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._facts = ProcessFacts(pid)
        self._discovered_at = 0.0
        #: Some look found asyncio in some process (later, none may: workers restarting).
        self._seen_asyncio = False

    @property
    def label(self) -> str:
        workers = [pid for pid in self._members if pid != self.pid]
        return f"process {self.pid} and {len(workers)} workers"

    def worker_pids(self) -> list[int]:
        """The pids whose tasks are shown, the parent first when it runs asyncio."""
        with self._lock:
            return sorted(self._members, key=lambda pid: (pid != self.pid, pid))

    # ---------------------------------------------------------------------------------------
    # Finding the processes

    def discover(self) -> None:
        """Look for the parent's Python children again; attach to new ones in parallel
        threads, forget the ones that are gone."""
        self._discovered_at = time.monotonic()
        wanted = [self.pid, *(child.pid for child in python_children(self.pid))]
        with self._lock:
            for pid in list(self._members):
                if pid not in wanted:
                    self._members.pop(pid).client.close()
            new = [
                pid
                for pid in wanted
                if pid not in self._members
                and pid not in self._without_asyncio
                and not self._refused_lately(pid)
            ]
        if not new:
            return
        with ThreadPoolExecutor(max_workers=min(8, len(new))) as pool:
            results = list(pool.map(self._join, new))
        with self._lock:
            for member in results:
                if member is not None and not self._closed.is_set():
                    self._members[member.pid] = member
                elif member is not None:
                    member.client.close()

    def _join(self, pid: int) -> _Member | None:
        try:
            client, injected = connect_agent(pid, self.timeout, self.no_inject)
        except _attach_errors() as error:
            if not (pid == self.pid and _not_python(error)):
                # (a parent that is no Python program, a shell or a supervisor, is only the
                # way to its Python children: not a problem to report)
                self.refusals[pid] = error
                self._problem(pid, f"process {pid}: {error}")
            return None
        member = _Member(pid, client, injected)
        try:
            first = client.snapshot(include_finished=False)
        except ClientError as error:
            client.close()
            self._problem(pid, f"process {pid}: {error}")
            return None
        member.had_asyncio = bool(first["loops"] or first["tasks"])
        if member.had_asyncio or self.follow:
            return member
        self._without_asyncio.add(pid)
        self._unload(member)
        return None

    @staticmethod
    def _unload(member: _Member) -> None:
        """Close the connection, and unload the agent if it was loaded only to look."""
        if member.injected and not member.had_asyncio:
            try:
                with member.lock:
                    member.client.detach()
            except ClientError:
                pass
        member.client.close()

    def _refused_lately(self, pid: int) -> bool:
        refused_at = self._refused_at.get(pid)
        if refused_at is None:
            return False
        return not self.follow or time.monotonic() - refused_at < RETRY_REFUSED_AFTER

    def _problem(self, pid: int, line: str) -> None:
        self._refused_at[pid] = time.monotonic()
        said = line.removeprefix(f"process {pid}: ")
        if f"process {pid}" in said:  # the error names the process already
            line = said
        with self._problem_lock:  # workers are joined in parallel: one whole line each
            if pid in self.problems:
                return
            self.problems[pid] = line
            if self.on_problem is not None:
                self.on_problem(line)

    # ---------------------------------------------------------------------------------------
    # Looking

    def _take(self, member: _Member, include_finished: bool) -> WireSnapshot | None:
        try:
            with member.lock:
                snapshot = member.client.snapshot(include_finished=include_finished)
            member.had_asyncio = member.had_asyncio or bool(snapshot["loops"] or snapshot["tasks"])
            return snapshot
        except ClientError:
            # Gone (a worker that exited or was restarted): dropped, found again if back.
            with self._lock:
                if self._members.get(member.pid) is member:
                    del self._members[member.pid]
            member.client.close()
            return None

    def snapshot(self, include_finished: bool = True) -> WireSnapshot:
        """One merged snapshot of every process of the fleet that runs asyncio; when that
        is the parent alone (an asyncio program that runs Python helpers), its own snapshot,
        as if it were looked at alone. `AgentGone` once the parent has exited: the look is
        over, though orphaned workers may live on."""
        if not process_alive(self.pid):
            raise AgentGone(f"process {self.pid} exited")
        if not self._discovered_at or time.monotonic() - self._discovered_at >= REDISCOVER_EVERY:
            self.discover()
        with self._lock:
            members = sorted(self._members.values(), key=lambda m: (m.pid != self.pid, m.pid))
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(members)))) as pool:
            taken = list(pool.map(lambda m: self._take(m, include_finished), members))
        parts = [
            (m.pid, s)
            for m, s in zip(members, taken, strict=True)
            if s is not None and (s["loops"] or s["tasks"])
        ]
        self._seen_asyncio = self._seen_asyncio or bool(parts)
        if not self._seen_asyncio and not self._closed.is_set():
            raise NoAsyncio(
                f"no event loop in process {self.pid} nor in its Python processes: "
                f"they run no asyncio (yet)"
            )
        if parts and [pid for pid, _snapshot in parts] == [self.pid]:
            return parts[0][1]
        return merge_snapshots(self.pid, parts)

    def subscribe(self, interval: float) -> Iterator[Update]:
        """A merged snapshot, then every `interval` seconds the delta to a fresh one; new
        workers are looked for every few seconds."""
        previous = self.snapshot()
        yield SnapshotUpdate(previous)
        while not self._closed.wait(interval):
            current = self.snapshot()
            if self._closed.is_set():
                return
            if ("processes" in current) != ("processes" in previous):
                # The parent alone became several processes (or back): ids changed form.
                yield SnapshotUpdate(current)
            else:
                yield DeltaUpdate(delta_between(previous, current))
            previous = current

    def _member_of(self, task_id: str) -> tuple[_Member, str] | None:
        # An id without a prefix is the parent's (its snapshot alone, when only it runs asyncio).
        split = split_id(task_id) or (self.pid, task_id)
        with self._lock:
            member = self._members.get(split[0])
        return None if member is None else (member, split[1])

    def stack(self, task_id: str) -> StackReply:
        """The stack of `PID:ID`, asked of that process's agent."""
        found = self._member_of(task_id)
        if found is None:
            return {"type": "stack", "task": task_id, "found": False, "stack": []}
        member, local_id = found
        with member.lock:
            return member.client.stack(local_id)

    def cancel_reply(self, task_id: str, message: str | None = None) -> CancelReply:
        """Cancel `PID:ID` through that process's agent: its whole reply."""
        found = self._member_of(task_id)
        if found is None:
            return {"type": "cancel", "task": task_id, "outcome": "no_such_task"}
        member, local_id = found
        with member.lock:
            return member.client.cancel_reply(local_id, message)

    def cancel(self, task_id: str, message: str | None = None) -> CancelResult:
        """Cancel `PID:ID` through that process's agent."""
        reply = self.cancel_reply(task_id, message)
        error = reply.get("error")
        return CancelResult(str(reply.get("outcome")), None if error is None else str(error))

    def detach(self) -> None:
        raise Unsupported(
            f"detach each process on its own: `taskscope detach PID` for {self.label}"
        )

    def identity(self) -> ProcessIdentity:
        from taskscope.process_facts import command_line

        identity: ProcessIdentity = {"pid": self.pid}
        argv = command_line(self.pid)
        if argv is not None:
            identity["argv"] = argv
        return identity

    def process_info(self) -> ProcessInfo:
        info = self._facts.read()
        info["command"] = f"{info.get('command', '')}  [{self.label}]".strip()
        return info

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            members, self._members = list(self._members.values()), {}
        for member in members:
            self._unload(member)
