"""Warnings ("lints") about a process's tasks, found on the client side from the model alone.

`find_warnings(model)` reads a `TaskModel` (no I/O, no clock but the snapshot's) and returns a
`Finding` per problem: an await cycle, a deadlock through lock holders, a lock whose holder
ended without releasing it (`abandoned_lock`), a failed task whose exception nobody
retrieved, a cancel the task's loop has not delivered, calls waiting for a thread of a pool
whose threads are all taken (`threads_exhausted`), a task waiting on something nothing
else can reach (`never_woken`), a pending task nothing references, a task that keeps running
without a real wait (a `sleep(0)` spin), a step that blocked its loop.
`taskscope.words.finding_text` says each one in words; `dump`, `ps`, `tree`, `lint` and the
dashboard show them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Final

from taskscope.model import Awaiting, Stall, TaskInfo, TaskModel
from taskscope.protocol import WireSnapshot, WireTask
from taskscope.words import lettered

#: The kinds, in the order they are reported (the worst first).
KINDS: Final[tuple[str, ...]] = (
    "lock_deadlock",
    "abandoned_lock",
    "await_cycle",
    "never_woken",
    "unreferenced",
    "exception_never_retrieved",
    "cancel_not_honoured",
    "threads_exhausted",
    "connections_exhausted",
    "blocking_step",
    "sleep0_spin",
)
#: A cancel not delivered this many seconds after it was asked for is worth a warning.
CANCEL_GRACE: Final = 1.0
#: A task still running this many seconds after its cancel was delivered (a cleanup may
#: await a little) caught the CancelledError and went on.
SWALLOW_GRACE: Final = 5.0
#: A failed task's waiter runs at the loop's next turn: only a failure this old whose
#: exception nobody retrieved is reported (a fresh one may be retrieved in a moment).
RETRIEVE_GRACE: Final = 1.0
#: A task seen waiting on nothing that ran at least this many steps, at least
#: `SPIN_MIN_RATE` a second over its life, the last one at most `SPIN_RECENT` seconds before
#: the snapshot, is spinning: rescheduling itself with `sleep(0)` rather than waiting (a
#: task woken by sleeps of a millisecond or more stays under the rate).
SPIN_MIN_STEPS: Final = 1000
SPIN_MIN_RATE: Final = 1000.0
SPIN_RECENT: Final = 0.5
#: A call waiting this many seconds for a worker thread, every thread (or token) of its pool
#: taken, is worth a warning: a server under load queues calls for a moment.
THREADS_GRACE: Final = 1.0
#: A request waiting this many seconds for a connection of its HTTP client's pool, every
#: connection being in use, is worth a warning (a busy client's requests queue for less).
CONNECTIONS_GRACE: Final = 10.0
#: Within this many seconds of an attach, a call seen waiting for a worker thread is reported
#: however short its wait looks: the agent cannot know since when it waits.
ATTACH_UNMEASURED: Final = 10.0
#: A task waiting in one of these needs every task it awaits to end (an `asyncio.wait` for
#: the first one, or `as_completed`, does not: one stuck task is no deadlock of it).
_WAITS_FOR_ALL: Final = frozenset({"task", "tasks", "gather", "taskgroup", "shield", "wait_for"})


@dataclass(frozen=True, slots=True)
class Finding:
    """One warning: its kind (one of `KINDS`), the tasks it is about (ids, the first one the
    task it is mostly about), their loop (None for several or none), and the facts its words
    are made of (`taskscope.words.finding_text`)."""

    kind: str
    tasks: tuple[str, ...]
    loop: str | None
    facts: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def find_warnings(model: TaskModel, now: float | None = None) -> list[Finding]:
    """Every warning the model shows, worst kind first. `now` (default: when the snapshot was
    taken) is the moment ages are measured at. One pass over the tasks (tens of
    milliseconds at 100,000)."""
    at = model.taken_at if now is None else now
    tasks = model.tasks
    edges: dict[str, list[str]] = {}
    lock_waits: dict[str, list[str]] = {}
    never_woken: list[TaskInfo] = []
    unreferenced: list[TaskInfo] = []
    failed: list[TaskInfo] = []
    cancels: list[TaskInfo] = []
    spinning: list[TaskInfo] = []
    abandoned: dict[Any, list[TaskInfo]] = {}  # a lock's id -> the tasks waiting for it
    starved: dict[tuple[Any, ...], list[TaskInfo]] = {}  # a thread pool -> the calls queued
    for task in tasks.values():
        if task.state != "pending":
            if task.state == "failed" and task.exception_retrieved is False:
                failed.append(task)
            continue
        awaiting = task.awaiting
        if awaiting is not None:
            facts = awaiting.facts
            if facts:
                holders = facts.get("holders")
                # A semaphore's holders found in part: a task outside may release a permit.
                if holders and not facts.get("holders_partial") and not facts.get("holders_more"):
                    known = [str(h) for h in holders if str(h) in tasks]
                    if known:
                        lock_waits[task.id] = edges[task.id] = known
                if facts.get("never_woken") and not facts.get("made_by_await"):
                    never_woken.append(task)
                if awaiting.kind == "lock" and _held_by_an_ended_task(facts):
                    abandoned.setdefault(facts.get("id"), []).append(task)
                pool = _exhausted_pool(awaiting.kind, facts, task.loop)
                if pool is not None:
                    starved.setdefault(pool, []).append(task)
            if awaiting.tasks and task.id not in edges and awaiting.kind in _WAITS_FOR_ALL:
                edges[task.id] = [other for other in awaiting.tasks if other in tasks]
        if task.unreferenced:
            unreferenced.append(task)
        if task.cancel_requested_at is not None or task.cancelling_since is not None:
            cancels.append(task)
        if task.steps is not None and task.steps >= SPIN_MIN_STEPS:
            spinning.append(task)
    findings: list[Finding] = []
    if lock_waits:
        findings.extend(lock_deadlocks(model, edges, lock_waits))
    findings.extend(abandoned_locks(model, abandoned))
    findings.extend(await_cycles(model))
    # A task of a deadlock or a cycle never wakes either: the deadlock says why.
    explained = {task_id for finding in findings for task_id in finding.tasks}
    findings.extend(
        _flagged(
            (task for task in never_woken if task.id not in explained),
            "never_woken",
            lambda task: _never_woken_facts(task, model.letter_of(task)),
        )
    )
    findings.extend(_flagged(unreferenced, "unreferenced", _unreferenced_facts))
    findings.extend(exceptions_never_retrieved(failed, at))
    findings.extend(cancels_not_honoured(cancels, at))
    findings.extend(threads_exhausted(model, starved, at))
    findings.extend(blocking_steps(model))
    findings.extend(sleep0_spins(spinning, model.taken_at))
    return findings


def _held_by_an_ended_task(facts: Mapping[str, Any]) -> bool:
    """Whether a locked lock's holder has ended (`holder_state`), or been collected since
    (`holders_gone`): nobody will release it."""
    return bool(facts.get("locked")) and bool(
        facts.get("holders_gone") or facts.get("holder_state")
    )


def abandoned_locks(model: TaskModel, waiting: Mapping[Any, list[TaskInfo]]) -> Iterator[Finding]:
    """A lock whose holder ended without releasing it (an `acquire()` with no `finally`
    around a cancel or an exception): one warning per lock, about every task waiting for it;
    `holder` and `holder_state` say the ended task while it is not collected."""
    for tasks_waiting in waiting.values():
        awaiting = tasks_waiting[0].awaiting
        assert awaiting is not None  # it waits for the lock
        found: dict[str, Any] = {"lock": _lock_name(awaiting)}
        letter = model.letter_of(tasks_waiting[0])
        if letter is not None:  # another lock goes by its name
            found["letter"] = letter
            found["type"] = str(awaiting.facts.get("type") or "Lock")
        names = awaiting.facts.get("holder_names") or ()
        if names and awaiting.facts.get("holder_state"):
            found["holder"] = str(names[0])
            found["holder_state"] = awaiting.facts["holder_state"]
        ids = tuple(task.id for task in sorted(tasks_waiting, key=lambda task: task.number))
        yield Finding("abandoned_lock", ids, _loop_of(model, ids), found)


def _exhausted_pool(
    kind: str, facts: Mapping[str, Any], loop: str | None
) -> tuple[Any, ...] | None:
    """The thread pool a call waits for, when every one of its threads is taken: a loop's
    default pool (a `to_thread` call queued, all its threads busy), or the default thread
    limiter of anyio or trio (no token left); else None."""
    if kind == "executor" and facts.get("queued"):
        workers = facts.get("workers")
        if isinstance(workers, int) and (facts.get("busy") or 0) >= workers:
            return ("pool", loop)
    elif kind == "semaphore" and facts.get("thread_limiter") and facts.get("value") == 0:
        return ("limiter", facts.get("id"))
    elif kind == "pool" and _connections_full(facts):
        return ("connections", facts.get("id"))
    return None


def _connections_full(facts: Mapping[str, Any]) -> bool:
    """Whether an HTTP client's pool has every connection its limits allow in use, in all or
    to the request's host."""

    def reached(limit: Any, used: Any) -> bool:
        return isinstance(limit, int) and limit > 0 and isinstance(used, int) and used >= limit

    return reached(facts.get("limit"), facts.get("in_use")) or reached(
        facts.get("limit_per_host"), facts.get("host_in_use")
    )


