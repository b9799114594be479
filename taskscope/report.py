"""Plain-text views of a TaskModel: the `ps` table and the `tree` of the command line, and one
task as text (what the dashboard copies).

Task names, reprs and paths come from the monitored program: they are untrusted text, so
control characters are escaped before anything reaches the terminal. Columns are measured in
terminal cells, not characters: a CJK name takes two cells a character.
"""

from __future__ import annotations

import os
import time
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from taskscope.model import LoopInfo, TaskInfo, TaskModel, TreeRow
from taskscope.relations import (
    CREATED,
    CREATED_STROKE,
    GUIDE,
    LEGEND,
    NO_GUIDE,
    branch,
    relation,
)
from taskscope.words import (
    CYCLE_MARK,
    WAIT_BOUND_NOTE,
    WARNING_MARK,
    FindingFacts,
    age_words,
    cancel_note,
    coro_label,
    count_text,
    finding_text,
    format_duration,
    step_time_text,
    task_doing,
    tasks_awaited,
    wait_words,
)

STATE_MARKERS = {"pending": "●", "done": "✓", "cancelled": "⊘", "failed": "✗"}


def safe_text(text: str, limit: int | None = None) -> str:
    """Printable text: control characters (ESC, CR, BEL...) shown as escapes, not obeyed;
    with `limit`, cut to that many terminal cells, the cut marked `…`."""
    if text.isprintable():
        cleaned = text
    else:
        cleaned = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    if limit is not None and len(cleaned) > limit // 2 and cell_len(cleaned) > limit:
        return _cut_to_cells(cleaned, max(0, limit - 1)) + "…"
    return cleaned


def cell_len(text: str) -> int:
    """How many terminal cells `text` takes: two for a wide character (CJK, most emoji), none
    for a combining one (an accent drawn on the letter before it)."""
    if text.isascii():
        return len(text)
    return sum(map(_char_cells, text))


