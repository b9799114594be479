"""A failed task's traceback and whether anyone retrieved its exception.

When a task fails its note is made on its loop's thread: asyncio's done callback
(`Tracker._note_failure`, a `FailureNote`), trio's instrument (`TaskWatch.task_exited`, a
`TracebackNote`). It holds the (code, line) of each traceback entry, bounded, and the
exception's last line, made without calling the program's code. Neither the exception nor
its traceback is kept: they hold the frames and every local variable of the failing calls,
and a history of 1,000 of them would keep the program's objects (files, connections,
request bodies) alive long after it let them go. The text, with source lines, is made later
on the agent's thread (`format_failure`).

Whether the exception was retrieved is asyncio's own flag, `Future._log_traceback`: True from
`set_exception` until someone calls `result()` or `exception()` (which `await task`, gather
and TaskGroup do). It is read, never written, while the task exists (`retrieved`). Once the
task is gone the flag is gone too; asyncio then reports an exception nobody retrieved through
`loop.call_exception_handler` ("Task exception was never retrieved"), which the tracker
watches (`UnretrievedWatch`) to tell the two cases apart afterwards. A trio task has no
such question: its exception always goes to its nursery, which raises it in the task that
opened it (the main task's out of `trio.run`), so nobody can leave it unretrieved, and a
`TracebackNote` answers None (its record has no `exception_retrieved`).
"""

from __future__ import annotations

import weakref
from types import CodeType, TracebackType
from typing import Any, cast

from taskscope.agent.summary import exception_line

#: Traceback entries kept per exception (the innermost ones: where it was raised).
MAX_FRAMES = 30
#: Entries kept for each exception it was chained from, or each member of a group.
MAX_LINKED_FRAMES = 10
#: Exceptions it was chained from (`raise ... from`, or raised while handling), and members
#: of an exception group, shown at most.
MAX_LINKED = 3
#: The formatted traceback is cut at this many characters.
MAX_TEXT = 8192

#: One exception of a failure: its traceback entries (`Entries`), how many
#: earlier entries were left out, its last line, and how it follows the exception printed
#: before it ("cause": that one caused it, "context": raised while handling that one,
#: "member": a member of that group, "" for the first).
Segment = tuple["Entries", int, str, str]
#: Traceback entries, outermost first, flat (fewer objects made on the loop thread): code,
#: line, code, line...
Entries = tuple[CodeType | int | None, ...]

CAUSE_WORDS = "The above exception was the direct cause of the following exception:"
CONTEXT_WORDS = "During handling of the above exception, another exception occurred:"


class TracebackNote:
    """The traceback of one failed task (made on its loop's thread as it fails: for failed
    tasks only). Alone, a trio task's: whether its exception was retrieved is no question
    there (see the module's docstring)."""

    __slots__ = ("segments",)

    def __init__(self, exc: BaseException) -> None:
        #: The chained exceptions first, as Python prints them; the task's own last.
        self.segments: tuple[Segment, ...] = _segments(exc)

    def retrieved(self) -> bool | None:
        """None: not a question for this task."""
        return None


class FailureNote(TracebackNote):
    """What the agent keeps of one failed asyncio task: its traceback and what tells whether
    its exception was retrieved (made on the loop thread, in the done callback)."""

    __slots__ = ("dead_seen", "exception_id", "task_ref", "unretrieved", "watched")

    def __init__(self, task: Any, exc: BaseException, watched: bool) -> None:
        #: The task, while something else keeps it alive: its flag is read at each look.
        self.task_ref: weakref.ref[Any] = weakref.ref(task)
        self.exception_id = id(exc)
        self.segments = _segments(exc)
        #: Set when asyncio reported the exception as never retrieved (the task's end).
        self.unretrieved = False
        #: Whether asyncio's report would reach the tracker (its loop's handler is watched).
        self.watched = watched
        #: The agent saw the task gone once (its note may be dropped at the next prune).
        self.dead_seen = False

    def retrieved(self) -> bool | None:
        """Whether anyone retrieved the exception: None when it cannot be known (the task is
        gone and its loop's exception handler was not watched)."""
        if self.unretrieved:
            return False
        task = self.task_ref()
        if task is not None:
            try:
                return not task._log_traceback  # a read: asyncio's flag stays as it was
            except Exception:
                return None
        return True if self.watched else None