def threads_exhausted(
    model: TaskModel, starved: Mapping[tuple[Any, ...], list[TaskInfo]], now: float
) -> Iterator[Finding]:
    """A thread pool whose threads (or a thread limiter whose tokens) are all taken, with calls
    queued for over `THREADS_GRACE` seconds: one warning per pool. Calls in threads that do
    not return (a blocking read with no timeout, a lock) hold them all, and every later call
    waits for good."""
    for pool, waiting in starved.items():
        longest, lower_bound = 0.0, False
        for task in waiting:
            waited, bound = task.known_wait(now)
            if waited is not None and waited > longest:
                longest, lower_bound = waited, bound
        if pool[0] == "connections":
            # A busy client's requests queue for connections for seconds in the normal
            # course: only a long wait, measured, is worth a warning
            if longest < CONNECTIONS_GRACE:
                continue
        elif longest < THREADS_GRACE and not _came_just_now(model, now):
            continue
        facts = waiting[0].awaiting.facts if waiting[0].awaiting is not None else {}
        found: dict[str, Any] = {
            "pool": pool[0],
            # None: since when they wait is not known (seen by an agent that came just now)
            "waited": longest if longest >= THREADS_GRACE else None,
            "lower_bound": lower_bound,
        }
        if pool[0] == "pool":
            found["threads"] = facts.get("workers")
            found["holder_names"] = _default_pool_callers(model, waiting[0].loop)
        elif pool[0] == "connections":
            pass  # its facts below
        else:
            found["holder_names"] = list(facts.get("holder_names") or ())
            found["holders_more"] = facts.get("holders_more") or 0
        ids = tuple(task.id for task in sorted(waiting, key=lambda task: task.number))
        loop = _loop_of(model, ids)
        if pool[0] == "connections":
            # The pool's class, the host and its limits, as its waiters' facts say them
            found["pool_type"] = facts.get("type")
            found["peer"] = waiting[0].awaiting.raw.get("peer") if waiting[0].awaiting else None
            for key in ("limit", "in_use", "limit_per_host", "host_in_use"):
                found[key] = facts.get(key)
            yield Finding("connections_exhausted", ids, loop, found)
            continue
        found["thread_stacks"] = _thread_stacks(model, loop)
        yield Finding("threads_exhausted", ids, loop, found)


