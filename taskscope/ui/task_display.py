"""How a task is displayed, shared by the tree, the tables and the detail pane: its marker and
colour, what it awaits in plain words, sort keys, and the filter that decides whether it shows;
and for a loop's stall, who ran and its blocking line.

Everything from the target (names, reprs, paths) goes through `safe_text` and into rich `Text`
as plain text: never parsed as markup, never sent as terminal control sequences.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import CodeType, FunctionType
from typing import Literal

from rich.cells import cell_len
from rich.text import Text

from taskscope.model import Frame, Stall, TaskInfo, TaskModel, natural_order
from taskscope.report import safe_text, wait_note
from taskscope.words import (
    age_words,
    awaiting_label,
    coro_label,
    format_duration,
    is_library,
    letter_of,
    stalled_by,
    task_doing,
    tasks_awaited,
)

SortKey = Literal["age", "busy", "steps", "waited", "name", "state"]
SORT_ORDER: tuple[SortKey, ...] = ("age", "busy", "steps", "waited", "name", "state")
#: Sorts by a runtime figure: offered only when the agent times steps.
FIGURE_SORTS: frozenset[SortKey] = frozenset({"busy", "steps"})
#: Sorts whose key moves with every step a task takes: the tree orders siblings by them when
#: it is built, not at each update (moving every task that ran would cost each update).
MOVING_SORTS: frozenset[SortKey] = FIGURE_SORTS | {"waited"}

#: A tree or table narrower than this (an 80-column terminal's) lays its columns out for
#: what a task awaits to stay on screen (`task_tree.tree_columns`, `TaskTable`).
FULL_COLUMNS_FROM = 88
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
#: Beside a task some warning (`taskscope.lints`) is about.
WARNING_MARKER = "⚠"
WARNING_STYLE = "bold yellow"
BLOCKED_STYLE = "bold red"
_STATE_RANK = {"pending": 0, "failed": 1, "cancelled": 2, "done": 3}

#: Finished tasks stay in the live views this long after finishing (the history keeps them).
FINISHED_LINGER = 30.0


def marker(
    task: TaskInfo, in_cycle: bool = False, loop_blocked: bool = False, warned: bool = False
) -> Text:
    """Two cells: a cycle, warning or blocked-loop mark, then the state marker, each in its
    colour."""
    first = Text(" ")
    if in_cycle:
        first = Text(CYCLE_MARKER, style=CYCLE_STYLE)
    elif warned:
        first = Text(WARNING_MARKER, style=WARNING_STYLE)
    elif loop_blocked and task.running:
        first = Text(BLOCKED_MARKER, style=BLOCKED_STYLE)
    return Text.assemble(first, (MARKERS.get(task.state, "?"), STATE_STYLES.get(task.state, "")))


#: Marks a task that asyncio made for itself (a server's accept loop, a connection attempt).
ASYNCIO_MARK = "⚙ "
ASYNCIO_LEGEND = "⚙ made by asyncio itself"
_DEFAULT_NAME = re.compile(r"Task-\d+\Z")
_COROUTINE_FLAGS = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR


def made_by_asyncio(task: TaskInfo) -> bool:
    """Whether asyncio made this task for its own work, not the program: its coroutine's code
    is in asyncio's package (the file of its outermost frame; for a task with no stack, a
    finished one, its coroutine's name among asyncio's own coroutines), and nobody named it."""
    if not _DEFAULT_NAME.match(task.name):
        return False
    if task.stack:
        return in_asyncio_package(task.stack[0].file)
    return task.coro in asyncio_coroutines()


@functools.lru_cache(maxsize=4096)
def in_asyncio_package(path: str) -> bool:
    """`…/lib/python3.12/asyncio/base_events.py`: a module of asyncio's own package."""
    return os.path.basename(os.path.dirname(path)) == "asyncio"


