"""The client's picture of a process: typed task and loop records, kept current by applying
snapshots and deltas, plus the queries the CLI and the dashboard share (tree, groups, counts).

Pure state: no I/O, no terminal, no words (`taskscope.words` makes those from these records).
Records come from the wire (`taskscope.protocol`) and are immutable; a delta replaces whole
records by task id.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from taskscope.protocol import (
    WireAwaiting,
    WireDelta,
    WireFrame,
    WireLoop,
    WireSnapshot,
    WireStall,
    WireTask,
    stack_left_out,
)
from taskscope.words import NAMED_OBJECT_KINDS, NamedWaits, is_library, letter_of

FINISHED_STATES = frozenset({"done", "cancelled", "failed"})
_FRAMES: dict[tuple[str, str, int | None], Frame] = {}


@dataclass(frozen=True, slots=True)
class Frame:
    function: str
    file: str
    line: int | None

    @classmethod
    def from_wire(cls, raw: WireFrame) -> Frame:
        # Thousands of tasks share a few suspension points: make each Frame once.
        key = (raw["function"], raw["file"], raw.get("line"))
        frame = _FRAMES.get(key)
        if frame is None:
            if len(_FRAMES) > 100_000:
                _FRAMES.clear()
            frame = _FRAMES[key] = cls(str(key[0]), str(key[1]), key[2])
        return frame

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


@dataclass(slots=True)
class Awaiting:
    """What a task waits on (read-only by convention: not frozen, which is 3x faster to make).
    `raw` is the wire description, every fact of it (`taskscope.words` reads them)."""

    kind: str
    raw: WireAwaiting
    tasks: tuple[str, ...]
    seconds_left: float | None = None
    deadline_in: float | None = None
    peer: str | None = None
    facts: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    #: How long ago the sleep's end / the deadline passed, the loop not having acted on it.
    seconds_overdue: float | None = None
    deadline_overdue: float | None = None

    @classmethod
    def from_wire(cls, raw: WireAwaiting | None) -> Awaiting | None:
        if raw is None:
            return None
        return cls(
            kind=str(raw["kind"]),
            raw=raw,
            tasks=tuple(raw.get("tasks", ())),
            seconds_left=raw.get("seconds_left"),
            deadline_in=raw.get("deadline_in"),
            peer=raw.get("peer"),
            facts=raw.get("object") or {},
            seconds_overdue=raw.get("seconds_overdue"),
            deadline_overdue=raw.get("deadline_overdue"),
        )


@dataclass(slots=True)
class TaskInfo:
    """One task as last reported (read-only by convention; records are replaced, never edited:
    a frozen dataclass costs 3x more to make, and the dashboard makes thousands a second)."""

    id: str
    loop: str
    name: str
    state: str
    coro: str
    stack: tuple[Frame, ...]
    awaiting: Awaiting | None
    awaited_by: tuple[str, ...]
    parent: str | None
    created_at: float | None
    finished_at: float | None
    running: bool = False
    created_from: tuple[Frame, ...] = ()
    result: str | None = None
    exception: str | None = None
    #: When the agent took the record (its message's taken_at): countdowns run from there.
    observed_at: float = field(default=0.0, compare=False)
    #: When the agent first saw a task whose creation it did not see (after an attach).
    first_seen_at: float | None = None
    #: Pending on a future: when the agent's looks first found it on that very future.
    waiting_seen_at: float | None = None
    #: When a cancel was handed to the task's loop, which has not delivered it yet.
    cancel_requested_at: float | None = None
    #: Runtime figures, None when the agent does not time steps (see WireTask).
    steps: int | None = None
    busy_s: float | None = None
    longest_step_s: float | None = None
    last_ran_at: float | None = None
    waiting_since: float | None = None
    #: A failed task's formatted traceback, and whether anyone retrieved its exception.
    traceback: str | None = None
    exception_retrieved: bool | None = None
    #: Pending and kept alive by nothing but asyncio's weak registry and its own wait.
    unreferenced: bool = False
    #: Cancelled (the loop delivered it) and still pending since then: see WireTask.
    cancelling_since: float | None = None
    #: The web request it serves: (method, path).
    request: tuple[str, str] | None = None
    #: The path template of the route its request matched (`/items/{item_id}`), if known.
    route: str | None = None
    #: A chain too deep to send whole: (where in `stack`, how many coroutines left out there).
    stack_left_out: tuple[int, int] | None = None

    @classmethod
    def from_wire(cls, raw: WireTask, observed_at: float = 0.0) -> TaskInfo:
        request = raw.get("request")  # most tasks serve none
        return cls(
            id=str(raw["id"]),
            loop=str(raw["loop"]),
            name=str(raw["name"]),
            state=str(raw["state"]),
            coro=str(raw["coro"]),
            stack=tuple(Frame.from_wire(frame) for frame in raw["stack"]),
            awaiting=Awaiting.from_wire(raw["awaiting"]),
            awaited_by=tuple(raw["awaited_by"]),
            parent=raw["parent"],
            created_at=raw["created_at"],
            finished_at=raw["finished_at"],
            running=bool(raw.get("running", False)),
            created_from=tuple(Frame.from_wire(frame) for frame in raw.get("created_from", ())),
            result=raw.get("result"),
            exception=raw.get("exception"),
            observed_at=observed_at,
            first_seen_at=raw.get("first_seen_at"),
            waiting_seen_at=raw.get("waiting_seen_at"),
            cancel_requested_at=raw.get("cancel_requested_at"),
            steps=raw.get("steps"),
            busy_s=raw.get("busy_s"),
            longest_step_s=raw.get("longest_step_s"),
            last_ran_at=raw.get("last_ran_at"),
            waiting_since=raw.get("waiting_since"),
            traceback=raw.get("traceback"),
            exception_retrieved=raw.get("exception_retrieved"),
            unreferenced=bool(raw.get("unreferenced", False)),
            cancelling_since=raw.get("cancelling_since"),
            request=_request(request) if request is not None else None,
            route=_route(request) if request is not None else None,
            stack_left_out=stack_left_out(raw),
        )

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def number(self) -> int:
        # A look at several processes prefixes the id with the pid: `4242:17` is task 17.
        return int(self.id.rpartition(":")[2])

    def age(self, now: float) -> float | None:
        if self.created_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else now
        return max(0.0, end - self.created_at)

    def known_age(self, now: float) -> tuple[float | None, bool]:
        """(age, whether it is only a lower bound): from its creation when the agent saw it,
        else from when the agent first saw the task."""
        age = self.age(now)
        if age is not None or self.first_seen_at is None:
            return age, False
        end = self.finished_at if self.finished_at is not None else now
        return max(0.0, end - self.first_seen_at), True

    def known_wait_start(self) -> float | None:
        """When its wait where it waits now began (`waiting_since`), or at the latest
        (`waiting_seen_at`); None when `known_wait` knows none."""
        if self.finished or self.running or self.awaiting is None:
            return None
        return self.waiting_since if self.waiting_since is not None else self.waiting_seen_at

    def known_wait(self, now: float) -> tuple[float | None, bool]:
        """(how long it has waited where it waits now, whether that is only a lower bound):
        exact when the agent times steps (`waiting_since`), else from the first look that
        found it on the future it waits on (the wait began before that look); None when it
        is not waiting, or not on a future the agent can tell apart from the next."""
        if self.finished or self.running or self.awaiting is None:
            return None, False
        if self.waiting_since is not None:
            return max(0.0, now - self.waiting_since), False
        if self.waiting_seen_at is not None:
            return max(0.0, now - self.waiting_seen_at), True
        return None, False


def _request(raw: Any) -> tuple[str, str] | None:
    """A record's `request`, when well formed."""
    if not isinstance(raw, dict):
        return None
    method, path = raw.get("method"), raw.get("path")
    return (method, path) if isinstance(method, str) and isinstance(path, str) else None


