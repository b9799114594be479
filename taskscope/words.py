"""Where facts become words: the one module that says what a task waits on, in English.

The agent and the protocol carry facts only (an `awaiting` description's kind, the asyncio
call, the object's name and sizes, peers, countdown numbers, the snapshot's await cycles).
Everything a person reads about a task is made here, from those facts: the awaiting sentence
(schema 1's `text`, which `fill_texts` adds to a snapshot or delta for `taskscope dump` and
other readers of the JSON), countdowns brought up to now, overdue timers, the labels of the
grouped view, the await-cycle mark and durations. No code anywhere reads these words back.

Standard library and the protocol's types only: the client, the model, the CLI and the
dashboard all call it. Task records are read through `TaskFacts`, which `model.TaskInfo`
satisfies.
"""

from __future__ import annotations

import collections
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

#: The mark shown beside a task that is part of an await cycle (CLI and dashboard).
CYCLE_MARK: Final = "⟳ await cycle"
#: What ends the awaiting sentence of a task in an await cycle.
CYCLE_WORDS: Final = " (await cycle)"
#: A timer this late is said to be overdue (a busy loop is late by a few milliseconds).
OVERDUE_SHOWN: Final = 0.1


class AwaitingFacts(Protocol):
    """What a task waits on, as the model keeps it (`model.Awaiting`)."""

    @property
    def kind(self) -> str: ...
    @property
    def raw(self) -> Mapping[str, Any]: ...
    @property
    def seconds_left(self) -> float | None: ...
    @property
    def deadline_in(self) -> float | None: ...
    @property
    def seconds_overdue(self) -> float | None: ...
    @property
    def deadline_overdue(self) -> float | None: ...


class TaskFacts(Protocol):
    """A task as the model keeps it (`model.TaskInfo`)."""

    @property
    def id(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def running(self) -> bool: ...
    @property
    def result(self) -> str | None: ...
    @property
    def exception(self) -> str | None: ...
    @property
    def awaiting(self) -> AwaitingFacts | None: ...
    @property
    def observed_at(self) -> float: ...
    @property
    def cancel_requested_at(self) -> float | None: ...
    @property
    def finished(self) -> bool: ...


# --- numbers ------------------------------------------------------------------------------


def seconds_text(value: float) -> str:
    """A duration as a countdown says it: one decimal below 100 s."""
    value = max(0.0, value)
    return f"{value:.1f} s" if value < 100 else f"{value:.0f} s"


def format_duration(seconds: float | None) -> str:
    """`850ms`, `3.1s`, `12m04s`, `3h02m`: short and of constant shape."""
    if seconds is None:
        return "?"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def step_time_text(seconds: float | None) -> str:
    """Time spent in steps, from microseconds to hours: `0.4 ms`, `310 ms`, `8.21 s`; `-`
    when not measured."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 0.00005:
        return "0.0 ms"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 100:
        return f"{seconds:.2f} s"
    return format_duration(seconds)


def count_text(count: int | None) -> str:
    """A count with thousands separated, `48,210`; `-` when not counted."""
    return "-" if count is None else f"{count:,}"


def offset_text(seconds: float, tenths: bool = False) -> str:
    """A position in a recording, `1:30` or `1:02:05`; `0:04.3` with `tenths`."""
    seconds = max(0.0, seconds)
    if tenths:
        minutes, rest = divmod(round(seconds, 1), 60)
        return f"{int(minutes)}:{rest:04.1f}"
    whole = int(seconds)
    hours, rest_whole = divmod(whole, 3600)
    minutes_whole, secs = divmod(rest_whole, 60)
    return f"{hours}:{minutes_whole:02d}:{secs:02d}" if hours else f"{minutes_whole}:{secs:02d}"


def recording_moment(at: float, start: float, end: float) -> str:
    """Which moment of a recording is shown: `14:02:11 (+1:30 of 10:00)`; a recording shorter
    than a minute counts in tenths, `(+0:04.3 of 0:12.0)`."""
    clock = time.strftime("%H:%M:%S", time.localtime(at))
    tenths = end - start < 60
    return f"{clock} (+{offset_text(at - start, tenths)} of {offset_text(end - start, tenths)})"


def age_words(age: float | None, lower_bound: bool, unknown: str = "?") -> str:
    """`3.0s`; `≥3.0s` when counted from the agent's first sight of the task (its creation
    came before an attach); `unknown` when neither is known."""
    if age is None:
        return unknown
    return ("≥" if lower_bound else "") + format_duration(age)


#: A wait known only from the agent's looks is said once it is at least this long: the
#: first look at a task finds it waiting "≥0s", which tells nothing.
WAIT_SHOWN: Final = 1.0


#: Under a table or tree that shows a wait marked ≥.
WAIT_BOUND_NOTE: Final = (
    "a wait marked ≥ counts from the agent's first look that found the task waiting there "
    "(it may have waited longer); another look later shows which tasks have not moved"
)


def wait_words(wait: float | None, lower_bound: bool) -> str:
    """How long a task has waited where it waits now: `41.0s`; `≥41.0s` when counted from the
    first look that found it there; "" when unknown, or a lower bound under `WAIT_SHOWN`."""
    if wait is None or (lower_bound and wait < WAIT_SHOWN):
        return ""
    return age_words(wait, lower_bound)


def rate_text(per_second: float | None) -> str:
    """Steps per second: `850/s`, `2.1k/s`; `-` when unknown."""
    if per_second is None:
        return "-"
    if per_second < 1000:
        return f"{per_second:.0f}/s"
    if per_second < 1_000_000:
        return f"{per_second / 1000:.1f}k/s"
    return f"{per_second / 1_000_000:.1f}M/s"


def share_text(share: float | None) -> str:
    """A share of time (0-1) as a percentage: `34%`, `<1%`; `-` when unknown."""
    if share is None:
        return "-"
    if 0 < share < 0.005:
        return "<1%"
    return f"{share * 100:.0f}%"


def lag_text(lag: float | None) -> str:
    """A loop's lag: `0.4 ms`, `250 ms`, `1.2 s`; `-` when unknown."""
    if lag is None:
        return "-"
    if lag < 1:
        return f"{lag * 1000:.1f} ms" if lag < 0.01 else f"{lag * 1000:.0f} ms"
    return seconds_text(lag)


def ago_text(at: float | None, now: float) -> str:
    """`2.1s ago` from a wall-clock time; `never` when unknown."""
    if at is None:
        return "never"
    return f"{format_duration(max(0.0, now - at))} ago"