@functools.cache
def asyncio_coroutines() -> frozenset[str]:
    """The qualified names of the coroutine functions defined in asyncio's package (as this
    Python has them), found from their code objects' files."""
    import asyncio  # noqa: F401  (loads every module of the package)

    codes: list[CodeType] = []
    seen: set[int] = set()
    modules = [
        module
        for name, module in list(sys.modules.items())
        if (name == "asyncio" or name.startswith("asyncio.")) and module is not None
    ]
    pending: list[object] = [value for module in modules for value in vars(module).values()]
    while pending:
        value = pending.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, type) and value.__module__.startswith("asyncio"):
            pending.extend(vars(value).values())
        elif isinstance(value, (staticmethod, classmethod)):
            pending.append(value.__func__)
        elif isinstance(value, FunctionType):
            codes.append(value.__code__)
    names: set[str] = set()
    while codes:
        code = codes.pop()
        codes.extend(const for const in code.co_consts if isinstance(const, CodeType))
        if code.co_flags & _COROUTINE_FLAGS and in_asyncio_package(code.co_filename):
            names.add(code.co_qualname)
    return frozenset(names)


def coro_text(task: TaskInfo, width: int) -> str:
    """The coroutine column: `worker()`, or `⚙ BaseEventLoop._create_se…` for asyncio's own."""
    mark = ASYNCIO_MARK if made_by_asyncio(task) else ""
    return mark + safe_text(coro_label(task.coro, task.request), width - len(mark))


def unwrapped_height(text: Text, width: int) -> int | None:
    """How many lines `text` takes at `width` cells when none of its lines is longer than
    that (no wrapping to guess at), else None."""
    if width <= 0:
        return None
    lines = text.plain.split("\n")
    if any(cell_len(line) > width for line in lines):
        return None
    return len(lines)


def same_height(old: Text | None, new: Text, width: int) -> bool:
    """Whether `new` surely takes as many lines as `old` did: then showing it needs no new
    layout of the screen (which redraws all of it), only a repaint of its own lines."""
    if old is None:
        return False
    height = unwrapped_height(new, width)
    return height is not None and height == unwrapped_height(old, width)


def awaiting_text(task: TaskInfo, model: TaskModel, now: float | None = None) -> str:
    """What the task waits on in plain words (countdowns brought up to `now`), with task ids
    replaced by task names; led by
    `cancel requested ·` while a cancel waits for the task's loop (the detail pane says since
    when: a row is redrawn only when its task changes)."""
    awaiting = task.awaiting
    pending_cancel = task.cancel_requested_at is not None and not task.finished
    lead = "cancel requested · " if pending_cancel else ""
    if not task.finished and awaiting is not None and awaiting.kind == "task" and awaiting.tasks:
        return lead + tasks_awaited(task_name(model, other) for other in awaiting.tasks)
    in_cycle = bool(model.cycles) and task.id in model.cycle_members()
    return lead + safe_text(task_doing(task, now, in_cycle, model.letter_of(task)))


def row_awaiting_text(task: TaskInfo, model: TaskModel, now: float) -> str:
    """`awaiting_text` as a row of the tree or the table shows it: with how long the task
    has waited there (`, for ≥41.0s`), which the tick brings up to date."""
    return awaiting_text(task, model, now) + wait_note(task, now)


def task_name(model: TaskModel, task_id: str) -> str:
    task = model.tasks.get(task_id)
    return safe_text(task.name) if task is not None else f"#{task_id}"


def age_text(task: TaskInfo, now: float) -> str:
    """`3.0s`, or `≥3.0s` counted from the agent's first look (the task predates an attach)."""
    return age_words(*task.known_age(now), unknown="")


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


def has_figures(model: TaskModel) -> bool:
    """Whether the agent times steps (`time_steps`: its loops count steps per second, and
    tasks carry steps and busy time): then the views show them, and can sort by them. (A
    loop's busy share alone may be an estimate made without timing steps.)"""
    return any(loop.steps_per_s is not None for loop in model.loops.values())


def next_sort(current: SortKey, figures: bool) -> SortKey:
    """The sort after `current` in the cycle (age, busy, steps, waited, name, state), skipping the
    runtime figures when there are none."""
    order = [sort for sort in SORT_ORDER if figures or sort not in FIGURE_SORTS]
    index = order.index(current) if current in order else -1
    return order[(index + 1) % len(order)]