#: The calls that run in their loop's default thread pool, whatever the program passes.
_DEFAULT_POOL_CALLS: Final = frozenset({"to_thread", "loop.getaddrinfo", "loop.getnameinfo"})


def _default_pool_callers(model: TaskModel, loop: str) -> list[str]:
    """The names of the tasks of `loop` whose call a thread of its default pool runs (a
    `run_in_executor` call may be another pool's: not counted)."""
    callers = [
        task
        for task in model.tasks.values()
        if task.state == "pending"
        and task.loop == loop
        and task.awaiting is not None
        and task.awaiting.kind == "executor"
        and task.awaiting.facts.get("thread")
        and task.awaiting.raw.get("call") in _DEFAULT_POOL_CALLS
    ]
    return [task.name for task in sorted(callers, key=lambda task: task.number)]


def _thread_stacks(model: TaskModel, loop: str | None) -> list[Any]:
    """The stacks of the calls worker threads run for the tasks of `loop`: where they are
    says why the threads are not free."""
    stacks = []
    for task in model.tasks.values():
        awaiting = task.awaiting
        if task.state != "pending" or awaiting is None or awaiting.kind != "executor":
            continue
        stack = awaiting.facts.get("thread_stack")
        if stack and (loop is None or task.loop == loop):
            stacks.append(stack)
    return stacks


