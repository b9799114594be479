"""The read-only source: a process's tasks read from its memory (Python 3.14+), no code run
in it (`taskscope.readonly`).

It can take snapshots and nothing more: no finished tasks, no source lines or creators in a
stack, no cancel, no detach, and a subscription only by polling snapshots (each one runs a
reader in an interpreter of the target's version). Asked to do more, it raises `Unsupported`
with the one line to show.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from taskscope.process_facts import ProcessFacts
from taskscope.protocol import StackFrame, WireSnapshot
from taskscope.readonly import command_line, read_snapshot
from taskscope.sources.base import (
    CancelResult,
    Capability,
    ProcessIdentity,
    ProcessInfo,
    StackReply,
    Unsupported,
    Update,
    poll_updates,
)


class ReadOnlySource:
    """Process `pid`'s tasks read from its memory at each `snapshot`."""

    capabilities = Capability.NONE

    def __init__(
        self, pid: int, *, timeout: float = 10.0, stands_in: BaseException | None = None
    ) -> None:
        self.pid = pid
        self.timeout = timeout
        #: Why the agent could not be had, when this look stands in for it (not asked for).
        self.stands_in = stands_in
        self._closed = threading.Event()
        self._facts = ProcessFacts(pid)
        self._python = ""

    @property
    def label(self) -> str:
        return f"process {self.pid} (read-only)"

    def snapshot(self, include_finished: bool = True) -> WireSnapshot:
        """A fresh read; memory holds no finished tasks, whatever `include_finished` says."""
        snapshot = read_snapshot(self.pid, timeout=self.timeout)
        self._python = snapshot["python"]
        return snapshot

    def subscribe(self, interval: float) -> Iterator[Update]:
        return poll_updates(self.snapshot, interval, self._closed)

    def stack(self, task_id: str) -> StackReply:
        """The task's frames as memory has them: no source lines, no creator."""
        for task in self.snapshot()["tasks"]:
            if task["id"] == task_id:
                frames: list[StackFrame] = [
                    {
                        "function": frame["function"],
                        "file": frame["file"],
                        "line": frame["line"],
                        "source": None,
                    }
                    for frame in task["stack"]
                ]
                return {"type": "stack", "task": task_id, "found": True, "stack": frames}
        return {"type": "stack", "task": task_id, "found": False, "stack": []}

    def cancel(self, task_id: str, message: str | None = None) -> CancelResult:
        if self.stands_in is not None:
            raise Unsupported(
                f"cannot cancel in a read-only look: cancelling needs the agent, and "
                f"{self.stands_in}"
            )
        raise Unsupported(
            f"cannot cancel in a read-only look at process {self.pid}: cancelling needs its "
            "agent (leave out --read-only, and let taskscope load the agent)"
        )

    def detach(self) -> None:
        raise Unsupported(
            f"a read-only look at process {self.pid} loaded no agent: there is none to detach"
        )

    def identity(self) -> ProcessIdentity:
        """Its argv from /proc; its Python version once a snapshot was read."""
        identity: ProcessIdentity = {"pid": self.pid, "argv": command_line(self.pid)}
        if self._python:
            identity["python"] = self._python
        return identity

    def process_info(self) -> ProcessInfo:
        info = self._facts.read()
        if self._python:
            info["python"] = self._python
        return info

    def close(self) -> None:
        self._closed.set()