def runtime_words(steps: int | None, busy: float | None, longest: float | None) -> str:
    """`48,210 steps · busy 8.21s · longest 310ms`; "" when the agent does not time steps."""
    if steps is None and busy is None:
        return ""
    return (
        f"{count_text(steps)} step{'' if steps == 1 else 's'} · busy {step_time_text(busy)}"
        f" · longest {step_time_text(longest)}"
    )


def moments_words(last_ran_at: float | None, wait: tuple[float | None, bool], now: float) -> str:
    """`last ran 2.1s ago · waiting 41.0s` (each part when known; `≥41.0s` for a wait
    counted from the first look that found it there: see `wait_words`); "" when neither is."""
    moments: list[str] = []
    if last_ran_at is not None:
        moments.append(f"last ran {ago_text(last_ran_at, now)}")
    waited = wait_words(*wait)
    if waited:
        moments.append(f"waiting {waited}")
    return " · ".join(moments)


def stall_words(duration: float, ongoing: bool) -> str:
    """`blocked the loop 310ms`, `blocking the loop for 4.2s (still)`."""
    if ongoing:
        return f"blocking the loop for {step_time_text(duration)} (still running)"
    return f"blocked the loop {step_time_text(duration)}"


def stall_mark_text(
    number: int, of: int, who: str | None, duration: float, ongoing: bool, started_at: float
) -> str:
    """Which stall of a recording a replay jumped to: `stall 2 of 5: indexer blocked the loop
    310ms at 14:02:11` (`who`: the task's name, or the callback's)."""
    who = who or "a step"
    clock = time.strftime("%H:%M:%S", time.localtime(started_at))
    return f"stall {number} of {of}: {who} {stall_words(duration, ongoing)} at {clock}"


def no_stalls_words(threshold: float | None) -> str:
    """What the stalls view says when it has nothing to list."""
    if threshold is None:
        return "no stall history: this source does not time the loop's steps"
    return f"no step longer than the {step_time_text(threshold)} stall threshold"


def cancel_note(task: TaskFacts, now: float) -> str:
    """`cancel requested 2.1 s ago` while the task's loop has not delivered a cancel."""
    if task.cancel_requested_at is None or task.finished:
        return ""
    ago = max(0.0, now - task.cancel_requested_at)
    return f"cancel requested {ago:.1f} s ago"


# --- the awaiting sentence ------------------------------------------------------------------


def awaiting_text(
    awaiting: Mapping[str, Any],
    *,
    seconds_left: float | None = None,
    deadline_in: float | None = None,
    sleep_overdue: float | None = None,
    deadline_overdue: float | None = None,
    in_cycle: bool = False,
    letter: str | None = None,
) -> str:
    """The sentence for a description: `Queue.get on jobs (0 items)`, `sleep, 3.2 s left,
    timeout in 1.0 s`. Countdowns are the numbers given (a sleep's end is said overdue when
    `sleep_overdue` is given, a deadline when `deadline_overdue` is). `letter`: the object's
    in `object_letters`, when another object of the program goes by its name."""
    if sleep_overdue is not None:
        sleep_words: str | None = f"overdue {seconds_text(sleep_overdue)}"
    elif seconds_left is not None:
        sleep_words = f"{seconds_text(seconds_left)} left"
    else:
        sleep_words = None
    text = _sentence(awaiting, sleep_words, letter)
    if (awaiting.get("object") or {}).get("made_by_await"):
        text += ", until cancelled"  # `await asyncio.Future()`: nothing else can end it
    if deadline_overdue is not None:
        text += f", timeout overdue {seconds_text(deadline_overdue)}"
    elif deadline_in is not None:
        text += f", timeout in {seconds_text(deadline_in)}"
    return text + CYCLE_WORDS if in_cycle else text


def schema_text(
    awaiting: Mapping[str, Any], in_cycle: bool = False, letter: str | None = None
) -> str:
    """Schema 1's `text` of a description: its countdowns as observed, never said overdue."""
    return awaiting_text(
        awaiting,
        seconds_left=awaiting.get("seconds_left"),
        deadline_in=awaiting.get("deadline_in"),
        in_cycle=in_cycle,
        letter=letter,
    )


# --- objects of one name ----------------------------------------------------------------------

#: The waits on an object the program names: the agent gives the name the object has where
#: the task waits (a variable, an attribute), so two objects may go by one name (`worker(a, b)`
#: and `worker(b, a)` both wait on their `lock_b`).
NAMED_OBJECT_KINDS: Final = frozenset(
    {"lock", "semaphore", "barrier", "event", "condition", "queue_get", "queue_put", "queue_join"}
)


def named_object(
    awaiting: Mapping[str, Any] | None,
) -> tuple[str, str, str, tuple[str, ...]] | None:
    """A description's object as `object_letters` tells objects apart: (its type, its name,
    its id, the ids of the tasks holding it), or None for a wait on no named object."""
    if awaiting is None or awaiting.get("kind") not in NAMED_OBJECT_KINDS:
        return None
    facts = awaiting.get("object")
    if not isinstance(facts, Mapping):
        return None
    name, object_id = facts.get("name"), facts.get("id")
    if not name or object_id is None:
        return None
    holders = facts.get("holders")
    # (a list on the wire, a tuple in a snapshot made in the process: `agent.snapshot()`)
    held_by = tuple(str(holder) for holder in holders) if isinstance(holders, list | tuple) else ()
    return (str(facts.get("type") or awaiting.get("kind")), str(name), str(object_id), held_by)


def object_letters(objects: Iterable[tuple[str, str, str, tuple[str, ...]]]) -> dict[str, str]:
    """object id -> its letter (`A`, `B`... `Z`, `AA`...) for each object waited on whose name
    another object of its type shares. `objects`: the `named_object` of each wait. Lettered
    per type by the lowest task holding it, then by id: a lock deadlock's sentence begins
    with its lowest task, which holds Lock A; the letters are the same whoever reads the
    same waits (the dashboard, `ps`, `dump`, `lint`)."""
    by_name: dict[tuple[str, str], dict[str, float]] = {}
    for kind, name, object_id, holders in objects:
        of_name = by_name.setdefault((kind, name), {})
        held = min((_task_number(holder) for holder in holders), default=float("inf"))
        of_name[object_id] = min(held, of_name.get(object_id, held))
    shared = sorted(
        (held, kind, object_id)
        for (kind, _name), of_name in by_name.items()
        if len(of_name) > 1
        for object_id, held in of_name.items()
    )
    letters: dict[str, str] = {}
    per_kind: dict[str, int] = {}
    for _held, kind, object_id in shared:
        if object_id in letters:
            continue  # one object, two shared names: it keeps its first letter
        count = per_kind.get(kind, 0)
        per_kind[kind] = count + 1
        letters[object_id] = _letter(count)
    return letters