#: File -> whether it is a library's (or asyncio's), not the program's: see `is_library`.
_LIBRARY_FILES: dict[str, bool] = {}


def _group_anchor(stack: tuple[Frame, ...]) -> Frame | None:
    """The frame a task is grouped by in the grouped view: its coroutine's own (the line it is
    parked at), or when that is a library's (a server's request task), the innermost frame
    of the program's own code, which tells one endpoint's wait from another's."""
    if not stack:
        return None
    outermost = stack[0]
    library = _LIBRARY_FILES.get(outermost.file)
    if library is None:
        library = _library_file(outermost.file)
    return (_program_frame(stack) or outermost) if library else outermost


def _program_frame(stack: tuple[Frame, ...]) -> Frame | None:
    """The innermost frame of the program's own code in a stack, or None."""
    for frame in reversed(stack):
        library = _LIBRARY_FILES.get(frame.file)
        if library is None:
            library = _library_file(frame.file)
        if not library:
            return frame
    return None


def _library_file(file: str) -> bool:
    if len(_LIBRARY_FILES) > 10_000:
        _LIBRARY_FILES.clear()
    library = _LIBRARY_FILES[file] = is_library(file)
    return library


def _site_of(stack: tuple[Frame, ...]) -> str:
    anchor = _group_anchor(stack)
    return anchor.location if anchor is not None else ""


