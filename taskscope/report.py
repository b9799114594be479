"""Plain-text views of a TaskModel: the `ps` table and the `tree` of the command line, and one
task as text (what the dashboard copies).

Task names, reprs and paths come from the monitored program: they are untrusted text, so
control characters are escaped before anything reaches the terminal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from taskscope.model import TaskInfo, TaskModel, describe_awaiting, format_duration

STATE_MARKERS = {"pending": "●", "done": "✓", "cancelled": "⊘", "failed": "✗"}
CYCLE_MARK = "⟳ await cycle"


def safe_text(text: str, limit: int | None = None) -> str:
    """Printable text: control characters (ESC, CR, BEL...) shown as escapes, not obeyed."""
    if text.isprintable():
        cleaned = text
    else:
        cleaned = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    if limit is not None and len(cleaned) > limit:
        return cleaned[: max(0, limit - 1)] + "…"
    return cleaned


def _fit(text: str, width: int) -> str:
    text = safe_text(text, width)
    return text + " " * (width - len(text))


def header(model: TaskModel, argv: list[str] | None = None) -> str:
    program = (
        " ".join(os.path.basename(arg) if i == 0 else arg for i, arg in enumerate(argv or []))
        or "?"
    )
    parts = [f"pid {model.pid}", f"python {model.python}", safe_text(program, 60)]
    for loop in model.loops.values():
        state = "running" if loop.running else ("closed" if loop.closed else "stopped")
        if loop.blocked_for is not None:
            state = f"BLOCKED for {format_duration(loop.blocked_for)}"
        elif loop.lag is not None and loop.running:
            state += f", lag {loop.lag * 1000:.1f} ms"
        parts.append(f"loop {safe_text(loop.label)} {state}")
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
    words = ", ".join(_NOT_KNOWN_WORDS.get(str(item), str(item)) for item in missing)
    return [f"read-only look (from memory, no agent); not shown: {words}"]


def blocked_lines(model: TaskModel) -> list[str]:
    lines = []
    for loop in model.loops.values():
        if loop.blocked_for is None:
            continue
        if loop.blocked_ended:
            lines.append(
                f"loop {safe_text(loop.label)} did not run its callbacks for "
                f"{format_duration(loop.blocked_for)}, until just before this answer: a call "
                "that held the GIL kept the agent from answering sooner"
            )
            continue
        lines.append(
            f"loop {safe_text(loop.label)} has not run its callbacks for "
            f"{format_duration(loop.blocked_for)}; it is busy in:"
        )
        lines.extend(
            f"    {safe_text(frame.function)}  {safe_text(frame.location)}"
            for frame in loop.blocking_stack[-6:]
        )
    return lines


def ps_table(model: TaskModel, include_finished: bool = False, now: float | None = None) -> str:
    now = now or time.time()
    rows = [("ID", "STATE", "NAME", "CORO", "AGE", "AWAITING")]
    tasks = sorted(model.tasks.values(), key=lambda task: (task.finished, task.number))
    for task in tasks:
        if task.finished and not include_finished:
            continue
        state = task.state + (" (running)" if task.running else "")
        rows.append(
            (
                task.id,
                state,
                safe_text(task.name, 30),
                safe_text(task.coro + "()", 40),
                format_duration(task.age(now)),
                safe_text(describe_awaiting(task, model), 80),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5]
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def tree_text(
    model: TaskModel,
    argv: list[str] | None = None,
    include_finished: bool = False,
    now: float | None = None,
    width: int = 120,
    notes: Sequence[str] = (),
) -> str:
    """The task tree as text: a header, `notes` (lines about the look itself), then the tasks."""
    now = now or time.time()
    lines = [header(model, argv), *notes]
    lines.extend(blocked_lines(model))
    rows = list(model.tree(include_finished=include_finished))
    name_width = min(
        36,
        max(
            [
                len(_prefix(row.guides, row.is_last, row.depth)) + len(safe_text(row.task.name))
                for row in rows
            ]
            + [4]
        ),
    )
    coro_width = min(32, max([len(safe_text(row.task.coro)) + 2 for row in rows] + [4]))
    for row in rows:
        task = row.task
        prefix = _prefix(row.guides, row.is_last, row.depth)
        label = prefix + safe_text(task.name)
        what = describe_awaiting(task, model)
        if task.awaiting is not None and task.awaiting.kind == "task" and task.awaiting.tasks:
            names = [
                safe_text(model.tasks[t].name) if t in model.tasks else t
                for t in task.awaiting.tasks
            ]
            what = "task " + ", ".join(names)
        if not task.finished and task.awaiting is not None:
            what = "awaiting " + what
        if row.in_cycle and CYCLE_MARK not in what:
            what += f"   {CYCLE_MARK}"
        if row.repeated:
            what = (
                f"⟲ back to {safe_text(task.name)} above   {CYCLE_MARK}"
                if row.in_cycle
                else "(shown above)"
            )
        age = format_duration(task.age(now)) if task.created_at else ""
        marker = STATE_MARKERS.get(task.state, "?") if task.finished else ""
        line = (
            f"{_fit(label, name_width)}  {_fit(task.coro + '()', coro_width)}  "
            f"{marker + ' ' if marker else ''}{safe_text(what)}"
        )
        if age:
            pad = max(1, width - len(line) - len(age))
            line = line + " " * pad + age
        lines.append(line.rstrip())
    if model.history_limit:  # none kept (a read-only look, history=0): nothing to sum up
        lines.append(finished_summary(model, now))
    return "\n".join(lines)


def _prefix(guides: tuple[bool, ...], is_last: bool, depth: int) -> str:
    if depth == 0:
        return ""
    parts = ["│  " if more else "   " for more in guides[1:]]
    parts.append("└─ " if is_last else "├─ ")
    return "".join(parts)


def finished_summary(model: TaskModel, now: float) -> str:
    counts = model.counts()
    text = (
        f"finished: {counts['done']} done · {counts['cancelled']} cancelled · "
        f"{counts['failed']} failed (last {model.history_limit} kept)"
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
    if task.awaiting is not None:
        lines.append(f"awaiting: {safe_text(describe_awaiting(task, model))}")
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