def _came_just_now(model: TaskModel, now: float) -> bool:
    """Whether the agent came into the process (an attach) so lately that no wait it sees can
    have been measured for `THREADS_GRACE` yet: a hung program just attached to."""
    since = model.history_since
    return since is not None and now - since < ATTACH_UNMEASURED


def awaiting_warns(awaiting: Mapping[str, Any] | None) -> bool:
    """Whether a pending task waiting on this is in a warning whatever else it does (a wait
    nothing can end), or may be needed to word one (a call a worker thread runs: where the
    threads are, for `threads_exhausted`; as many as there are threads). With `waits_on`,
    its optional keys and its id, all `warning_records` looks at in a record."""
    if awaiting is None:
        return False
    facts = awaiting.get("object") or {}
    if facts.get("locked") and (facts.get("holders_gone") or facts.get("holder_state")):
        return True  # an abandoned lock
    if _exhausted_pool(str(awaiting.get("kind")), facts, None) is not None:
        return True  # a call waiting for a thread (`threads_exhausted` says after how long)
    if facts.get("thread_stack"):
        return True  # a call in a thread
    return bool(facts.get("never_woken")) and not facts.get("made_by_await")


def waits_on(awaiting: Mapping[str, Any] | None) -> list[str]:
    """The tasks a pending task waiting on this waits for, as a deadlock would go through
    them: its lock's holders, or the tasks it awaits all of. A task kept for these alone is
    kept only when some task's wait points at it (see `warning_records`)."""
    if awaiting is None:
        return []
    holders = (awaiting.get("object") or {}).get("holders")
    waited = [str(holder) for holder in holders] if holders else []
    if awaiting.get("tasks") and awaiting["kind"] in _WAITS_FOR_ALL:
        waited.extend(awaiting["tasks"])
    return waited


def warning_records(snapshot: WireSnapshot) -> WireSnapshot:
    """The snapshot with only the task records a warning can be about or go through (a
    model of 100,000 records takes seconds to make; `dump` needs only these): the same
    findings from `find_warnings`, from a model a fraction of the size.

    A task kept only for its waits (on a lock's holders, on tasks it awaits all of) is left
    out too when no task's wait points at it: it cannot be in a deadlock (25,000 tasks
    waiting on one lock are then no records)."""
    cycle_members = {task_id for cycle in snapshot["cycles"] for task_id in cycle}
    stalled = {
        stall.get("task")
        for loop in snapshot["loops"]
        for stall in loop.get("stalls") or ()
        if stall.get("task") is not None
    }
    kept: list[tuple[int, WireTask]] = []
    waits_only: list[tuple[int, WireTask]] = []
    waited_on: set[Any] = set()
    for index, record in enumerate(snapshot["tasks"]):
        state = record["state"]
        waits = False
        if state == "pending":
            awaiting = record["awaiting"]
            steps = record.get("steps")
            relevant = (
                record.get("unreferenced")
                or record.get("cancel_requested_at") is not None
                or record.get("cancelling_since") is not None
                or (steps is not None and steps >= SPIN_MIN_STEPS)
                or awaiting_warns(awaiting)
            )
            waited = waits_on(awaiting)
            if waited:
                waits = True
                waited_on.update(waited)
        else:
            relevant = state == "failed" and record.get("exception_retrieved") is False
        if relevant or record["id"] in cycle_members or record["id"] in stalled:
            kept.append((index, record))
        elif waits:
            waits_only.append((index, record))
    pointed_at = [(index, record) for index, record in waits_only if record["id"] in waited_on]
    if pointed_at:  # back in the snapshot's order, as the model would have them
        kept = sorted(kept + pointed_at, key=itemgetter(0))
    subset = dict(snapshot)
    subset["tasks"] = [record for _index, record in kept]
    return subset  # type: ignore[return-value]