def _route_of_awaited(
    tasks: Mapping[str, TaskInfo], request: tuple[str, str], awaited: Sequence[str]
) -> str | None:
    """The route a task serving `request` matched, told by a task it awaits that serves the
    same request (a server's request task waiting for the task its framework handles the
    request in: Django 5's `process_request`), when that one knows it."""
    for task_id in awaited:
        other = tasks.get(task_id)
        if other is not None and other.route is not None and other.request == request:
            return other.route
    return None


def _route(raw: Any) -> str | None:
    """A record's request's route, when well formed."""
    if _request(raw) is None:
        return None
    route = raw.get("route")
    return route if isinstance(route, str) and route else None


@dataclass(frozen=True, slots=True)
class Stall:
    """A step that held its loop longer than the stall threshold (see WireStall)."""

    started_at: float
    duration: float
    task: str | None
    task_name: str | None
    callback: str | None
    stack: tuple[Frame, ...]
    ongoing: bool = False
    #: The web request its task served: (method, path).
    request: tuple[str, str] | None = None

    @classmethod
    def from_wire(cls, raw: WireStall) -> Stall:
        return cls(
            started_at=float(raw["started_at"]),
            duration=float(raw["duration"]),
            task=raw.get("task"),
            task_name=raw.get("task_name"),
            callback=raw.get("callback"),
            stack=tuple(Frame.from_wire(frame) for frame in raw.get("stack", ())),
            ongoing=bool(raw.get("ongoing", False)),
            request=_request(raw.get("request")),
        )


@dataclass(frozen=True, slots=True)
class LoopInfo:
    id: str
    thread_id: int | None
    thread_name: str | None
    running: bool
    closed: bool
    blocked_for: float | None
    lag: float | None
    blocking_stack: tuple[Frame, ...]
    type: str
    tasks: int
    #: Blocked until just before the answer: the client waited as long for it (the GIL held).
    blocked_ended: bool = False
    #: The task the loop's `run_until_complete` waits for: when it ends, the loop stops.
    main_task: str | None = None
    #: The process the loop runs in, when the look is at several (a parent and its workers).
    pid: int | None = None
    #: Runtime figures, None when the agent does not time steps (see WireLoop).
    steps_per_s: float | None = None
    busy_share: float | None = None
    stall_threshold: float | None = None
    stalls: tuple[Stall, ...] = ()
    #: A trio run: Unix time from which its tasks' spawns and ends are seen (see WireLoop).
    spawns_seen_since: float | None = None
    #: A trio run the agent found running and will watch from its next turn (not yet).
    spawns_watch_pending: bool = False

    @property
    def blocked_now(self) -> bool:
        """Blocked at the look, and still so when the agent answered."""
        return self.blocked_for is not None and not self.blocked_ended

    @classmethod
    def from_wire(cls, raw: WireLoop) -> LoopInfo:
        return cls(
            id=str(raw["id"]),
            thread_id=raw.get("thread_id"),
            thread_name=raw.get("thread_name"),
            running=bool(raw.get("running")),
            closed=bool(raw.get("closed")),
            blocked_for=raw.get("blocked_for"),
            lag=raw.get("lag"),
            blocking_stack=tuple(Frame.from_wire(f) for f in raw.get("blocking_stack", ())),
            type=str(raw.get("type", "")),
            tasks=int(raw.get("tasks", 0)),
            blocked_ended=bool(raw.get("blocked_ended")),
            main_task=raw.get("main_task"),
            pid=raw.get("pid"),
            steps_per_s=raw.get("steps_per_s"),
            busy_share=raw.get("busy_share"),
            stall_threshold=raw.get("stall_threshold"),
            stalls=tuple(Stall.from_wire(stall) for stall in raw.get("stalls", ())),
            spawns_seen_since=raw.get("spawns_seen_since"),
            spawns_watch_pending=bool(raw.get("spawns_watch_pending")),
        )

    @property
    def label(self) -> str:
        name = self.thread_name or self.id
        return name if self.pid is None else f"pid {self.pid} {name}"