def sort_key(sort: SortKey) -> Callable[[TaskInfo], tuple[object, ...]]:
    """Oldest first (pending before finished) by default, then by name; busiest, most steps,
    longest waiting where they are first."""
    if sort == "busy":
        return lambda task: (task.busy_s is None, -(task.busy_s or 0.0), task.number)
    if sort == "steps":
        return lambda task: (task.steps is None, -(task.steps or 0), task.number)
    if sort == "waited":
        # By the moment the wait began, not its length: a key that stays put as time goes on.
        def longest_wait_first(task: TaskInfo) -> tuple[object, ...]:
            start = task.known_wait_start()
            return (start is None, start or 0.0, task.number)

        return longest_wait_first
    if sort == "name":
        return lambda task: (task.name.lower(), task.number)
    if sort == "state":
        return lambda task: (_STATE_RANK.get(task.state, 9), task.created_at or 0.0, task.number)
    # Tasks older than the agent have no creation time: among them, names in natural order
    # (worker-2 before worker-10), not the order the agent happened to meet them in.
    return lambda task: (
        task.finished,
        task.created_at or 0.0,
        natural_order(task.name),
        task.number,
    )


#: No object lettered (`TaskModel.object_letters` of a model with none).
_NO_LETTERS: Mapping[str, str] = {}


@dataclass(frozen=True, slots=True)
class ViewOptions:
    """What the user chose to see: a text filter, finished tasks or not, the sort order, and
    optionally a fixed set of tasks (a group opened from the grouped view)."""

    filter: str = ""
    show_finished: bool = True
    sort: SortKey = "age"
    only_ids: frozenset[str] | None = None
    only_label: str = ""
    #: One worker of a look at several processes (ids `PID:ID`): only its tasks.
    only_pid: int | None = None
    #: Only the tasks some warning is about (`!`): their ids as of the last look.
    only_warned: frozenset[str] | None = None

    def shows(self, task: TaskInfo, now: float, letters: Mapping[str, str] = _NO_LETTERS) -> bool:
        """Whether the view shows `task`; `letters`: the model's `object_letters` (a filter
        may name an object by its letter, as its row does: `Lock B`)."""
        if task.finished:
            if not self.show_finished:
                return False
            if task.finished_at is not None and now - task.finished_at > FINISHED_LINGER:
                return False
        if self.only_ids is not None and task.id not in self.only_ids:
            return False
        if self.only_pid is not None and not task.id.startswith(f"{self.only_pid}:"):
            return False
        if self.only_warned is not None and task.id not in self.only_warned:
            return False
        return not self.filter or matches(task, self.filter, letters)


def matches(task: TaskInfo, needle: str, letters: Mapping[str, str] = _NO_LETTERS) -> bool:
    """Case-insensitive match on id, name, coroutine and what the task awaits (with the
    letter of its object, in `letters`, as its row says it)."""
    if matches_itself(task, needle):
        return True
    awaiting = task.awaiting
    if awaiting is None:
        return False
    letter = letter_of(awaiting.raw, letters, task.id)
    return needle.lower() in awaiting_label(awaiting, letter).lower()


def matches_itself(task: TaskInfo, needle: str) -> bool:
    """Case-insensitive match on the task's own id, name or coroutine: after `/victim`, the
    task named victim rather than the one awaiting it, for the cursor to land on."""
    needle = needle.lower()
    if needle in task.name.lower() or needle in task.coro.lower() or needle == task.id:
        return True
    request = task.request
    if request is None:
        return False
    return needle in f"{request[0]} {request[1]}".lower() or (
        task.route is not None and needle in task.route.lower()
    )


# --- stalls ---------------------------------------------------------------------------------


def blocking_frame(stack: Sequence[Frame]) -> Frame | None:
    """The innermost frame of the program's own code in a sampled stack (innermost last),
    else the innermost frame: where the program called what blocked."""
    for frame in reversed(stack):
        if not is_library(frame.file):
            return frame
    return stack[-1] if stack else None


def who_stalled(stall: Stall) -> str:
    """The task by name (else by id), or the callback, that ran the step (`words.stalled_by`)."""
    outermost = stall.stack[0].function if stall.stack else None
    return safe_text(
        stalled_by(stall.task_name, stall.task, stall.callback, outermost, stall.request)
    )