def warned_tasks(findings: Iterable[Finding]) -> dict[str, list[Finding]]:
    """task id -> the findings about it (for a marker beside each task)."""
    by_task: dict[str, list[Finding]] = {}
    for finding in findings:
        for task_id in finding.tasks:
            by_task.setdefault(task_id, []).append(finding)
    return by_task


def _loop_of(model: TaskModel, task_ids: Iterable[str]) -> str | None:
    loops = {model.tasks[task_id].loop for task_id in task_ids if task_id in model.tasks}
    return loops.pop() if len(loops) == 1 else None


# --- await cycles and lock deadlocks ----------------------------------------------------------


def await_cycles(model: TaskModel) -> Iterator[Finding]:
    """The agent's await cycles (tasks awaiting each other), each a warning."""
    for cycle in model.cycles:
        ordered = tuple(sorted(cycle, key=_id_order))
        yield Finding("await_cycle", ordered, _loop_of(model, ordered), {})


def lock_deadlocks(
    model: TaskModel, edges: dict[str, list[str]], lock_waits: dict[str, list[str]]
) -> Iterator[Finding]:
    """Cycles through lock holders: a task waits for a lock (or a Condition's lock) held by
    a task that waits, directly or through the tasks it awaits, for a lock the first holds.
    Each is a strongly connected set of waits with at least one lock in it, where every task
    waiting on a lock with several holders has all of them inside: no task outside can
    release anything the set waits for. `edges`: each pending task's waits (the holders of
    its lock, else the tasks it awaits all of); `lock_waits`: the tasks waiting on a lock,
    and its holders."""
    # Imported here: `taskscope.agent` is the whole agent (tens of ms); most looks need none.
    from taskscope.agent.cycles import strongly_connected

    for component in strongly_connected(edges):
        members = set(component)
        if len(component) == 1:
            only = component[0]
            if only not in edges.get(only, ()):
                continue  # not waiting on itself
        if not any(task_id in lock_waits for task_id in members):
            continue  # an await cycle only: reported as one
        if any(
            not set(holders) <= members
            for task_id, holders in lock_waits.items()
            if task_id in members
        ):
            continue  # some holder outside the set can still release
        ordered = _cycle_order(component, edges, lock_waits)
        labels = _lock_labels(model, [t for t in ordered if t in lock_waits])
        steps = []
        for index, task_id in enumerate(ordered):
            following = ordered[(index + 1) % len(ordered)]
            awaiting = model.tasks[task_id].awaiting
            assert awaiting is not None
            if task_id in lock_waits:
                steps.append(
                    {
                        "task": task_id,
                        "waits": "lock",
                        "lock": labels[task_id],
                        "lock_id": awaiting.facts.get("id"),
                        "call": awaiting.raw.get("call") or awaiting.kind,
                        "holder": following,
                    }
                )
            else:
                steps.append({"task": task_id, "waits": "task", "holder": following})
        yield Finding("lock_deadlock", tuple(ordered), _loop_of(model, ordered), {"steps": steps})


def _lock_labels(model: TaskModel, task_ids: list[str]) -> dict[str, str]:
    """task id -> how to name the lock it waits for: its name, or where another lock goes by
    that name, its type and the letter every view gives it (`Lock A`, `Lock B`:
    `TaskModel.object_letters`)."""
    labels = {}
    for task_id in task_ids:
        task = model.tasks[task_id]
        awaiting = task.awaiting
        if awaiting is None:
            continue
        letter = model.letter_of(task)
        if letter is not None:
            labels[task_id] = lettered(str(awaiting.facts.get("type") or "lock"), letter)
        else:
            labels[task_id] = _lock_name(awaiting)
    return labels