def lettered(kind: str, letter: str) -> str:
    """How an object told apart by its letter is named: `Lock A`."""
    return f"{kind} {letter}"


def _with_letter(name: str, facts: Mapping[str, Any]) -> str:
    """A warning's object by its name, and by its letter when its facts carry one (another
    object goes by that name): `q (Queue B)`."""
    letter = facts.get("letter")
    return f"{name} ({lettered(str(facts.get('type')), str(letter))})" if letter else name


def _letter(count: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA: spreadsheet columns."""
    letters = ""
    count += 1
    while count:
        count, digit = divmod(count - 1, 26)
        letters = chr(ord("A") + digit) + letters
    return letters


def _task_number(task_id: str) -> float:
    """A task id's number (`4242:17` is 17 of process 4242); one that has none sorts last."""
    try:
        return int(task_id.rpartition(":")[2])
    except ValueError:
        return float("inf")


#: Where a path says a frame is not the program's own code: Python's library, installed
#: packages, frozen and built-in modules, taskscope's agent.
_LIBRARY_PARTS = ("/lib/python3", "/site-packages/", "/dist-packages/", "/taskscope/agent/")


def is_library(path: str) -> bool:
    return path.startswith("<") or any(part in path for part in _LIBRARY_PARTS)


def _thread_place(stack: Any) -> str:
    """`, at report() app.py:8` after a call a worker thread runs: the innermost frame of the
    program's own code in the thread's stack (where it called what blocks), if any."""
    place = _program_place(stack)
    return f", at {place}" if place else ""


def _program_place(stack: Any) -> str | None:
    """`report() app.py:8`: the innermost frame of the program's own code in a stack of wire
    frames (outermost first), or None."""
    if not isinstance(stack, list):
        return None
    for frame in reversed(stack):
        if isinstance(frame, Mapping) and not is_library(str(frame.get("file") or "<")):
            line = frame.get("line")
            place = os.path.basename(str(frame.get("file"))) + (f":{line}" if line else "")
            return f"{frame.get('function')}() {place}"
    return None


def _queued_words(facts: Mapping[str, Any]) -> str:
    """`, queued: 6 of 6 threads busy` after a call no thread of its pool runs yet."""
    if not facts.get("queued"):
        return ""
    workers, busy = facts.get("workers"), facts.get("busy")
    if workers is None or busy is None:
        return ", queued"
    return f", queued: {busy} of {_plural(workers, 'thread')} busy"


def coro_label(coro: str, request: tuple[str, str] | None) -> str:
    """What a task runs, for a column: `worker()`, or for a task serving a web request the
    request first (a column cuts its end): `GET /report (RequestResponseCycle.run_asgi)`."""
    if request is None:
        return f"{coro}()"
    return f"{request[0]} {request[1]} ({coro})"


def served_words(request: tuple[str, str], route: str | None) -> str:
    """The request a task serves, for its detail: `GET /items/7, route /items/{item_id}`."""
    served = f"{request[0]} {request[1]}"
    return served if route is None or route == request[1] else f"{served}, route {route}"


def _named(call: str, name: Any) -> str:
    return f"{call} on {name}" if name else call


def _plural(count: Any, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def _pool_details(facts: Mapping[str, Any]) -> str:
    """What keeps a request of an aiohttp connector waiting: the limit its connections in use
    reached (all of them, or those to its host), and how many wait with it."""
    limit, in_use = facts.get("limit"), facts.get("in_use")
    per_host, host_in_use = facts.get("limit_per_host"), facts.get("host_in_use")
    details = []
    if per_host and host_in_use is not None and host_in_use >= per_host:
        details.append(f"all {per_host} to this host in use")
    if limit and in_use is not None and in_use >= limit:
        details.append(f"all {limit} in use")
    if not details and in_use is not None:
        details.append(f"{in_use}/{limit} in use" if limit else f"{in_use} in use")
    waiters = facts.get("waiters")
    if waiters is not None:
        details.append(f"{waiters} waiting")
    return ", ".join(details) or "?"


def _sentence(
    awaiting: Mapping[str, Any], sleep_words: str | None, letter: str | None = None
) -> str:
    """The words for a description before its timeout; `sleep_words` go after its sleep (a
    wait_for's sleep is that of the description it nests)."""
    kind = str(awaiting.get("kind", "?"))
    facts: Mapping[str, Any] = awaiting.get("object") or {}
    call = str(awaiting.get("call") or kind)
    peer = awaiting.get("peer")
    # `lock_b (Lock B, locked...)` where another lock goes by `lock_b` too.
    known_as = f"{lettered(str(facts.get('type') or kind), letter)}, " if letter else ""
    if kind == "sleep":
        if facts.get("forever"):
            return "sleep forever"  # `asyncio.sleep(math.inf)`, anyio's sleep_forever
        return f"sleep, {sleep_words}" if sleep_words is not None else "sleep"
    if kind == "queue_get":
        size = facts.get("size")
        detail = _plural(size, "item") if size is not None else "?"
        return f"{_named(call, facts.get('name'))} ({known_as}{detail})"
    if kind == "queue_join":
        unfinished = facts.get("unfinished")
        detail = f"{unfinished} unfinished" if unfinished is not None else "?"
        return f"{_named(call, facts.get('name'))} ({known_as}{detail})"
    if kind == "queue_put":
        size, maxsize = facts.get("size"), facts.get("maxsize")
        detail = f"full, {size}/{maxsize}" if maxsize else f"{size} items"
        return f"{_named(call, facts.get('name'))} ({known_as}{detail})"
    if kind in ("lock", "semaphore", "barrier", "event", "condition"):
        details = []
        if kind == "lock":
            details.append("locked" if facts.get("locked") else "unlocked")
        elif kind == "semaphore":
            details.append(f"value {facts.get('value')}")
        elif kind == "barrier":
            details.append(f"{facts.get('waiting')}/{facts.get('parties')} arrived")
        elif kind == "event":
            details.append("set" if facts.get("set") else "not set")
        if "waiters" in facts:
            details.append(f"{facts['waiters']} waiting")
        name = facts.get("name") or (
            "the default thread limiter" if facts.get("thread_limiter") else None
        )
        text = f"{_named(call, name)} ({known_as}{', '.join(details)})"
        if kind == "lock":
            return text + _held_by(facts)
        return text + _semaphore_held_by(facts) if kind == "semaphore" else text
    if kind == "stream_read":
        return f"{call} from {peer}" if peer else call
    if kind == "pool":
        text = f"a connection from {facts.get('type') or call}" + (f" to {peer}" if peer else "")
        return f"{text} ({_pool_details(facts)})"
    if kind == "stream_drain":
        return f"{call} to {peer}" if peer else call
    if kind == "socket":
        fd = facts.get("fd")
        text = f"{call} on fd {fd}" if fd is not None and fd >= 0 else call
        return f"{text} ({peer})" if peer else text
    if kind == "executor":
        function, thread = facts.get("function"), facts.get("thread")
        if call == "to_thread":
            text = f"to_thread {function}" + (f" in {thread}" if thread else "")
        elif call in ("loop.getaddrinfo", "loop.getnameinfo"):
            address = facts.get("address")
            text = call + (f" {address}" if address else "") + (f" in {thread}" if thread else "")
        elif thread:
            text = f"{call} {function} in {thread}"
        elif facts.get("processes") is not None:  # a process pool's call
            processes, calls = facts.get("processes"), facts.get("calls")
            text = (
                f"{call} {function} in a process pool ({_plural(processes, 'process')}, "
                f"{_plural(calls, 'call')} not done)"
            )
        else:
            text = f"{call} {function}" if function else call
        return text + _thread_place(facts.get("thread_stack")) + _queued_words(facts)
    if kind == "subprocess":
        program = facts.get("program")
        program_words = f" {program}" if program is not None else ""
        return f"subprocess {facts.get('pid')}{program_words} {facts.get('verb', '?')}"
    if kind == "server":
        addresses = facts.get("addresses") or ()
        return call + (f" on {', '.join(addresses)}" if addresses else "")
    if kind == "taskgroup":  # asyncio's and anyio's TaskGroup, or a trio `nursery` (its call)
        return f"{awaiting.get('call') or 'TaskGroup'} ({_plural(facts.get('size', 0), 'task')})"
    if kind == "wait":
        count, mode = facts.get("count"), facts.get("return_when")
        detail = ", ".join(part for part in (f"{count} awaitables" if count else "", mode) if part)
        return f"asyncio.wait ({detail})" if detail else "asyncio.wait"
    if kind == "wait_for":
        what, inner = facts.get("awaitable"), awaiting.get("inner")
        if inner is None:
            return f"wait_for {what}" if what else "wait_for"
        inner_text = _sentence(inner, sleep_words)
        if not what or inner_text == what or inner_text.startswith(f"{what} "):
            return f"wait_for {inner_text}"  # the awaitable is what the inner words begin with
        return f"wait_for {what}: {inner_text}"
    if kind == "task":
        return f"task {facts.get('task')}"
    if kind == "tasks":
        return _plural(len(awaiting.get("tasks") or ()), "task")
    if kind == "gather":
        return f"gather ({facts.get('count')} awaitables, {facts.get('done')} done)"
    if kind == "shield":
        if "task" in facts:
            return f"shield task {facts['task']}"
        inner = awaiting.get("inner")  # a future, a gather: what it waits for
        return f"shield {_sentence(inner, sleep_words)}" if inner is not None else "shield"
    if kind == "future":
        if call == "Future":
            name = facts.get("name")
            text = f"Future {name}" if name else "Future"
            created = facts.get("created_at")
            return f"{text} created at {created}" if created else text
        where = f"{facts.get('module')}.{facts.get('type')}"
        object_id = facts.get("id")
        return f"<{where} at {object_id}>" if object_id else f"<{where}>"
    if kind == "unknown" and facts.get("read_only"):
        return f"? in {facts.get('function')}() (read-only look)"
    return call


#: How a task that holds a lock ended (`holder_state`).
_ENDED_WORDS: Final = {"done": "returned", "cancelled": "was cancelled", "failed": "failed"}


def _held_by(facts: Mapping[str, Any]) -> str:
    """`, held by transfer-b` after a locked Lock's sentence, when the agent knows who."""
    if not facts.get("locked"):
        return ""
    if facts.get("holders_unknown"):
        return ", taken before taskscope attached (holder unknown)"
    if facts.get("holders_gone"):
        return ", held by a task that has finished"
    state = facts.get("holder_state")
    names = facts.get("holder_names") or ()
    if state and names:
        return f", held by {names[0]}, which {_ENDED_WORDS.get(str(state), 'ended')}"
    names = facts.get("holder_names") or facts.get("holders") or ()
    return f", held by {', '.join(str(name) for name in names)}" if names else ""


#: The holders of a semaphore named in its sentence; the others are counted.
HOLDERS_NAMED = 3


def _semaphore_held_by(facts: Mapping[str, Any]) -> str:
    """`, held by lim-0, lim-1` after an exhausted Semaphore's sentence, when the agent found
    its holders; `and 2 more` for those not named or not found, `, maybe more` when
    how many there are is not known."""
    names = [str(name) for name in facts.get("holder_names") or facts.get("holders") or ()]
    if not names:
        return ""
    more = max(0, len(names) - HOLDERS_NAMED) + int(facts.get("holders_more") or 0)
    text = f", held by {', '.join(names[:HOLDERS_NAMED])}"
    if more > 0:
        return f"{text} and {more} more"
    return f"{text}, maybe more" if facts.get("holders_partial") else text


def retrieval_words(retrieved: bool | None) -> str:
    """What is known of a failed task's exception having been retrieved (awaited, or read
    through result() or exception())."""
    if retrieved is None:
        return ""
    if retrieved:
        return "its exception was retrieved"
    return "its exception was never retrieved: nobody awaited the task or read its result"


def fill_texts(body: Mapping[str, Any], rows_key: str, named: NamedWaits | None = None) -> None:
    """Give every `awaiting` of a schema-1 snapshot (`rows_key` "tasks") or delta ("changed")
    its `text`, in place: the words `taskscope dump` prints. A description shared by several
    records gets its words once; a task in one of the body's await cycles gets its own copy
    ending in `(await cycle)`. `named`: the waits of the snapshot the delta follows (and the
    deltas between), which it updates; without it, a body's objects are lettered among its
    own records."""
    in_cycle = {task_id for cycle in body.get("cycles") or () for task_id in cycle}
    if named is None:
        named = NamedWaits()
    elif rows_key == "tasks":
        named.clear()
    named.update(
        ((str(record.get("id")), record.get("awaiting")) for record in body[rows_key]),
        body.get("removed") or (),
    )
    letters = named.letters
    done: dict[int, str] = {}
    for record in body[rows_key]:
        awaiting = record.get("awaiting")
        if awaiting is None:
            continue
        letter = letter_of(awaiting, letters, str(record.get("id")))
        if record.get("id") in in_cycle:
            own_text = schema_text(awaiting, in_cycle=True, letter=letter)
            record["awaiting"] = {**awaiting, "text": own_text}
            continue
        text = done.get(id(awaiting))
        if text is None:
            text = done[id(awaiting)] = schema_text(awaiting, letter=letter)
        awaiting["text"] = text


class NamedWaits:
    """The named objects pending tasks wait on (`named_object`), kept from a snapshot through
    its deltas, and their letters (`object_letters`): a delta's records alone may hold only
    one of two objects of one name."""

    def __init__(self) -> None:
        #: task id -> the named object it waits on
        self.waits: dict[str, tuple[str, str, str, tuple[str, ...]]] = {}
        #: object id -> its letter
        self.letters: dict[str, str] = {}
        #: Cleared since the letters were made: the next update makes them again.
        self._cleared = False

    def clear(self) -> None:
        """Forgets every wait (a new snapshot follows: its records are all filed again)."""
        self.waits.clear()
        self._cleared = True

    def update(
        self, changed: Iterable[tuple[str, Mapping[str, Any] | None]], removed: Iterable[str]
    ) -> set[str]:
        """Files the tasks' new descriptions (task id, description) and forgets the removed
        tasks; returns the tasks whose letter changed (some of them not in `changed`)."""
        waits = self.waits
        count = len(waits)
        dropped = False
        for task_id in removed:
            dropped = waits.pop(task_id, None) is not None or dropped
        for task_id, awaiting in changed:
            dropped = waits.pop(task_id, None) is not None or dropped
            named = named_object(awaiting)
            if named is not None:
                process = process_of(task_id)
                if process:  # objects of one process: its own names, its own addresses
                    kind, name, object_id, holders = named
                    named = (kind, f"{process}{name}", f"{process}{object_id}", holders)
                waits[task_id] = named
        if not dropped and len(waits) == count and not self._cleared:
            return set()  # most updates touch no such wait
        self._cleared = False
        before, after = self.letters, object_letters(waits.values())
        if after == before:
            return set()
        self.letters = after
        return {
            task_id
            for task_id, named in waits.items()
            if before.get(named[2]) != after.get(named[2])
        }


def letter_of(
    awaiting: Mapping[str, Any], letters: Mapping[str, str], task_id: str = ""
) -> str | None:
    """The letter `object_letters` gave the object a description of task `task_id` waits on,
    if any (`NamedWaits` letters the objects of each process of a look at several apart)."""
    if not letters:
        return None
    facts = awaiting.get("object")
    if not isinstance(facts, Mapping):
        return None
    return letters.get(f"{process_of(task_id)}{facts.get('id')}")


def process_of(task_id: str) -> str:
    """`4242:` for task `4242:17` of a look at several processes, "" for a task of one."""
    process, colon, _number = task_id.rpartition(":")
    return process + colon


# --- a task in words ------------------------------------------------------------------------


def task_doing(
    task: TaskFacts, now: float | None = None, in_cycle: bool = False, letter: str | None = None
) -> str:
    """What a task does, in words: how it ended, `running`, `ready to run`, or what it waits
    on, with its countdowns (sleep, timeout) brought up to `now` from when the agent observed
    them (the agent does not resend a task because its countdown moved). `letter`: the
    object it waits on has one (`object_letters`)."""
    if task.state == "failed":
        return f"failed: {task.exception or '?'}"
    if task.state == "cancelled":
        return "cancelled"
    if task.state == "done":
        return f"done: {task.result}" if task.result is not None else "done"
    if task.running:
        return "running"
    awaiting = task.awaiting
    if awaiting is None:
        return "ready to run"
    seconds_left, deadline_in = awaiting.seconds_left, awaiting.deadline_in
    sleep_late = deadline_late = None
    if (seconds_left is not None or deadline_in is not None) and task.observed_at:
        elapsed = max(0.0, (now if now is not None else time.time()) - task.observed_at)
        if seconds_left is not None:
            if (awaiting.seconds_overdue or 0.0) >= OVERDUE_SHOWN:
                # Not resent while it stays put: late by more since the agent's look.
                sleep_late = (awaiting.seconds_overdue or 0.0) + elapsed
            else:
                seconds_left -= elapsed
        if deadline_in is not None:
            if (awaiting.deadline_overdue or 0.0) >= OVERDUE_SHOWN:
                deadline_late = (awaiting.deadline_overdue or 0.0) + elapsed
            else:
                deadline_in -= elapsed
    return awaiting_text(
        awaiting.raw,
        seconds_left=seconds_left,
        deadline_in=deadline_in,
        sleep_overdue=sleep_late,
        deadline_overdue=deadline_late,
        in_cycle=in_cycle,
        letter=letter,
    )


#: id(description) -> (the description, its label): the dashboard's filter asks for the
#: label of every task at each key, and tasks waiting alike share one description.
_LABELS: dict[int, tuple[Mapping[str, Any], str]] = {}
_MAX_LABELS: Final = 1 << 17


def awaiting_label(awaiting: AwaitingFacts, letter: str | None = None) -> str:
    """What a task waits on as last observed (no countdown brought forward): for searching
    and measuring, not for showing a live countdown. `letter`: its object's, if it has one
    (`object_letters`)."""
    raw = awaiting.raw
    if letter is not None:  # a few objects: not kept
        return awaiting_text(
            raw, seconds_left=awaiting.seconds_left, deadline_in=awaiting.deadline_in, letter=letter
        )
    known = _LABELS.get(id(raw))
    if known is not None and known[0] is raw:
        return known[1]
    label = awaiting_text(raw, seconds_left=awaiting.seconds_left, deadline_in=awaiting.deadline_in)
    if len(_LABELS) >= _MAX_LABELS:
        _LABELS.clear()
    _LABELS[id(raw)] = (raw, label)
    return label


def cycle_note(in_cycle: bool) -> str:
    """What follows a task's words in the dashboard when it is part of an await cycle."""
    return f"  {CYCLE_MARK}" if in_cycle else ""


def tasks_awaited(names: Iterable[str]) -> str:
    """The tasks a task awaits, by name (the tree names them as it draws them)."""
    return "task " + ", ".join(names)


# --- the grouped view -----------------------------------------------------------------------


def group_label(awaiting: Mapping[str, Any], letter: str | None = None) -> str:
    """What tasks waiting alike share: the sentence without what differs from task to task
    (countdowns, peers, file descriptors, the task awaited). `letter`: its object's, when
    another object goes by its name (`object_letters`): tasks waiting on Lock A and on Lock B
    at one line share no words about which lock."""
    kind = str(awaiting.get("kind", "?"))
    if kind == "sleep":
        return "sleep"
    if kind == "task":
        return "another task"
    if kind in ("stream_read", "stream_drain", "socket"):
        return str(awaiting.get("call") or kind)
    if kind == "pool":  # one line per kind of pool, whatever the host
        facts = awaiting.get("object") or {}
        return f"a connection from {facts.get('type') or awaiting.get('call') or kind}"
    if kind != "wait_for":
        return _sentence(awaiting, None, letter)
    # The inner sleep's seconds go (a wait_for's text minus its timeout kept them).
    if awaiting.get("seconds_left") is None:
        return _sentence(awaiting, None, letter)
    return _sentence(awaiting, f"{seconds_text(float(awaiting['seconds_left']))} left", letter)


def shared_words(texts: Sequence[str]) -> str:
    """What the texts say alike, in whole words, `…` where they differ."""
    first, last = min(texts), max(texts)
    if first == last:
        return first
    same = next(
        (i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), len(first)
    )
    common = first[:same]
    if first[same : same + 1].strip() or last[same : same + 1].strip():
        common = common[: max(0, common.rfind(" "))]  # the last word is cut: drop it
    shared = common.rstrip(" ,:")
    return f"{shared} …" if shared else "…"


class SiteFacts(Protocol):
    """Tasks of one coroutine at one await site, as the model finds them (`AwaitSite`)."""

    @property
    def coro(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def site(self) -> str: ...
    @property
    def ids(self) -> list[str]: ...
    @property
    def awaitings(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def request(self) -> tuple[str, str] | None: ...


@dataclass(frozen=True, slots=True)
class GroupRow:
    """Tasks of one coroutine waiting at one place: the grouped view's line."""

    coro: str
    #: What they await, in the words they share (`wait_for shield task …`).
    what: str
    #: `file:line` where their coroutine is suspended, "" when it is not.
    site: str
    ids: list[str]
    #: The route their web requests matched, (method, route template), if they serve one.
    request: tuple[str, str] | None = None

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def label(self) -> str:
        """What they run: `worker()`, `GET /items/{id} (RequestResponseCycle.run_asgi)`."""
        return coro_label(self.coro, self.request)


def group_order(row: GroupRow) -> tuple[int, str, tuple[str, str], str, str]:
    """Biggest groups first, then by coroutine, route, words and site."""
    return (-row.count, row.coro, row.request or ("", ""), row.what, row.site)


def group_rows(
    sites: Iterable[SiteFacts], letters: Mapping[str, str] | None = None
) -> list[GroupRow]:
    """The grouped view's lines (`3 x worker() awaiting wait_for shield task …`), biggest
    first, each named by what its tasks' descriptions share; `letters`: the objects' that
    another object's name shares (`object_letters`)."""
    rows = [
        GroupRow(
            site.coro,
            group_what(site.kind, site.awaitings, site.ids, letters),
            site.site,
            site.ids,
            site.request,
        )
        for site in sites
    ]
    rows.sort(key=group_order)
    return rows


def group_what(
    kind: str,
    awaitings: Sequence[Mapping[str, Any]],
    ids: Sequence[str] = (),
    letters: Mapping[str, str] | None = None,
) -> str:
    """The grouped view's words for tasks of one coroutine at one await site: what their
    descriptions share, or the group's kind (`running`, `done`...) when they await nothing.
    `ids`: the tasks whose descriptions `awaitings` are, in their order, for their objects'
    `letters` (without them, or without a task for each description, no letters)."""
    if letters and len(awaitings) == len(ids):
        labels = {
            group_label(awaiting, letter_of(awaiting, letters, task_id))
            for awaiting, task_id in zip(awaitings, ids, strict=True)
        }
    else:
        labels = {group_label(awaiting) for awaiting in awaitings}
    return shared_words(sorted(labels)) if labels else kind


# --- warnings (taskscope.lints) -------------------------------------------------------------

#: The marker beside a task that has a warning (`ps`, `tree`, the dashboard).
WARNING_MARK: Final = "!"
#: What each kind of warning is called, in the order `lints.KINDS` reports them.
WARNING_NAMES: Final = {
    "lock_deadlock": "lock deadlock",
    "abandoned_lock": "abandoned lock",
    "await_cycle": "await cycle",
    "never_woken": "never woken",
    "unreferenced": "unreferenced",
    "exception_never_retrieved": "exception never retrieved",
    "cancel_not_honoured": "cancel not honoured",
    "threads_exhausted": "threads exhausted",
    "connections_exhausted": "connections exhausted",
    "blocking_step": "blocking step",
    "sleep0_spin": "sleep(0) spin",
}


class FindingFacts(Protocol):
    """A warning as `taskscope.lints.Finding` holds it."""

    @property
    def kind(self) -> str: ...
    @property
    def tasks(self) -> tuple[str, ...]: ...
    @property
    def loop(self) -> str | None: ...
    @property
    def facts(self) -> Mapping[str, Any]: ...


class NamedTask(Protocol):
    @property
    def name(self) -> str: ...


class TasksByID(Protocol):
    """What a warning's words need of the model: task names by id (`model.TaskModel`)."""

    @property
    def tasks(self) -> Mapping[str, NamedTask]: ...


def _task_name(model: TasksByID, task_id: str | None, fallback: str | None = None) -> str:
    if task_id is None:
        return fallback or "?"
    task = model.tasks.get(task_id)
    if task is not None:
        return task.name
    return fallback or f"task {task_id}"


def _names(model: TasksByID, task_ids: Sequence[str]) -> str:
    names = [_task_name(model, task_id) for task_id in task_ids]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


#: What a wait that can never end waits for, by await kind.
_NEVER_WORDS: Final = {
    "event": "it will never be set",
    "queue_get": "no item will ever be put in it",
    "queue_put": "no item will ever be taken from it",
    "queue_join": "its items will never all be marked done",
    "lock": "it will never be released",
    "semaphore": "it will never be released",
    "condition": "it will never be notified",
    "future": "it will never get a result",
}


def finding_text(finding: FindingFacts, model: TasksByID) -> str:
    """A warning in one line, naming its tasks: `lock deadlock: transfer-a holds first and
    waits for second, held by transfer-b, which waits for first`."""
    kind, facts, tasks = finding.kind, finding.facts, finding.tasks
    title = WARNING_NAMES.get(kind, kind.replace("_", " "))
    first = _task_name(model, tasks[0]) if tasks else "?"
    if kind == "lock_deadlock":
        body = _deadlock_words(model, facts.get("steps") or [])
    elif kind == "abandoned_lock":
        body = _abandoned_words(model, finding)
    elif kind == "await_cycle":
        body = f"{_names(model, tasks)} await each other: none of them can finish"
        if len(tasks) == 1:
            body = f"{first} awaits itself: it can never finish"
    elif kind == "never_woken":
        what = _with_letter(facts.get("what") or _a_thing(str(facts.get("type") or "?")), facts)
        never = _NEVER_WORDS.get(str(facts.get("kind")), "it will never be done")
        body = (
            f"{first} waits on {what}, which no other task, callback, timer or file can "
            f"reach: {never}"
        )
    elif kind == "unreferenced":
        body = (
            f"{first} is pending and nothing references it: the garbage collector may "
            "destroy it mid-run (keep a reference to the task)"
        )
    elif kind == "exception_never_retrieved":
        body = f"{first} failed with {facts.get('exception') or '?'} and nobody awaited it"
    elif kind == "cancel_not_honoured":
        ago = seconds_text(float(facts.get("requested_ago") or 0.0))
        if facts.get("delivered"):
            body = (
                f"{first} was cancelled {ago} ago or more and goes on: it caught the "
                "CancelledError (re-raise it, or call uncancel() if that is meant)"
            )
        else:
            body = f"{first} was asked to cancel {ago} ago and its loop has not delivered it"
    elif kind == "threads_exhausted":
        body = _exhausted_words(model, finding)
    elif kind == "connections_exhausted":
        body = _connections_words(model, finding)
    elif kind == "blocking_step":
        body = _blocking_words(model, finding)
    elif kind == "sleep0_spin":
        body = (
            f"{first} ran {facts.get('steps')} steps ({facts.get('per_second')} a second) "
            "without waiting on anything: it reschedules itself (a sleep(0) loop?)"
        )
    else:
        body = _names(model, tasks)
    return f"{title}: {body}"


#: The tasks named in a warning about many; the others are counted.
WAITING_NAMED = 3


def _exhausted_words(model: TasksByID, finding: FindingFacts) -> str:
    """`req-40, req-41 and 3 more wait ≥2.1 s for a worker thread: all 40 tokens of the
    default thread limiter are taken, by req-0, req-1, req-2 and 37 more; calls that do not
    return hold them (give blocking calls a timeout, or the pool more threads)`."""
    tasks, facts = finding.tasks, finding.facts
    waiting = _waiting_names(model, tasks)
    verb = "waits" if len(tasks) == 1 else "wait"
    waited = _waited_words(facts)
    if facts.get("pool") == "pool":
        threads = facts.get("threads")
        held = f"all {_plural(threads, 'thread')} of the default thread pool are busy"
        callers = [str(name) for name in facts.get("holder_names") or ()]
        if callers:
            unnamed = len(callers) - min(len(callers), HOLDERS_NAMED)
            held += f", with the calls of {', '.join(callers[:HOLDERS_NAMED])}" + (
                f" and {unnamed} more" if unnamed else ""
            )
    else:
        holders = [str(name) for name in facts.get("holder_names") or ()]
        more = int(facts.get("holders_more") or 0)
        total = len(holders) + more
        held = "no token of the default thread limiter is left"
        if holders:
            shown = ", ".join(holders[:HOLDERS_NAMED])
            unnamed = total - min(len(holders), HOLDERS_NAMED)
            held = f"all {total} tokens of the default thread limiter are taken, by {shown}" + (
                f" and {unnamed} more" if unnamed else ""
            )
    places = collections.Counter(
        place
        for stack in facts.get("thread_stacks") or ()
        if (place := _program_place(stack)) is not None
    )
    where = ""
    if places:
        commonest = places.most_common(2)
        others = sum(places.values()) - sum(count for _place, count in commonest)
        where = "; the threads' calls are at " + " and ".join(
            f"{place} ({count})" for place, count in commonest
        )
        where += f" and {others} elsewhere" if others else ""
    return (
        f"{waiting} {verb} {waited}for a worker thread: {held}{where}:"
        " a call that does not return holds its thread (give blocking calls a timeout, or the"
        " pool more threads)"
    )


def _waiting_names(model: TasksByID, tasks: Sequence[str]) -> str:
    """`req-40, req-41, req-42 and 3 more`: the first tasks of a warning about many."""
    named = [_task_name(model, task_id) for task_id in tasks[:WAITING_NAMED]]
    others = len(tasks) - len(named)
    return ", ".join(named) + f" and {others} more" if others else _names(model, tasks)


def _waited_words(facts: Mapping[str, Any]) -> str:
    """`≥2.1s ` for a warning's longest wait (`waited`, `lower_bound`); "" when not known."""
    seconds = facts.get("waited")  # None: since when is not known
    if seconds is None:
        return ""
    bound = "≥" if facts.get("lower_bound") else ""
    return bound + seconds_text(float(seconds)).replace(" ", "") + " "


def _connections_words(model: TasksByID, finding: FindingFacts) -> str:
    """`fetch-2, fetch-3 and 5 more wait ≥12s for a connection from TCPConnector to
    api.example.com:443: all 100 in use; each is held until the request or session using it
    ends (give them a timeout, or the pool a higher limit)`."""
    tasks, facts = finding.tasks, finding.facts
    verb = "waits" if len(tasks) == 1 else "wait"
    peer = facts.get("peer")
    pool = f"{facts.get('pool_type') or 'its pool'}" + (f" to {peer}" if peer else "")
    per_host, host_in_use = facts.get("limit_per_host"), facts.get("host_in_use")
    if per_host and isinstance(host_in_use, int) and host_in_use >= per_host:
        held = f"all {per_host} to this host in use"
    else:
        held = f"all {facts.get('limit')} in use"
    return (
        f"{_waiting_names(model, tasks)} {verb} {_waited_words(facts)}for a connection from "
        f"{pool}: {held}; each is held until the request or session using it ends (give "
        "them a timeout, or the pool a higher limit)"
    )


def _abandoned_words(model: TasksByID, finding: FindingFacts) -> str:
    """`worker-2 and worker-3 wait for db, held by loader, which failed without releasing it
    (take it with `async with`, or release it in a `finally`)`."""
    tasks, facts = finding.tasks, finding.facts
    waiting = _names(model, tasks)
    verb = "waits" if len(tasks) == 1 else "wait"
    holder = facts.get("holder")
    if holder is not None:
        whom = f"{holder}, which {_ENDED_WORDS.get(str(facts.get('holder_state')), 'ended')}"
    else:
        whom = "a task that has ended"
    lock = _with_letter(facts.get("lock") or "a lock", facts)
    return (
        f"{waiting} {verb} for {lock}, held by {whom} without "
        "releasing it: nothing will (take it with `async with`, or release it in a `finally`)"
    )


def _a_thing(type_name: str) -> str:
    """`a Future`, `an Event`: a thing named by its type."""
    return f"{'an' if type_name[:1].lower() in 'aeiou' else 'a'} {type_name}"


def _deadlock_words(model: TasksByID, steps: Sequence[Mapping[str, Any]]) -> str:
    if not steps:
        return "?"
    locks = [str(step.get("lock")) for step in steps if step.get("waits") == "lock"]
    if len(steps) == 1:
        lock = locks[0] if locks else "?"
        return (
            f"{_task_name(model, steps[0].get('task'))} holds {lock} and waits for it again "
            "(asyncio's locks are not reentrant)"
        )
    text = _task_name(model, steps[0].get("task"))
    last = steps[-1]
    if last.get("waits") == "lock":
        text += f" holds {last.get('lock')} and"
    for index, step in enumerate(steps):
        holder = _task_name(model, step.get("holder"))
        is_last = index == len(steps) - 1
        lead = " " if index == 0 else ", which "
        if step.get("waits") == "lock":
            text += f"{lead}waits for {step.get('lock')}"
            if not is_last:
                text += f", held by {holder}"
        else:
            text += f"{lead}awaits {holder}"
    return text


def named_by_asyncio(name: str) -> bool:
    """Whether a task's name is the one asyncio gave it (`Task-12`), which says nothing of
    what the task does."""
    return re.fullmatch(r"Task-\d+", name) is not None


def stalled_by(
    task_name: str | None,
    task_id: str | None,
    callback: str | None,
    outermost: str | None,
    request: tuple[str, str] | None = None,
) -> str:
    """Who ran a stalled step: the task by name (else by id), with what it ran when asyncio
    named it (the web request it served, `GET /block`, else `outermost`: the outermost
    function sampled, `run_asgi()`), or the callback."""
    if task_name:
        if request is not None and named_by_asyncio(task_name):
            return f"{task_name} {request[0]} {request[1]}"
        if outermost and named_by_asyncio(task_name):
            return f"{task_name} {outermost.rpartition('.')[2]}()"
        return task_name
    if task_id:
        return f"task {task_id}"
    return callback or "?"


#: The requests named in a warning about the steps of request tasks; the others are counted.
REQUESTS_NAMED = 3


def _requests_words(requests: Sequence[Any]) -> str:
    """` serving GET /block and POST /upload`: the web requests of stalled steps' tasks."""
    texts = [
        f"{request[0]} {request[1]}"
        for request in requests
        if isinstance(request, Sequence) and len(request) == 2
    ]
    if not texts:
        return ""
    shown = texts[:REQUESTS_NAMED]
    more = len(texts) - len(shown)
    if more:
        return f" serving {', '.join(shown)} and {more} more"
    if len(shown) == 1:
        return f" serving {shown[0]}"
    return f" serving {', '.join(shown[:-1])} and {shown[-1]}"


def _blocking_words(model: TasksByID, finding: FindingFacts) -> str:
    facts = finding.facts
    coro = facts.get("coro")
    if len(finding.tasks) > 1:
        who = f"steps of {len(finding.tasks)} tasks" + (f" running {coro}()" if coro else "")
    elif finding.tasks:
        name = _task_name(model, finding.tasks[0], facts.get("task_name"))
        who = f"a step of {name}" + (f" ({coro}())" if coro and named_by_asyncio(name) else "")
    else:
        who = f"callback {facts['callback']}" if facts.get("callback") else "a callback"
    who += _requests_words(facts.get("requests") or ())
    duration = format_duration(float(facts.get("duration") or 0.0))
    where = ""
    if facts.get("function"):
        where = f" in {facts['function']}() at {facts.get('location')}"
    count = int(facts.get("count") or 1)
    clock = ""
    if facts.get("started_at"):
        clock = time.strftime("%H:%M:%S", time.localtime(float(facts["started_at"])))
    if facts.get("ongoing"):
        when = f" (still running, since {clock})" if count == 1 else f" ({count} times, one now)"
    elif count == 1:
        when = f" (at {clock})" if clock else ""
    else:
        when = f" ({count} times, the last at {clock})" if clock else f" ({count} times)"
    longest = "held" if count == 1 else "held, at the longest,"
    return f"{who} {longest} the loop for {duration}{where}{when}"


# --- the dashboard's warnings line ----------------------------------------------------------


def warnings_summary(findings: Sequence[FindingFacts], model: TasksByID) -> str:
    """The dashboard header's line: `⚠ 2 warnings: lock deadlock (transfer-a, transfer-b) ·
    exception never retrieved (parse-33)`; "" when there are none."""
    if not findings:
        return ""
    count = len(findings)
    parts = []
    for finding in findings:
        title = WARNING_NAMES.get(finding.kind, finding.kind.replace("_", " "))
        coro = finding.facts.get("coro") if finding.kind == "blocking_step" else None
        if coro and len(finding.tasks) > 1:  # ended tasks that ran the same code
            parts.append(f"{title} ({len(finding.tasks)} tasks running {coro}())")
            continue
        fallback = finding.facts.get("task_name") if len(finding.tasks) == 1 else None
        names = [_task_name(model, task_id, fallback) for task_id in finding.tasks[:3]]
        more = f" +{len(finding.tasks) - 3}" if len(finding.tasks) > 3 else ""
        parts.append(f"{title} ({', '.join(names)}{more})" if names else title)
    return f"⚠ {count} warning{'' if count == 1 else 's'}: " + " · ".join(parts)


def untimed_sort_words(sort: str) -> str:
    """Why `ps --sort busy|steps` keeps the tasks in id order: the agent did not time steps."""
    return (
        f"the {sort} figures need the steps timed, which is off by default: add --time-steps "
        "to turn it on in the running process (or start it with `taskscope run --time-steps`, "
        "TASKSCOPE_TIME_STEPS=1 or install(time_steps=True)); tasks listed by id"
    )


def time_steps_words(pid: object, timed: bool, wait: float = 0.0) -> str:
    """What turning the step timing of process `pid` on or off did (`--time-steps`,
    `taskscope time-steps`)."""
    if not timed:
        return f"step timing is off in process {pid}: asyncio runs its steps untimed"
    waiting = f"; waiting {wait:g} s for the first figures" if wait > 0 else ""
    return (
        f"step timing is on in process {pid} (0.5-1 µs a step; figures count from now; "
        f"`taskscope time-steps --off {pid}` turns it off){waiting}"
    )
