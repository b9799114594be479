"""How a task is displayed, shared by the tree, the tables and the detail pane: its marker and
colour, what it awaits in plain words, sort keys, and the filter that decides whether it shows.

Everything from the target (names, reprs, paths) goes through `safe_text` and into rich `Text`
as plain text: never parsed as markup, never sent as terminal control sequences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from rich.text import Text

from taskscope.model import TaskInfo, TaskModel, describe_awaiting, format_duration
from taskscope.report import safe_text

SortKey = Literal["age", "name", "state"]
SORT_ORDER: tuple[SortKey, ...] = ("age", "name", "state")

MARKERS = {"pending": "●", "done": "✓", "cancelled": "⊘", "failed": "✗"}
CYCLE_MARKER = "⟳"
BLOCKED_MARKER = "!"
STATE_STYLES = {
    "pending": "green",
    "done": "dim",
    "cancelled": "yellow",
    "failed": "bold red",
}
CYCLE_STYLE = "bold magenta"
BLOCKED_STYLE = "bold red"
_STATE_RANK = {"pending": 0, "failed": 1, "cancelled": 2, "done": 3}

#: Finished tasks stay in the live views this long after finishing (the history keeps them).
FINISHED_LINGER = 30.0


def marker(task: TaskInfo, in_cycle: bool = False, loop_blocked: bool = False) -> Text:
    """Two cells: a cycle or blocked-loop mark, then the state marker, each in its colour."""
    first = Text(" ")
    if in_cycle:
        first = Text(CYCLE_MARKER, style=CYCLE_STYLE)
    elif loop_blocked and task.running:
        first = Text(BLOCKED_MARKER, style=BLOCKED_STYLE)
    return Text.assemble(first, (MARKERS.get(task.state, "?"), STATE_STYLES.get(task.state, "")))


def awaiting_text(task: TaskInfo, model: TaskModel) -> str:
    """What the task waits on in plain words, with task ids replaced by task names."""
    awaiting = task.awaiting
    if not task.finished and awaiting is not None and awaiting.kind == "task" and awaiting.tasks:
        names = [task_name(model, other) for other in awaiting.tasks]
        return "task " + ", ".join(names)
    return safe_text(describe_awaiting(task, model))


def task_name(model: TaskModel, task_id: str) -> str:
    task = model.tasks.get(task_id)
    return safe_text(task.name) if task is not None else f"#{task_id}"


def age_text(task: TaskInfo, now: float) -> str:
    """`3.0s`, or `≥3.0s` counted from the agent's first look (the task predates an attach)."""
    age, lower_bound = task.known_age(now)
    return ("≥" if lower_bound else "") + format_duration(age) if age is not None else ""


def state_words(task: TaskInfo, now: float) -> str:
    """`pending 41s`, `failed 3.1s ago`."""
    if task.finished:
        if task.finished_at is None:
            return task.state
        return f"{task.state} {format_duration(max(0.0, now - task.finished_at))} ago"
    age, lower_bound = task.known_age(now)
    if age is None:
        return "pending"
    return f"pending {'≥' if lower_bound else ''}{format_duration(age)}"


def sort_key(sort: SortKey) -> Callable[[TaskInfo], tuple[object, ...]]:
    if sort == "name":
        return lambda task: (task.name.lower(), task.number)
    if sort == "state":
        return lambda task: (_STATE_RANK.get(task.state, 9), task.created_at or 0.0, task.number)
    return lambda task: (task.finished, task.created_at or 0.0, task.number)


@dataclass(frozen=True, slots=True)
class ViewOptions:
    """What the user chose to see: a text filter, finished tasks or not, the sort order, and
    optionally a fixed set of tasks (a group opened from the grouped view)."""

    filter: str = ""
    show_finished: bool = True
    sort: SortKey = "age"
    only_ids: frozenset[str] | None = None
    only_label: str = ""

    def shows(self, task: TaskInfo, now: float) -> bool:
        if task.finished:
            if not self.show_finished:
                return False
            if task.finished_at is not None and now - task.finished_at > FINISHED_LINGER:
                return False
        if self.only_ids is not None and task.id not in self.only_ids:
            return False
        return not self.filter or matches(task, self.filter)


def matches(task: TaskInfo, needle: str) -> bool:
    """Case-insensitive match on id, name, coroutine and what the task awaits."""
    needle = needle.lower()
    if needle in task.name.lower() or needle in task.coro.lower() or needle == task.id:
        return True
    return task.awaiting is not None and needle in task.awaiting.text.lower()