def _lock_name(awaiting: Awaiting) -> str:
    facts = awaiting.facts
    name = facts.get("name")
    if name:
        return str(name)
    kind = facts.get("type") or awaiting.kind
    object_id = facts.get("id")
    return f"{kind} {object_id}" if object_id is not None else str(kind)


def _cycle_order(
    component: list[str], edges: dict[str, list[str]], lock_waits: dict[str, list[str]]
) -> list[str]:
    """The members of a strongly connected set as one walk along its edges, from the lowest
    id that waits on a lock: a cycle to say in one sentence (a set with a second loop in it
    is said by one of its cycles, every member listed)."""
    members = set(component)
    start = min((t for t in component if t in lock_waits), key=_id_order)
    # Shortest way back to `start` from each member, found backwards from it.
    order = [start]
    seen = {start}
    current = start
    while True:
        following = [t for t in edges.get(current, ()) if t in members]
        fresh = [t for t in following if t not in seen]
        if not fresh:
            break
        current = min(fresh, key=_id_order)
        order.append(current)
        seen.add(current)
    if start not in edges.get(order[-1], ()):
        return sorted(component, key=_id_order)  # no simple walk back: list them all
    rest = [t for t in sorted(component, key=_id_order) if t not in seen]
    return order + rest


def _id_order(task_id: str) -> tuple[int, str]:
    number = task_id.rpartition(":")[2]
    return (int(number) if number.isdigit() else 0, task_id)


# --- facts the agent found ----------------------------------------------------------------------


def _never_woken_facts(task: TaskInfo, letter: str | None) -> dict[str, Any] | None:
    """`letter`: the object's, when another one goes by its name (`TaskModel.letter_of`)."""
    awaiting = task.awaiting
    if awaiting is None or not awaiting.facts.get("never_woken"):
        return None
    if awaiting.facts.get("made_by_await"):
        return None  # `await asyncio.Future()`: waits until cancelled, as written to
    if task.unreferenced:
        return None  # implied: nothing reaches the task, so nothing reaches what it awaits
    name = awaiting.facts.get("name")
    facts = {
        "kind": awaiting.kind,
        "what": str(name) if name else None,
        "type": str(awaiting.facts.get("type") or awaiting.kind),
        "call": awaiting.raw.get("call"),
    }
    if letter is not None:
        facts["letter"] = letter
    return facts


def _unreferenced_facts(task: TaskInfo) -> dict[str, Any] | None:
    return {} if task.unreferenced else None


def _flagged(tasks: Iterable[TaskInfo], kind: str, facts_of: Any) -> Iterator[Finding]:
    for task in sorted(tasks, key=lambda t: _id_order(t.id)):
        facts = facts_of(task)
        if facts is not None:
            yield Finding(kind, (task.id,), task.loop, facts)


def exceptions_never_retrieved(tasks: Iterable[TaskInfo], now: float) -> Iterator[Finding]:
    """Failed tasks whose exception nobody awaited nor asked for, failed over a second ago."""
    for task in sorted(tasks, key=lambda t: (t.finished_at or 0.0, _id_order(t.id))):
        if task.state != "failed" or task.exception_retrieved is not False:
            continue
        if task.finished_at is not None and now - task.finished_at < RETRIEVE_GRACE:
            continue
        yield Finding(
            "exception_never_retrieved",
            (task.id,),
            task.loop,
            {"exception": task.exception, "finished_at": task.finished_at},
        )