def _char_cells(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


def _cut_to_cells(text: str, width: int) -> str:
    """The longest start of `text` that fits in `width` cells, padded to them with a space
    where a wide character would have straddled the edge."""
    used = 0
    for index, char in enumerate(text):
        cells = _char_cells(char)
        if used + cells > width:
            return text[:index] + " " * (width - used)
        used += cells
    return text


def pad_cells(text: str, width: int) -> str:
    """`text` followed by spaces up to `width` terminal cells (str.ljust counts characters,
    and a CJK character takes two cells)."""
    return text + " " * (width - cell_len(text))


#: A frame repeated in a row more than this many times (a recursion) is shown this many times
#: and then once as a count, as Python's tracebacks do.
REPEATED_FRAMES_SHOWN = 3


def stack_items(
    frames: Sequence[Mapping[str, Any]], left_out_at: int | None = None, left_out: int = 0
) -> list[Mapping[str, Any] | str]:
    """A stack (outermost first) as shown: its frames, each run of frames alike (same
    function, file and line) longer than `REPEATED_FRAMES_SHOWN` cut to that many and a line
    counting the rest, and a line where the agent left out the middle of a chain too deep to
    send whole (`left_out` coroutines before `frames[left_out_at]`)."""
    shown: list[Mapping[str, Any] | str] = []
    run = hidden = 0
    last: tuple[Any, Any, Any] | None = None

    def end_run() -> None:
        if hidden:
            times = "time" if hidden == 1 else "times"
            shown.append(f"[the frame above repeated {hidden} more {times}]")

    for index, frame in enumerate(frames):
        if index == left_out_at and left_out > 0:
            end_run()
            run = hidden = 0
            last = None
            shown.append(
                f"[{left_out} coroutine{'s' if left_out != 1 else ''} left out here: the chain "
                f"is deeper than the agent sends, its outermost and innermost frames are shown]"
            )
        key = (frame["function"], frame["file"], frame["line"])
        if key != last:
            end_run()
            run = hidden = 0
            last = key
        run += 1
        if run <= REPEATED_FRAMES_SHOWN:
            shown.append(frame)
        else:
            hidden += 1
    end_run()
    return shown


def _fit(text: str, width: int) -> str:
    return pad_cells(safe_text(text, width), width)


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def _is_interpreter(name: str) -> bool:
    """An interpreter's file name (python, python3, python3.14, python3.14t), not a script's."""
    version = name.removeprefix("python")
    return version != name and all(c.isdigit() or c == "." for c in version.removesuffix("t"))


def program_words(argv: list[str]) -> list[str]:
    """How the program was started, shortly: its script's file name and arguments; for
    `python -m package` (whose argv[0] is the package's `__main__.py`), `-m package`. A
    command line read from the kernel (a read-only look, several processes) starts with the
    interpreter, and under `taskscope run` with its launcher: both are left out, as the
    program's own `sys.argv` leaves them out."""
    words = list(argv)
    if len(words) > 1 and _is_interpreter(os.path.basename(words[0])):
        words = words[1:]
        # The interpreter's own options (-u, -X dev, -W error...): not the program's.
        while words and words[0].startswith("-") and words[0] not in ("-m", "-c", "-"):
            words = words[2:] if words[0] in ("-X", "-W") else words[1:]
        if words[:2] == ["-m", "taskscope.agent.launch"]:
            words = words[2:]
            # Its options (`taskscope run --history 50 ...`): flags, some taking a number.
            while words and words[0].startswith("--"):
                words = words[2:] if len(words) > 1 and _is_number(words[1]) else words[1:]
        elif words[0] == "-m" and len(words) > 1:
            return words
    if not words:
        return []
    script = words[0]
    name = os.path.basename(script)
    if name == "__main__.py" and os.path.dirname(script):
        return ["-m", os.path.basename(os.path.dirname(script)), *words[1:]]
    return [name, *words[1:]]


def header(model: TaskModel, argv: list[str] | None = None) -> str:
    program = " ".join(program_words(argv or [])) or "?"
    parts = [f"pid {model.pid}", f"python {model.python}", safe_text(program, 60)]
    names = loop_names(model)  # two loops of one thread are told apart by their ids
    for loop in model.loops.values():
        state = "running" if loop.running else ("closed" if loop.closed else "stopped")
        if loop.blocked_for is not None:
            state = f"BLOCKED for {format_duration(loop.blocked_for)}"
        elif loop.lag is not None and loop.running:
            state += f", lag {loop.lag * 1000:.1f} ms"
        parts.append(f"loop {names[loop.id]} {state}")
    return " · ".join(parts)


#: What each entry of a snapshot's `read_only` list means, for the line that says so.
_NOT_KNOWN_WORDS = {
    "leaf_awaiting": "what a leaf task awaits",
    "creators": "creators",
    "history": "finished tasks",
    "loop_state": "loop lag",
    "cancel": "cancel",
}


def read_only_lines(snapshot: Mapping[str, Any]) -> list[str]:
    """The lines that say a look was read from memory, and what it therefore cannot show."""
    missing = snapshot.get("read_only")
    if missing is None:
        return []
    return [read_only_words(missing)]


def read_only_words(missing: Iterable[Any]) -> str:
    """`read-only look (from memory, no agent); not shown: ...`, for a snapshot's
    `read_only` list."""
    words = ", ".join(_NOT_KNOWN_WORDS.get(str(item), str(item)) for item in missing)
    return f"read-only look (from memory, no agent); not shown: {words}"


#: A wait for the GIL older than this is not said again (unless the interval is still low).
GIL_WAIT_SAID_FOR = 300.0


def _interval(seconds: float) -> str:
    """A switch interval: `5 ms`, `50 µs`."""
    if seconds >= 0.001:
        return f"{seconds * 1000:g} ms"
    return f"{seconds * 1_000_000:.0f} µs"


def gil_wait_lines(model: TaskModel, now: float | None = None) -> list[str]:
    """The line that says the program kept the agent from the GIL (recently), and that the
    agent holds the switch interval lowered meanwhile."""
    words = gil_wait_words(model, now)
    return [] if words is None else [words]


def gil_wait_words(model: TaskModel, now: float | None = None, short: bool = False) -> str | None:
    """`gil_wait_lines`' line, or with `short` the dashboard's few words (`agent kept from
    the GIL up to 0.8s · switch interval 50 µs`); None when there is nothing to say."""
    wait = model.gil_wait
    if wait is None:
        return None
    now = time.time() if now is None else now
    recent = wait.longest is not None and wait.at is not None and now - wait.at < GIL_WAIT_SAID_FOR
    if not recent and wait.lowered_to is None:
        return None
    parts = []
    if recent and wait.longest is not None and wait.at is not None:
        if short:
            parts.append(f"agent kept from the GIL up to {format_duration(wait.longest)}")
        else:
            parts.append(
                f"the agent was kept from the GIL for up to {format_duration(wait.longest)} at "
                f"{clock(wait.at)} (by a call that holds it, or loop steps shorter than the "
                "switch interval)"
            )
    if wait.lowered_to is not None:
        if short:
            parts.append(f"switch interval {_interval(wait.lowered_to)}")
        else:
            before = f" (from {_interval(wait.lowered_from)})" if wait.lowered_from else ""
            parts.append(
                f"{'it' if parts else 'the agent'} holds the switch interval at "
                f"{_interval(wait.lowered_to)}{before} while it needs to"
            )
    return (" · " if short else "; ").join(parts)


def blocked_lines(model: TaskModel) -> list[str]:
    lines = []
    names = loop_names(model)
    for loop in model.loops.values():
        if loop.blocked_for is None:
            continue
        if loop.blocked_ended:
            lines.append(
                f"loop {names[loop.id]} did not run its callbacks for "
                f"{format_duration(loop.blocked_for)}, until just before this answer: a call "
                "that held the GIL kept the agent from answering sooner"
            )
            continue
        lines.append(
            f"loop {names[loop.id]} has not run its callbacks for "
            f"{format_duration(loop.blocked_for)}; it is busy in:"
        )
        lines.extend(
            f"    {safe_text(frame.function)}  {safe_text(frame.location)}"
            for frame in loop.blocking_stack[-6:]
        )
    return lines


def clock(timestamp: float) -> str:
    """A Unix time as the local wall clock, `14:02:11`."""
    return time.strftime("%H:%M:%S", time.localtime(timestamp))


def age_text(task: TaskInfo, now: float) -> str:
    """`3.0s`; `≥3.0s` when counted from the agent's first sight of the task; `?`."""
    return age_words(*task.known_age(now))


def loop_names(model: TaskModel) -> dict[str, str]:
    """How each loop is named in tables and trees: its thread's name, made unique."""
    names: dict[str, str] = {}
    for loop in model.loops.values():
        label = safe_text(loop.label, 24)
        names[loop.id] = label if label not in names.values() else f"{label} ({loop.id})"
    return names


#: How `ps --sort` orders the tasks: the busiest, the most stepped, the oldest and the
#: longest waiting where they are first; or by name.
PS_SORTS = ("busy", "steps", "age", "waited", "name")


def _ps_order(sort: str | None, now: float) -> Callable[[TaskInfo], tuple[Any, ...]]:
    if sort == "busy":
        return lambda task: (task.finished, -(task.busy_s or 0.0), task.number)
    if sort == "steps":
        return lambda task: (task.finished, -(task.steps or 0), task.number)
    if sort == "age":
        return lambda task: (task.finished, -(task.known_age(now)[0] or 0.0), task.number)
    if sort == "waited":

        def longest_wait_first(task: TaskInfo) -> tuple[Any, ...]:
            wait = task.known_wait(now)[0]  # a task with no wait known after those with one
            return (task.finished, -(wait if wait is not None else -1.0), task.number)

        return longest_wait_first
    if sort == "name":
        return lambda task: (task.finished, task.name, task.number)
    return lambda task: (task.finished, task.number)


def ps_table(
    model: TaskModel,
    include_finished: bool = False,
    now: float | None = None,
    warned: Collection[str] = (),
    only: Collection[str] | None = None,
    sort: str | None = None,
) -> str:
    """The table of tasks; those in `warned` (ids) marked `!` in a first column, which is
    there only when some task has a warning; with `only`, just those tasks (finished or
    not); in the order `sort` says (`PS_SORTS`; default: by id)."""
    now = now or time.time()
    several_loops = len(model.loops) > 1
    loops = loop_names(model)
    heads = ["ID", "STATE", "NAME", "CORO", "AGE"]
    if several_loops:
        heads.insert(1, "LOOP")
    marked = bool(warned)
    if marked:
        heads.insert(0, "")
    tasks = [
        task
        for task in sorted(model.tasks.values(), key=_ps_order(sort, now))
        if (task.id in only if only is not None else include_finished or not task.finished)
    ]
    # Columns and footnotes go by the tasks shown: a finished task left out adds none.
    # The runtime figures, when the agent timed the steps (`time_steps`).
    timed = any(task.steps is not None for task in tasks)
    if timed:
        heads += ["STEPS", "BUSY"]
    # How long each waited where it is, when some wait is known (see `wait_words`).
    waits = {task.id: wait_words(*task.known_wait(now)) for task in tasks}
    waited = any(waits.values())
    if waited:
        heads.append("WAITED")
    rows = [heads]
    in_cycle = model.cycle_members()
    for task in tasks:
        state = task.state + (" (running)" if task.running else "")
        note = cancel_note(task, now)
        if note:
            state += f", {note}"
        cells = [
            task.id,
            state,
            safe_text(task.name, 30),
            safe_text(coro_label(task.coro, task.request), 40),
            age_text(task, now),
        ]
        if several_loops:
            cells.insert(1, loops.get(task.loop, safe_text(task.loop)))
        if marked:
            cells.insert(0, WARNING_MARK if task.id in warned else "")
        if timed:
            cells += [count_text(task.steps), step_time_text(task.busy_s)]
        if waited:
            cells.append(waits[task.id])
        cells.append(
            safe_text(task_doing(task, now, task.id in in_cycle, model.letter_of(task)), 80)
        )
        rows.append(cells)
    heads.append("AWAITING")
    columns = len(rows[0]) - 1
    widths = [max(cell_len(row[i]) for row in rows) for i in range(columns)]
    lines = [
        "  ".join(pad_cells(cell, widths[i]) for i, cell in enumerate(row[:columns]))
        + "  "
        + row[-1]
        for row in rows
    ]
    footnotes = []
    seen_only = [
        task for task in tasks if task.first_seen_at is not None and task.created_at is None
    ]
    if seen_only and all(_loop_type(model, task.loop) == "trio" for task in seen_only):
        footnotes.append(_trio_first_seen_note(model, seen_only))
    elif seen_only:
        footnotes.append(_first_seen_note(model))
    if any(_bound_wait_shown(task, now) for task in tasks if waits[task.id]):
        footnotes.append(WAIT_BOUND_NOTE)
    return "\n".join([*(line.rstrip() for line in lines), *footnotes])


def _trio_first_seen_note(model: TaskModel, tasks: Sequence[TaskInfo]) -> str:
    """What a ≥ age means for trio tasks: spawned before the agent watched their run, or
    tasks whose spawns it does not watch."""
    since = _spawns_seen_since(model, tasks)
    if since is None:
        return "≥: an age counted from the agent's first look (trio creations are not tracked)"
    return (
        "≥: an age counted from the agent's first look (a trio task spawned before the agent "
        f"watched its run, at {clock(since)})"
    )


def _spawns_seen_since(model: TaskModel, tasks: Sequence[TaskInfo]) -> float | None:
    """The latest time from which the agent saw spawns on the runs of these tasks, or None
    when it does not see them on one of those runs."""
    times = [
        loop.spawns_seen_since if loop is not None else None
        for loop in (model.loops.get(task.loop) for task in tasks)
    ]
    if not times or any(time_ is None for time_ in times):
        return None
    return max(time_ for time_ in times if time_ is not None)


def _first_seen_note(model: TaskModel) -> str:
    if model.history_since is None:  # the agent was there from the start: creators untracked
        return "≥: an age counted from the agent's first look (creations are not tracked)"
    return (
        f"≥: an age counted from the agent's first look at {clock(model.history_since)} "
        "(the task is older than the agent)"
    )


def tree_text(
    model: TaskModel,
    argv: list[str] | None = None,
    include_finished: bool = False,
    now: float | None = None,
    width: int = 120,
    notes: Sequence[str] = (),
    warned: Collection[str] = (),
) -> str:
    """The task tree: each task under the task awaiting it (a solid branch), else under the
    task that created it (a dashed one), grouped by loop when there are several;
    `notes` (lines about the look itself) come after the header; the tasks in `warned` (ids)
    are marked `!` before what they do."""
    now = now or time.time()
    lines = [header(model, argv), *notes]
    lines.extend(blocked_lines(model))
    lines.extend(gil_wait_lines(model, now))
    rows = list(model.tree(include_finished=include_finished))
    prefixes = [_prefix(model, row) for row in rows]
    name_width = min(
        36,
        max(
            [
                cell_len(prefix) + cell_len(safe_text(row.task.name))
                for prefix, row in zip(prefixes, rows, strict=True)
            ]
            + [4]
        ),
    )
    coro_width = min(
        32,
        max(
            [cell_len(safe_text(coro_label(row.task.coro, row.task.request))) for row in rows] + [4]
        ),
    )
    # Each root and everything under it, under the loop the root runs on.
    by_loop: dict[str, list[str]] = {}
    current: list[str] = []
    for prefix, row in zip(prefixes, rows, strict=True):
        if row.depth == 0:
            current = by_loop.setdefault(row.task.loop, [])
        current.append(_tree_line(model, row, prefix, name_width, coro_width, width, now, warned))
    if len(model.loops) > 1:
        names = loop_names(model)
        for loop in model.loops.values():
            lines.append(_loop_title(loop, names[loop.id], model))
            lines.extend(by_loop.pop(loop.id, []) or ["(no task)"])
        for loop_id, loop_lines in by_loop.items():  # a loop gone since, with finished tasks
            lines.append(f"── loop {safe_text(loop_id)} (closed) ──")
            lines.extend(loop_lines)
    else:
        for loop_lines in by_loop.values():
            lines.extend(loop_lines)
    if any(CREATED_STROKE in prefix for prefix in prefixes):
        lines.append(f"legend: {LEGEND}")
    unseen = [
        row.task
        for row in rows
        if row.task.parent is None
        and row.task.first_seen_at is not None
        and _loop_type(model, row.task.loop) != "trio"
    ]
    trio_unseen = [
        row.task
        for row in rows
        if row.task.first_seen_at is not None and _loop_type(model, row.task.loop) == "trio"
    ]
    if trio_unseen:
        pending = any(
            loop is not None and loop.spawns_watch_pending
            for loop in (model.loops.get(task.loop) for task in trio_unseen)
        )
        since = _spawns_seen_since(model, trio_unseen)
        lines.append(_trio_unseen_note(len(trio_unseen), since, pending))
    if unseen and model.history_since is not None:
        lines.append(
            f"{len(unseen)} task{'s' if len(unseen) != 1 else ''} made before the agent came"
            f" at {clock(model.history_since)}: who created "
            f"{'them' if len(unseen) != 1 else 'it'} is unknown (a task nobody awaits is shown "
            "as a root); their ages, marked ≥, count from the agent's first look"
        )
    elif unseen:
        lines.append(
            "creations are not tracked (track_tasks off): no task shows its creator, and "
            "ages, marked ≥, count from the agent's first look"
        )
    if any(_bound_wait_shown(row.task, now) for row in rows if not row.repeated):
        lines.append(WAIT_BOUND_NOTE)
    if model.history_limit:  # none kept (a read-only look, history=0): nothing to sum up
        lines.append(finished_summary(model, now))
    return "\n".join(lines)


def _trio_unseen_note(count: int, since: float | None, pending: bool = False) -> str:
    """The tree's note on trio tasks whose creators are unknown: spawned before the agent
    watched their run (at `since`), or on a run whose spawns it does not watch (None): not
    yet (`pending`: just after an attach, the run takes the agent's instrument at its next
    turn), or not at all (tracking off)."""
    if since is None and pending:
        return (
            f"{count} trio task{'s' if count != 1 else ''} spawned before the agent came: who "
            f"created {'them' if count != 1 else 'it'} and when is unknown (the agent watches "
            "the run's spawns from its next turn); ages, marked ≥, count from the agent's "
            "first look"
        )
    if since is None:
        return (
            "trio creations are not tracked (track_tasks off): no trio task shows its "
            "creator, and ages, marked ≥, count from the agent's first look"
        )
    if count == 1:
        return (
            f"1 trio task spawned before the agent watched its run at {clock(since)}: who "
            "created it and when is unknown; its age, marked ≥, counts from the agent's "
            "first look"
        )
    return (
        f"{count} trio tasks spawned before the agent watched their run at {clock(since)} "
        "(trio's own among them): who created them and when is unknown; their ages, marked "
        "≥, count from the agent's first look"
    )


def _loop_type(model: TaskModel, loop_id: str) -> str | None:
    loop = model.loops.get(loop_id)
    return loop.type if loop is not None else None


def _loop_title(loop: LoopInfo, name: str, model: TaskModel) -> str:
    pending = sum(1 for task in model.tasks.values() if task.loop == loop.id and not task.finished)
    # `name` has the id already when another loop has the same label (`loop_names`).
    labelled = name if name.endswith(f"({loop.id})") else f"{name} ({loop.id})"
    return f"── loop {labelled} · {pending} pending ──"


def _tree_line(
    model: TaskModel,
    row: TreeRow,
    prefix: str,
    name_width: int,
    coro_width: int,
    width: int,
    now: float,
    warned: Collection[str] = (),
) -> str:
    task = row.task
    label = prefix + safe_text(task.name)
    what = task_doing(task, now, row.in_cycle, model.letter_of(task))
    if task.awaiting is not None and task.awaiting.kind == "task" and task.awaiting.tasks:
        what = tasks_awaited(
            safe_text(model.tasks[t].name) if t in model.tasks else t for t in task.awaiting.tasks
        )
    if not task.finished and task.awaiting is not None:
        what = "awaiting " + what + wait_note(task, now)
    note = cancel_note(task, now)
    if note:
        what += f" · {note}"
    if row.in_cycle and CYCLE_MARK not in what:
        what += f"   {CYCLE_MARK}"
    if row.repeated:
        what = (
            f"⟲ back to {safe_text(task.name)} above   {CYCLE_MARK}"
            if row.in_cycle
            else "(shown above)"
        )
    age = age_text(task, now) if (task.created_at or task.first_seen_at) else ""
    marker = STATE_MARKERS.get(task.state, "?") if task.finished else ""
    if task.id in warned and not row.repeated:
        marker = f"{WARNING_MARK} {marker}".rstrip()
    line = (
        f"{_fit(label, name_width)}  {_fit(coro_label(task.coro, task.request), coro_width)}  "
        f"{marker + ' ' if marker else ''}{safe_text(what)}"
    )
    if age:
        # Two spaces at least: `, for ≥1.4s 2.7s` would read as one phrase.
        gap = max(2, width - cell_len(line) - cell_len(age))
        line = line + " " * gap + age
    return line.rstrip()


def wait_note(task: TaskInfo, now: float) -> str:
    """`, for ≥41.0s` after what a pending task awaits: how long it has waited there, when
    known and shown (see `wait_words`); "" otherwise."""
    waited = wait_words(*task.known_wait(now))
    return f", for {waited}" if waited else ""


def _bound_wait_shown(task: TaskInfo, now: float) -> bool:
    """Whether the task's wait is shown, and only as a lower bound (`≥`: see `wait_words`)."""
    wait, lower_bound = task.known_wait(now)
    return lower_bound and bool(wait_words(wait, lower_bound))


def _prefix(model: TaskModel, row: TreeRow) -> str:
    if row.depth == 0:
        return ""
    parts = [GUIDE if more else NO_GUIDE for more in row.guides[1:]]
    parent = model.tree_parent(row.task)
    kind = relation(row.task, parent) if parent is not None else CREATED
    parts.append(branch(kind, row.is_last))
    return "".join(parts)


def warning_lines(findings: Sequence[FindingFacts], model: TaskModel) -> list[str]:
    """The warnings under a table or tree: a title with the legend of the marker, then one
    line each (`lock deadlock: transfer-a holds first and waits for second, ...`)."""
    if not findings:
        return []
    count = len(findings)
    lines = [
        f"{count} warning{'s' if count != 1 else ''} "
        f"({WARNING_MARK}: a task with a warning; `taskscope lint PID` lists them alone):"
    ]
    lines.extend(f"{WARNING_MARK} {safe_text(finding_text(f, model))}" for f in findings)
    return lines


def no_tasks_note(model: TaskModel, include_finished: bool) -> str | None:
    """Under a `ps` table with no task in it, what that means: none pending, and which
    finished ones are known (after an attach, only those that ended since the agent came);
    under `ps -a` listing no finished task, why. None when the table says all."""
    since = model.history_since
    if (
        include_finished
        and model.history_limit > 0
        and model.tasks
        and not any(task.finished for task in model.tasks.values())
    ):
        # `-a` asked for the finished ones too: say why the table has none
        if since is None:
            return "none has finished"
        return (
            f"none finished since the agent came at {clock(since)} "
            "(tasks that ended before are not known)"
        )
    if any(include_finished or not task.finished for task in model.tasks.values()):
        return None
    finished = len(model.tasks)
    if finished:  # not listed without -a
        counted = f" since the agent came at {clock(since)}" if since is not None else ""
        return f"no task is pending; {finished} finished{counted} (`ps -a` lists them)"
    if since is None:
        return "no task is pending, and none has finished"
    return (
        f"no task is pending, and none finished since the agent came at {clock(since)} "
        "(tasks that ended before are not known)"
    )


def finished_summary(model: TaskModel, now: float) -> str:
    counts = model.counts()
    since = (
        f" since the agent started at {clock(model.history_since)}"
        if model.history_since is not None
        else ""
    )
    kept = f"last {model.history_limit} kept"
    if counts["done"] + counts["cancelled"] + counts["failed"] > model.history_limit > 0:
        kept += ", and failures before them"  # the agent keeps the last failures longer
    text = (
        f"finished{since}: {counts['done']} done · {counts['cancelled']} cancelled · "
        f"{counts['failed']} failed ({kept})"
    )
    failed = [task for task in model.finished() if task.state == "failed"]
    if failed:
        latest: TaskInfo = failed[-1]
        ago = format_duration(now - latest.finished_at) if latest.finished_at else "?"
        text += (
            f" · latest failure: {safe_text(latest.exception or '?', 60)} in "
            f"{safe_text(latest.name)}, {ago} ago"
        )
    return text


def task_text(task: TaskInfo, model: TaskModel, pid: int | None = None) -> str:
    """One task as plain text to paste into a bug report: who it is, what it awaits, who
    awaits it, its stack and where it was created."""
    names = {other.id: other.name for other in model.tasks.values()}

    def named(task_id: str) -> str:
        name = names.get(task_id)
        return f"{task_id} ({safe_text(name)})" if name is not None else task_id

    where = f" in process {pid}" if pid is not None else ""
    lines = [f"task {task.id} {safe_text(task.name)}{where}: {task.state}, {task.coro}()"]
    if task.request is not None:
        lines.append(f"serves: {safe_text(task.request[0] + ' ' + task.request[1])}")
    if task.awaiting is not None:
        in_cycle = task.id in model.cycle_members()
        doing = task_doing(task, in_cycle=in_cycle, letter=model.letter_of(task))
        lines.append(f"awaiting: {safe_text(doing)}")
    if task.awaited_by:
        lines.append("awaited by: " + ", ".join(named(other) for other in task.awaited_by))
    if task.parent is not None:
        lines.append(f"created by: {named(task.parent)}")
    if task.exception is not None:
        lines.append(f"exception: {safe_text(task.exception)}")
    elif task.result is not None:
        lines.append(f"result: {safe_text(task.result)}")
    if task.stack:
        lines.append("stack (outermost first):")
        lines += [
            f"  {safe_text(frame.function)}  {safe_text(frame.location)}" for frame in task.stack
        ]
    if task.created_from:
        lines.append("created at:")
        lines += [
            f"  {safe_text(frame.function)}  {safe_text(frame.location)}"
            for frame in task.created_from
        ]
    return "\n".join(lines)