def _entries(tb: TracebackType | None, limit: int) -> tuple[Entries, int]:
    """The last `limit` entries of a traceback, and how many earlier ones were left out."""
    entries: list[CodeType | int | None] = []
    while tb is not None:
        entries += (tb.tb_frame.f_code, tb.tb_lineno)
        tb = tb.tb_next
    count = len(entries) // 2
    if count > limit:
        return tuple(entries[-2 * limit :]), count - limit
    return tuple(entries), 0


def _segments(exc: BaseException) -> tuple[Segment, ...]:
    """The exception and those it was chained from, as Python prints them: the innermost
    cause first, each followed by the members of its group; each segment's last field is how
    it follows the one printed before it ("cause", "context", "member" or "")."""
    if exc.__cause__ is None and exc.__context__ is None and not _is_group(exc):
        frames, left_out = _entries(exc.__traceback__, MAX_FRAMES)
        return ((frames, left_out, exception_line(exc), ""),)
    chain: list[tuple[BaseException, str]] = []  # outermost first, with how it was chained
    current: BaseException | None = exc
    relation = ""
    seen: set[int] = set()
    while current is not None and id(current) not in seen and len(chain) <= MAX_LINKED:
        seen.add(id(current))
        chain.append((current, relation))
        if current.__cause__ is not None:
            current, relation = current.__cause__, "cause"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, relation = current.__context__, "context"
        else:
            current = None
    segments: list[Segment] = []
    follows = ""
    for current, relation in reversed(chain):
        limit = MAX_FRAMES if current is exc else MAX_LINKED_FRAMES
        frames, left_out = _entries(current.__traceback__, limit)
        segments.append((frames, left_out, exception_line(current), follows))
        for member in _group_members(current):
            frames, left_out = _entries(member.__traceback__, MAX_LINKED_FRAMES)
            segments.append((frames, left_out, exception_line(member), "member"))
        follows = relation
    return tuple(segments)


def _is_group(exc: BaseException) -> bool:
    return isinstance(exc, BaseExceptionGroup)


def _group_members(exc: BaseException) -> list[BaseException]:
    if not isinstance(exc, BaseExceptionGroup):
        return []
    return list(exc.exceptions[:MAX_LINKED])


def format_failure(note: TracebackNote) -> str:
    """The traceback as Python prints it (bounded), with source lines read by the agent."""
    from taskscope.agent.connection import _source_line  # the agent's own source cache

    lines: list[str] = []
    for frames, left_out, last_line, follows in note.segments:
        indent = ""
        if follows == "member":
            lines.append("  A member of the exception group above:")
            indent = "  "
        elif follows:
            lines += ["", CAUSE_WORDS if follows == "cause" else CONTEXT_WORDS, ""]
        lines.append(f"{indent}Traceback (most recent call last):")
        if left_out:
            lines.append(f"{indent}  ... {left_out} earlier frames left out")
        for index in range(0, len(frames), 2):
            code = cast(CodeType, frames[index])
            line = cast("int | None", frames[index + 1])
            lines.append(f'{indent}  File "{code.co_filename}", line {line}, in {code.co_qualname}')
            source = _source_line(code.co_filename, line)
            if source:
                lines.append(f"{indent}    {source}")
        lines.append(indent + last_line)
    text = "\n".join(lines)
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 40].rsplit("\n", 1)[0] + "\n... (cut at 8 KB)"
    return text


class UnretrievedWatch:
    """Stands in a loop's `call_exception_handler` (an attribute of the loop object, as the
    tracker's `create_task` is): notes which failed tasks asyncio reports as never retrieved,
    then hands every call on, unchanged, to the loop's own method."""

    __slots__ = ("failures", "original")

    def __init__(self, original: Any, failures: dict[int, FailureNote]) -> None:
        self.original = original
        self.failures = failures

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            context = args[0] if args else kwargs.get("context")
            if type(context) is dict:
                future = context.get("future")
                note = self.failures.get(id(future)) if future is not None else None
                if note is not None:
                    message = context.get("message")
                    referent = note.task_ref()
                    # In a collected cycle the reference is cleared before asyncio reports.
                    same = referent is future or (
                        referent is None and id(context.get("exception")) == note.exception_id
                    )
                    if same and type(message) is str and message.endswith("never retrieved"):
                        note.unretrieved = True
        except Exception:
            pass
        return self.original(*args, **kwargs)