def cancels_not_honoured(
    tasks: Iterable[TaskInfo], now: float, grace: float = CANCEL_GRACE
) -> Iterator[Finding]:
    """Pending tasks whose cancel, asked for over `grace` seconds before `now`, their loop
    has not delivered (a blocked loop), and those cancelled over `SWALLOW_GRACE` seconds ago
    that go on (they caught the CancelledError)."""
    for task in sorted(tasks, key=lambda t: _id_order(t.id)):
        requested = task.cancel_requested_at
        if requested is not None:
            if now - requested > grace:
                facts = {"requested_ago": round(now - requested, 3), "delivered": False}
                yield Finding("cancel_not_honoured", (task.id,), task.loop, facts)
            continue
        since = task.cancelling_since
        if since is not None and now - since > SWALLOW_GRACE:
            facts = {"requested_ago": round(now - since, 3), "delivered": True}
            yield Finding("cancel_not_honoured", (task.id,), task.loop, facts)


def blocking_steps(model: TaskModel) -> Iterator[Finding]:
    """The stalls each loop kept (steps longer than its threshold), one warning per task (or
    callback) that stalled it: its longest stall, where it blocked, how many and the last.
    Tasks that have ended (a server's requests, one task each) are one warning per code they
    ran and line they blocked on, however many tasks that was."""
    for loop in model.loops.values():
        by_culprit: dict[tuple[str | None, ...], list[Stall]] = {}
        for stall in loop.stalls:
            by_culprit.setdefault(_culprit(model, stall), []).append(stall)
        for culprit, stalls in by_culprit.items():
            longest = max(stalls, key=lambda stall: stall.duration)
            latest = max(stalls, key=lambda stall: stall.started_at)
            where = longest.stack[-1] if longest.stack else None
            task_ids = tuple(dict.fromkeys(s.task for s in stalls if s.task is not None))
            live = model.tasks.get(longest.task) if longest.task is not None else None
            coro = live.coro if live is not None else None
            if coro is None and culprit[0] != "callback" and longest.stack:
                coro = longest.stack[0].function  # the outermost frame: what the task ran
            requests = list(dict.fromkeys(s.request for s in stalls if s.request is not None))
            yield Finding(
                "blocking_step",
                task_ids,
                loop.id,
                {
                    "requests": [list(request) for request in requests],
                    "duration": longest.duration,
                    "count": len(stalls),
                    "started_at": latest.started_at,
                    "task_name": longest.task_name,
                    "task_count": len(task_ids),
                    "coro": coro,
                    "callback": longest.callback,
                    "ongoing": latest.ongoing,
                    "function": where.function if where is not None else None,
                    "location": where.location if where is not None else None,
                    "threshold": loop.stall_threshold,
                },
            )


def _culprit(model: TaskModel, stall: Stall) -> tuple[str | None, ...]:
    """What a stall's warning is about: its task while pending; once the task has ended, the
    code it ran and the line it blocked on; or its callback."""
    if stall.task is None:
        return ("callback", stall.callback)
    task = model.tasks.get(stall.task)
    if task is not None and task.state == "pending":
        return ("task", stall.task)
    outermost = stall.stack[0].function if stall.stack else None
    blocked_at = stall.stack[-1].location if stall.stack else None
    return ("ended", outermost, blocked_at)


def sleep0_spins(tasks: Iterable[TaskInfo], taken_at: float) -> Iterator[Finding]:
    """Tasks that ran many steps, fast, the last one just now, and wait on nothing (or in a
    `sleep(0)`, which sets no timer): each step reschedules the next (`await
    asyncio.sleep(0)` in a loop, polling a flag). A task woken by real waits (a sleep, a
    queue, a socket) is seen waiting on them."""
    for task in sorted(tasks, key=lambda t: _id_order(t.id)):
        steps, last_ran = task.steps, task.last_ran_at
        if steps is None or last_ran is None or steps < SPIN_MIN_STEPS:
            continue
        awaiting = task.awaiting
        if awaiting is not None and not (
            awaiting.kind == "sleep" and awaiting.seconds_left is None
        ):
            continue  # waiting for something (a `sleep(0)` has no timer: no wait at all)
        if taken_at - last_ran > SPIN_RECENT:
            continue  # it has stopped
        age, _lower_bound = task.known_age(taken_at)
        if not age or steps / age < SPIN_MIN_RATE:
            continue
        yield Finding(
            "sleep0_spin",
            (task.id,),
            task.loop,
            {"steps": steps, "per_second": round(steps / age, 1), "busy_s": task.busy_s},
        )
