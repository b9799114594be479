"""A fake `Source` driven by the test, and builders for wire records: the dashboard runs
against scripted snapshots and deltas without any process or socket. The fake follows the
Source protocol: tests/test_source_contract.py holds it to it as it does the real ones."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from taskscope.client import ClientError
from taskscope.protocol import WireAwaiting, WireDelta, WireLoop, WireSnapshot, WireTask
from taskscope.sources import (
    CancelResult,
    Capability,
    DeltaUpdate,
    ProcessIdentity,
    ProcessInfo,
    SnapshotUpdate,
    StackReply,
    Unsupported,
    Update,
)

#: The frozen "now" of every test: ages are computed against it.
NOW = 1_800_000_000.0


def wire_task(
    task_id: str,
    name: str,
    coro: str,
    *,
    state: str = "pending",
    awaiting: WireAwaiting | None = None,
    awaited_by: Sequence[str] = (),
    parent: str | None = None,
    age: float = 60.0,
    finished_ago: float | None = None,
    result: str | None = None,
    exception: str | None = None,
    line: int | None = None,
) -> WireTask:
    task: dict[str, Any] = {
        "id": task_id,
        "loop": "L1",
        "name": name,
        "state": state,
        "coro": coro,
        # Tasks of one coroutine are parked at one line of it (its await site), unless told.
        "stack": [{"function": coro, "file": "app/service.py", "line": line or 10 + len(coro)}]
        if state == "pending"
        else [],
        "awaiting": awaiting,
        "awaited_by": list(awaited_by),
        "parent": parent,
        "created_at": NOW - age,
        "finished_at": None if finished_ago is None else NOW - finished_ago,
        "created_from": [{"function": "main", "file": "app/service.py", "line": 40}],
    }
    if result is not None:
        task["result"] = result
    if exception is not None:
        task["exception"] = exception
    return task  # type: ignore[return-value]


def awaiting(kind: str, tasks: Sequence[str] = (), **facts: Any) -> WireAwaiting:
    """A description as the agent sends it: facts only (`taskscope.words` says them)."""
    return {"kind": kind, "tasks": list(tasks), **facts}  # type: ignore[typeddict-item]


def wire_loop(tasks: int, blocked_for: float | None = None, main_task: str = "1") -> WireLoop:
    return {
        "id": "L1",
        "thread_id": 1,
        "thread_name": "MainThread",
        "running": True,
        "closed": False,
        "blocked_for": blocked_for,
        "lag": 0.0003,
        "blocking_stack": [],
        "type": "_UnixSelectorEventLoop",
        "tasks": tasks,
        "main_task": main_task,
    }


def service_tasks() -> list[WireTask]:
    """The UX sketch: a TaskGroup with a server, a dispatcher and a reporter, an await cycle,
    a task that ignores cancellation, and some finished tasks."""
    return [
        wire_task(
            "1",
            "main",
            "main",
            awaiting=awaiting("taskgroup", ["2", "3", "4", "9"], object={"size": 4}),
            age=724,
        ),
        wire_task(
            "2",
            "api-server",
            "serve",
            awaiting=awaiting("server", call="Server.serve_forever"),
            awaited_by=["1"],
            parent="1",
            age=724,
        ),
        wire_task(
            "5",
            "conn-51234",
            "handle",
            awaiting=awaiting("stream_read", call="StreamReader.read", peer="10.0.0.7:51234"),
            parent="2",
            age=3.1,
        ),
        wire_task(
            "3",
            "dispatcher",
            "dispatch",
            awaiting=awaiting(
                "queue_get", call="Queue.get", object={"name": "jobs", "size": 0, "maxsize": 0}
            ),
            awaited_by=["1"],
            parent="1",
            age=724,
        ),
        wire_task(
            "4",
            "reporter",
            "report_loop",
            awaiting=awaiting("sleep", seconds_left=4.2),
            awaited_by=["1"],
            parent="1",
            age=724,
        ),
        wire_task(
            "9",
            "stubborn",
            "stubborn",
            awaiting=awaiting("sleep", seconds_left=3599.0),
            awaited_by=["1"],
            parent="1",
            age=700,
        ),
        wire_task(
            "7",
            "fetch-7",
            "fetch",
            awaiting=awaiting("task", ["8"], object={"task": "fetch-8"}),
            awaited_by=["8"],
            parent="1",
            age=41,
        ),
        wire_task(
            "8",
            "fetch-8",
            "fetch",
            awaiting=awaiting("task", ["7"], object={"task": "fetch-7"}),
            awaited_by=["7"],
            parent="1",
            age=41,
        ),
        wire_task(
            "33",
            "parse-33",
            "parse",
            state="failed",
            parent="3",
            age=5,
            finished_ago=3,
            exception="ValueError('bad row')",
        ),
        wire_task(
            "34",
            "job-34",
            "process",
            state="done",
            parent="3",
            age=4,
            finished_ago=2,
            result="'ok'",
        ),
    ]


def snapshot(
    tasks: list[WireTask], cycles: list[list[str]] | None = None, blocked_for: float | None = None
) -> WireSnapshot:
    return {
        "schema": 1,
        "pid": 4242,
        "python": "3.12.1",
        "taken_at": NOW,
        "loops": [wire_loop(len(tasks), blocked_for)],
        "tasks": tasks,
        "cycles": [["7", "8"]] if cycles is None else cycles,
        "history_limit": 1000,
    }


def delta(
    changed: list[WireTask],
    removed: Sequence[str] = (),
    cycles: list[list[str]] | None = None,
    tasks: int = 10,
    loops: list[WireLoop] | None = None,
) -> WireDelta:
    return {
        "taken_at": NOW,
        "loops": [wire_loop(tasks)] if loops is None else loops,
        "changed": changed,
        "removed": list(removed),
        "cycles": [["7", "8"]] if cycles is None else cycles,
    }


class FakeSource:
    """Yields what the test pushes; records cancels. Thread-safe like the real one. It can
    do what the live agent can, except detach (it has no agent to unload)."""

    capabilities = Capability.PUSH | Capability.CANCEL | Capability.STACK_SOURCE

    def __init__(self, first: WireSnapshot | None = None, pid: int = 4242) -> None:
        self.pid = pid
        self.updates: queue.Queue[Update | BaseException | None] = queue.Queue()
        self.latest = first if first is not None else snapshot(service_tasks())
        self.updates.put(SnapshotUpdate(self.latest))
        #: The tasks the process has as far as the pushed updates tell.
        self.task_ids = {task["id"] for task in self.latest["tasks"]}
        self.cancelled: list[str] = []
        self.cancel_messages: list[str | None] = []
        #: What `cancel` answers for a task the snapshot has (a missing one: no_such_task).
        self.cancel_outcome = "requested"
        #: Why a cancel failed, with `cancel_outcome` "failed" (as the agent says it).
        self.cancel_error: str | None = None
        self.stack_requests: list[str] = []
        self.closed = threading.Event()
        self.info: ProcessInfo = {
            "pid": pid,
            "command": "python app.py --port 8080",
            "python": "3.12.1",
            "cpu_percent": 12.0,
            "rss": 84 * 1024 * 1024,
            "threads": 9,
            "fds": 23,
            "alive": True,
        }

    @property
    def label(self) -> str:
        return f"process {self.pid} (fake)"

    def push(self, update: WireDelta) -> None:
        self.task_ids.update(task["id"] for task in update["changed"])
        self.task_ids.difference_update(update["removed"])
        self.updates.put(DeltaUpdate(update))

    def end(self, error: BaseException | None = None) -> None:
        self.updates.put(error)

    def subscribe(self, interval: float) -> Iterator[Update]:
        while not self.closed.is_set():
            try:
                item = self.updates.get(timeout=0.02)
            except queue.Empty:
                continue
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def cancel(self, task_id: str, message: str | None = None) -> CancelResult:
        if Capability.CANCEL not in self.capabilities:  # the contract: a refusal, no effect
            raise Unsupported(
                f"{self.label} cannot cancel tasks: that needs the taskscope agent in the process"
            )
        self.cancelled.append(task_id)
        self.cancel_messages.append(message)
        if task_id not in self.task_ids:
            return CancelResult("no_such_task")
        return CancelResult(self.cancel_outcome, self.cancel_error)

    def stack(self, task_id: str) -> StackReply:
        self.stack_requests.append(task_id)
        if task_id not in self.task_ids:
            return {"type": "stack", "task": task_id, "found": False, "stack": []}
        return {
            "type": "stack",
            "task": task_id,
            "found": True,
            "stack": [
                {
                    "function": "fetch",
                    "file": "app/net.py",
                    "line": 88,
                    "source": "    await other\n",
                }
            ],
            "created_from": [
                {
                    "function": "main",
                    "file": "app/service.py",
                    "line": 40,
                    "source": "tg.create_task(fetch())",
                }
            ],
        }

    def snapshot(self, include_finished: bool = True) -> WireSnapshot:
        if self.closed.is_set():
            raise ClientError("closed")
        if include_finished:
            return self.latest
        pending = [task for task in self.latest["tasks"] if task["state"] == "pending"]
        return {**self.latest, "tasks": pending}

    def detach(self) -> None:
        raise Unsupported(f"{self.label} has no agent to detach")

    def identity(self) -> ProcessIdentity:
        return {
            "pid": self.pid,
            "python": self.info.get("python", "?"),
            "argv": self.info.get("command", "").split(),
        }

    def process_info(self) -> ProcessInfo:
        return dict(self.info)  # type: ignore[return-value]

    def close(self) -> None:
        self.closed.set()


# --- runtime figures (issue 12): as the agent sends them when it times steps -----------------


def timed(
    task: WireTask,
    *,
    steps: int,
    busy: float,
    longest: float,
    ran_ago: float | None = None,
    waiting_for: float | None = None,
) -> WireTask:
    """`task` with the runtime figures of an agent that times steps."""
    record: dict[str, Any] = dict(task)
    record.update(steps=steps, busy_s=busy, longest_step_s=longest)
    if ran_ago is not None:
        record["last_ran_at"] = NOW - ran_ago
    if waiting_for is not None:
        record["waiting_since"] = NOW - waiting_for
    return record  # type: ignore[return-value]


def timed_loop(
    loop: WireLoop,
    *,
    steps_per_s: float = 2100.0,
    busy_share: float = 0.34,
    threshold: float = 0.1,
    stalls: Sequence[dict[str, Any]] = (),
) -> WireLoop:
    """`loop` with the figures and stall history of an agent that times steps."""
    record: dict[str, Any] = dict(loop)
    record.update(
        steps_per_s=steps_per_s,
        busy_share=busy_share,
        stall_threshold=threshold,
        stalls=list(stalls),
    )
    return record  # type: ignore[return-value]


def timed_service() -> WireSnapshot:
    """The scripted service with figures: `crunch` eats the loop (busiest, most steps), the
    reporter ran often but briefly, the rest little."""
    tasks = service_tasks()
    figures = {
        "1": (3, 0.0004, 0.0002),
        "2": (12, 0.003, 0.001),
        "3": (410, 0.09, 0.004),
        "4": (722, 0.02, 0.0003),
        "5": (40, 0.01, 0.002),
        "7": (2, 0.0001, 0.0001),
        "8": (2, 0.0001, 0.0001),
        "9": (1, 0.0001, 0.0001),
        "33": (5, 0.002, 0.001),
        "34": (3, 0.001, 0.0005),
    }
    timed_tasks = [
        timed(
            task,
            steps=figures[task["id"]][0],
            busy=figures[task["id"]][1],
            longest=figures[task["id"]][2],
            ran_ago=1.5,
            waiting_for=1.5,
        )
        for task in tasks
    ]
    crunch = wire_task(
        "12", "crunch", "crunch", awaiting=awaiting("sleep", seconds_left=0.0), parent="1", age=300
    )
    timed_tasks.append(
        timed(crunch, steps=48_210, busy=8.21, longest=0.31, ran_ago=0.1, waiting_for=0.05)
    )
    shot = snapshot(timed_tasks)
    shot["loops"] = [timed_loop(loop) for loop in shot["loops"]]
    return shot