def _seconds(value: Any) -> float | None:
    """A non-negative finite number of the wire, or None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if 0.0 <= number < float("inf") else None


@dataclass(frozen=True, slots=True)
class GilWait:
    """How long the program kept the agent's thread from the GIL (the longest, and when), and
    the switch interval the agent holds lowered meanwhile (the snapshot's `gil_wait`)."""

    longest: float | None
    at: float | None
    lowered_from: float | None
    lowered_to: float | None

    @classmethod
    def from_wire(cls, raw: Any) -> GilWait | None:
        """None for a snapshot without it, or a value that is not such a mapping."""
        if not isinstance(raw, Mapping):
            return None
        wait = cls(
            *(_seconds(raw.get(key)) for key in ("longest", "at", "lowered_from", "lowered_to"))
        )
        if wait.longest is None and wait.lowered_to is None:
            return None
        return wait


@dataclass(frozen=True, slots=True)
class TreeRow:
    """One line of a task tree: the task, its depth, and how it hangs under its parent."""

    task: TaskInfo
    depth: int
    #: For each ancestor level, whether more siblings follow (draws the tree's guide lines).
    guides: tuple[bool, ...]
    is_last: bool
    in_cycle: bool
    #: The task appears elsewhere in the tree already (a second waiter): not expanded again.
    repeated: bool = False


@dataclass(frozen=True, slots=True)
class AwaitSite:
    """Tasks of one coroutine waiting at one place (`words.group_rows` names them)."""

    coro: str
    #: What they await (an await kind), or for tasks awaiting nothing their state,
    #: `running` or `ready`.
    kind: str
    #: `file:line` where they are parked: their coroutine's line, or when that coroutine is
    #: a library's, the innermost line of the program's own code; "" when not suspended.
    site: str
    ids: list[str]
    #: The descriptions of what they await (none for tasks awaiting nothing).
    awaitings: list[WireAwaiting]
    #: For tasks serving web requests of one route: (method, route), `("GET", "/items/{id}")`.
    request: tuple[str, str] | None = None


@dataclass(slots=True)
class TaskModel:
    """Every task of one process as last reported, updated in place by snapshots and deltas."""

    pid: int = 0
    python: str = ""
    taken_at: float = 0.0
    received_at: float = 0.0
    loops: dict[str, LoopInfo] = field(default_factory=dict)
    tasks: dict[str, TaskInfo] = field(default_factory=dict)
    cycles: list[tuple[str, ...]] = field(default_factory=list)
    history_limit: int = 0
    #: Unix time from which finished tasks are known (the agent came in by an attach then),
    #: or None: since the program's start.
    history_since: float | None = None
    #: What a look read from the process's memory cannot know (the snapshot's `read_only`:
    #: `leaf_awaiting`, `creators`...); empty for a look through the agent.
    read_only: tuple[str, ...] = ()
    #: When the program kept the agent from the GIL, and the interval the agent lowered.
    gil_wait: GilWait | None = None
    #: ids of tasks whose record changed in the last update (for widgets that update by key)
    last_changed: set[str] = field(default_factory=set)
    last_removed: set[str] = field(default_factory=set)
    #: The objects tasks wait on under a name another object shares, lettered
    #: (`taskscope.words.object_letters`).
    named_waits: NamedWaits = field(default_factory=NamedWaits)

    @classmethod
    def from_snapshot(cls, snapshot: WireSnapshot) -> TaskModel:
        model = cls()
        model.apply_snapshot(snapshot)
        return model

    def apply_snapshot(
        self, snapshot: WireSnapshot, tasks: dict[str, TaskInfo] | None = None
    ) -> None:
        """`tasks`: the snapshot's records already made (by the dashboard's feed thread)."""
        self.pid = int(snapshot["pid"])
        self.python = str(snapshot["python"])
        self.taken_at = float(snapshot["taken_at"])
        self.received_at = time.time()
        self.history_limit = int(snapshot.get("history_limit", 0))
        self.history_since = snapshot.get("history_since")
        self.read_only = tuple(str(item) for item in snapshot.get("read_only") or ())
        self.gil_wait = GilWait.from_wire(snapshot.get("gil_wait"))
        self.loops = {raw["id"]: LoopInfo.from_wire(raw) for raw in snapshot["loops"]}
        taken_at = self.taken_at
        new_tasks = (
            tasks
            if tasks is not None
            else {str(raw["id"]): TaskInfo.from_wire(raw, taken_at) for raw in snapshot["tasks"]}
        )
        self.last_removed = set(self.tasks) - set(new_tasks)
        self.last_changed = {
            task_id for task_id, task in new_tasks.items() if self.tasks.get(task_id) != task
        }
        self.tasks = new_tasks
        self.cycles = [tuple(cycle) for cycle in snapshot["cycles"]]
        self.named_waits.clear()
        self.last_changed |= self.named_waits.update(_named_waits(new_tasks.values()), ())

    def apply_delta(self, delta: WireDelta) -> None:
        taken_at = float(delta["taken_at"])
        changed = [TaskInfo.from_wire(raw, taken_at) for raw in delta["changed"]]
        self.gil_wait = GilWait.from_wire(delta.get("gil_wait"))
        self.apply_records(taken_at, delta["loops"], changed, delta["removed"], delta["cycles"])

    def apply_records(
        self,
        taken_at: float,
        loops: list[WireLoop],
        changed: Iterable[TaskInfo],
        removed: Iterable[str],
        cycles: list[list[str]],
    ) -> None:
        """A delta whose task records were already made (on another thread: the dashboard's
        feed makes them there, so that its screen thread only files them)."""
        self.taken_at = taken_at
        self.received_at = time.time()
        self.loops = {raw["id"]: LoopInfo.from_wire(raw) for raw in loops}
        changed_ids = set()
        for task in changed:
            self.tasks[task.id] = task
            changed_ids.add(task.id)
        removed_ids = set()
        for task_id in removed:
            if self.tasks.pop(task_id, None) is not None:
                removed_ids.add(task_id)
        self.last_changed = changed_ids
        self.last_removed = removed_ids
        self.cycles = [tuple(cycle) for cycle in cycles]
        # A task whose letter changed is drawn again (a row is, only when its task changes).
        changed_tasks = (self.tasks[task_id] for task_id in changed_ids)
        self.last_changed |= self.named_waits.update(_named_waits(changed_tasks), removed_ids)

    @property
    def object_letters(self) -> dict[str, str]:
        """object id -> letter, for the objects waited on whose name another one shares."""
        return self.named_waits.letters

    def letter_of(self, task: TaskInfo) -> str | None:
        """The letter of the object `task` waits on, when another object goes by its name."""
        awaiting = task.awaiting
        if awaiting is None:
            return None
        return letter_of(awaiting.raw, self.named_waits.letters, task.id)

    # --- queries -----------------------------------------------------------------------------

    def data_age(self, now: float | None = None) -> float:
        return max(0.0, (now or time.time()) - self.received_at)

    def pending(self) -> list[TaskInfo]:
        return [task for task in self.tasks.values() if not task.finished]

    def finished(self) -> list[TaskInfo]:
        done = [task for task in self.tasks.values() if task.finished]
        return sorted(done, key=lambda task: task.finished_at or 0.0)

    def counts(self, loop_id: str | None = None) -> dict[str, int]:
        counts = {"pending": 0, "done": 0, "cancelled": 0, "failed": 0}
        for task in self.tasks.values():
            if loop_id is None or task.loop == loop_id:
                counts[task.state] = counts.get(task.state, 0) + 1
        return counts

    def counts_by_loop(self) -> dict[str, dict[str, int]]:
        """`counts` of every loop, by loop id, in one pass over the tasks."""
        by_loop: dict[str, dict[str, int]] = {
            loop_id: {"pending": 0, "done": 0, "cancelled": 0, "failed": 0}
            for loop_id in self.loops
        }
        for task in self.tasks.values():
            counts = by_loop.get(task.loop)
            if counts is None:
                counts = by_loop[task.loop] = {"pending": 0, "done": 0, "cancelled": 0, "failed": 0}
            counts[task.state] = counts.get(task.state, 0) + 1
        return by_loop

    def cycle_members(self) -> set[str]:
        return {task_id for cycle in self.cycles for task_id in cycle}

    def tree_parent(self, task: TaskInfo) -> str | None:
        """Where a task hangs in the tree: under the task awaiting it (gather, TaskGroup and
        plain awaits all show up in awaited_by), else under the task that created it."""
        for waiter in task.awaited_by:
            if waiter in self.tasks and waiter != task.id:
                return waiter
        if task.parent is not None and task.parent in self.tasks and task.parent != task.id:
            return task.parent
        return None

    def children_map(self, include_finished: bool = True) -> dict[str | None, list[TaskInfo]]:
        visible = [task for task in self.tasks.values() if include_finished or not task.finished]
        visible_ids = {task.id for task in visible}
        children: dict[str | None, list[TaskInfo]] = {}
        for task in visible:
            parent = self.tree_parent(task)
            if parent not in visible_ids:
                parent = None
            children.setdefault(parent, []).append(task)
        for siblings in children.values():
            siblings.sort(key=_sibling_order)
        return children

    def tree(self, include_finished: bool = False) -> Iterator[TreeRow]:
        """Depth-first rows of the task tree. A task reachable twice (a cycle, or nested
        under two waiters) is shown once expanded and then marked as repeated."""
        children = self.children_map(include_finished)
        in_cycle = self.cycle_members()
        emitted: set[str] = set()
        roots = list(children.get(None, []))
        # Tasks in a cycle have no root above them: start from the cycle's lowest id.
        reachable = _reachable(children, roots)
        orphans = [
            task
            for parent, kids in children.items()
            if parent is not None
            for task in kids
            if task.id not in reachable
        ]
        for task in sorted(orphans, key=lambda t: t.number):
            if task.id not in reachable:
                roots.append(task)
                reachable |= _reachable(children, [task])
        no_guides: tuple[bool, ...] = ()
        stack = [(task, 0, no_guides, index == len(roots) - 1) for index, task in enumerate(roots)][
            ::-1
        ]
        while stack:
            task, depth, guides, is_last = stack.pop()
            repeated = task.id in emitted
            yield TreeRow(task, depth, guides, is_last, task.id in in_cycle, repeated)
            if repeated:
                continue
            emitted.add(task.id)
            kids = children.get(task.id, [])
            stack.extend(
                (kids[index], depth + 1, (*guides, not is_last), index == len(kids) - 1)
                for index in range(len(kids) - 1, -1, -1)
            )

    def await_sites(self, include_finished: bool = False) -> list[AwaitSite]:
        """Tasks grouped by coroutine and await site (what kind of thing they await, at which
        line of their coroutine), however many different tasks or peers each one awaits;
        finished tasks by coroutine and state, tasks awaiting nothing by coroutine. Tasks
        serving web requests are grouped by route too, when the application matched one (by
        its template: `/items/{id}`, whatever the item)."""
        # Keyed by the frame object itself (frames are made once per place): hashing it by
        # value for each of 100,000 tasks would double the cost.
        grouped: dict[
            tuple[str, str, int, tuple[str, str] | None],
            tuple[list[str], list[WireAwaiting], TaskInfo],
        ] = {}
        library_files = _LIBRARY_FILES
        tasks = self.tasks
        for task in tasks.values():
            awaiting = task.awaiting
            route = task.route
            if route is None and task.request is not None and awaiting is not None:
                route = _route_of_awaited(tasks, task.request, awaiting.tasks)
            by_route = (task.request[0], route) if route is not None and task.request else None
            if task.finished:
                if not include_finished:
                    continue
                key = (task.coro, task.state, 0, by_route)
            elif awaiting is not None:
                stack = task.stack
                if stack:
                    # `_group_anchor`, its common case inlined (100,000 tasks in a look)
                    anchor = stack[0]
                    library = library_files.get(anchor.file)
                    if library or (library is None and _library_file(anchor.file)):
                        anchor = _program_frame(stack) or anchor
                    key = (task.coro, awaiting.kind, id(anchor), by_route)
                else:
                    key = (task.coro, awaiting.kind, 0, by_route)
            else:
                key = (task.coro, "running" if task.running else "ready", 0, by_route)
            entry = grouped.get(key)
            if entry is None:
                entry = grouped[key] = ([], [], task)
            entry[0].append(task.id)
            if awaiting is not None and not task.finished:
                entry[1].append(awaiting.raw)
        return [
            AwaitSite(
                coro,
                kind,
                _site_of(first.stack) if awaitings else "",
                ids,
                awaitings,
                by_route,
            )
            for (coro, kind, _site, by_route), (ids, awaitings, first) in grouped.items()
        ]

    def subtree(self, task_id: str) -> list[str]:
        """The task and everything under it in the tree, parents first."""
        children = self.children_map(include_finished=False)
        result: list[str] = []
        seen: set[str] = set()
        pending = deque([task_id])
        while pending:
            current = pending.popleft()
            if current in seen:
                continue
            seen.add(current)
            result.append(current)
            pending.extend(kid.id for kid in children.get(current, []))
        return result


def _named_waits(tasks: Iterable[TaskInfo]) -> Iterator[tuple[str, WireAwaiting | None]]:
    """What `NamedWaits.update` files for `tasks`: each one's description, None for one that
    cannot wait on a named object (most tasks: told by its kind, no facts read)."""
    for task in tasks:
        awaiting = task.awaiting
        if awaiting is not None and awaiting.kind in NAMED_OBJECT_KINDS:
            yield task.id, awaiting.raw
        else:
            yield task.id, None


def in_tree_order(model: TaskModel, task_ids: Iterable[str]) -> list[str]:
    """Task ids in the order the tree lists siblings (ids the model does not know last)."""
    ids = list(task_ids)
    known = [model.tasks[task_id] for task_id in ids if task_id in model.tasks]
    unknown = [task_id for task_id in ids if task_id not in model.tasks]
    return [task.id for task in sorted(known, key=_sibling_order)] + unknown


def _sibling_order(task: TaskInfo) -> tuple[int, float, tuple[tuple[int, int | str], ...], int]:
    """Pending before finished, oldest first; tasks older than the agent (no creation time,
    numbered in the order the agent met them) by name in natural order."""
    state_rank = 0 if not task.finished else 1
    if task.created_at is None:
        return (state_rank, 0.0, natural_order(task.name), task.number)
    return (state_rank, task.created_at, (), task.number)


def natural_order(name: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key under which `worker-2` comes before `worker-10` (case ignored): the name's
    runs of digits as numbers, the runs between as text."""
    key: list[tuple[int, int | str]] = []
    for is_digits, run in groupby(name.lower(), key=_is_ascii_digit):
        text = "".join(run)
        key.append((0, int(text)) if is_digits else (1, text))
    return tuple(key)


def _is_ascii_digit(char: str) -> bool:
    return "0" <= char <= "9"


def _reachable(children: dict[str | None, list[TaskInfo]], roots: Iterable[TaskInfo]) -> set[str]:
    seen: set[str] = set()
    pending = [task.id for task in roots]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        pending.extend(kid.id for kid in children.get(current, []))
    return seen
