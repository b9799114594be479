"""The detail pane for the selected task: state and age, its runtime figures (steps, busy,
longest step, when it last ran, how long it has waited), what it awaits and who awaits it or
holds the lock it wants (each a link that jumps to that task), its stack with file:line and
source lines, where it was created, how it ended and a failed task's traceback."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Self

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.geometry import Region
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from taskscope.model import Frame, LoopInfo, Stall, TaskInfo, TaskModel, in_tree_order
from taskscope.protocol import StackFrame, StackReply
from taskscope.report import clock, safe_text, stack_items
from taskscope.ui.task_display import (
    ASYNCIO_LEGEND,
    STATE_STYLES,
    WARNING_MARKER,
    WARNING_STYLE,
    awaiting_text,
    blocking_frame,
    made_by_asyncio,
    marker,
    same_height,
    state_words,
    task_name,
    who_stalled,
)
from taskscope.words import (
    ago_text,
    cancel_note,
    cycle_note,
    moments_words,
    runtime_words,
    served_words,
    stall_words,
    step_time_text,
)

#: A traceback longer than this shows its last lines (where it was raised) and says so.
TRACEBACK_LINES = 200


class DetailPane(Vertical):
    """Everything known about one task. Links are an OptionList: Enter jumps to the task."""

    class TaskLinkChosen(Message):
        """The user chose a related task (awaited, awaiting, creator) to jump to."""

        def __init__(self, task_id: str) -> None:
            super().__init__()
            self.task_id = task_id

    def __init__(self, clock: Callable[[], float], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.task_id: str | None = None
        self.stack_reply: StackReply | None = None
        self.cancel_status: dict[str, str] = {}
        self._links: list[tuple[str, str]] = []
        self._link_labels: list[Text] = []
        self._summary_view = Static(id="detail-summary")
        self._link_list = OptionList(id="detail-links")
        self._body_view = Static(id="detail-body")
        self._shown: dict[int, Text] = {}
        #: The border's title is being set: `refresh` draws only the border's top line.
        self._title_only = False

    def compose(self) -> ComposeResult:
        yield self._summary_view
        yield self._link_list
        with VerticalScroll(id="detail-scroll"):
            yield self._body_view

    def show(
        self,
        model: TaskModel,
        task_id: str | None,
        *,
        stall: tuple[LoopInfo, Stall] | None = None,
        warnings: Sequence[tuple[str, str]] = (),
        hint: str = "Select a task to see its stack and what it waits for.",
    ) -> None:
        """Show `task_id` as the model has it now (also called on every update) with the
        `warnings` about it (kind in words, text), or when the stalls view is shown, the
        `stall` under its cursor."""
        if stall is not None:
            self._show_stall(model, *stall)
            return
        if task_id != self.task_id:
            self.stack_reply = None
        self.task_id = task_id
        task = model.tasks.get(task_id) if task_id is not None else None
        if task is None:
            self._set_title("no task selected")
            self._update(self._summary_view, Text(hint, style="dim"))
            self._update(self._body_view, Text())
            self._set_links(model, [])
            return
        self._set_title(safe_text(task.name, 40))
        self._update(self._summary_view, self._summary(model, task, warnings))
        self._set_links(model, self._related(model, task))
        self._update(self._body_view, self._body(task, warnings))

    def _show_stall(self, model: TaskModel, loop: LoopInfo, stall: Stall) -> None:
        """A stall: how long, when, on which loop, who ran, and the whole sampled stack with
        the blocking line marked."""
        self.task_id = None
        self.stack_reply = None
        self._set_title(f"stall of {step_time_text(stall.duration)}")
        now = self.clock()
        summary = Text()
        summary.append(
            stall_words(stall.duration, stall.ongoing),
            style="bold red" if stall.ongoing else "bold",
        )
        summary.append(f"\nat       {clock(stall.started_at)} ({ago_text(stall.started_at, now)})")
        if len(model.loops) > 1:
            summary.append(f" on loop {safe_text(loop.label)}")
        summary.append("\nran      ", style="bold")
        if stall.task is not None or stall.task_name is not None:
            summary.append(who_stalled(stall))
            if stall.task is not None and stall.task not in model.tasks:
                summary.append(" (gone since)", style="dim")
        elif stall.callback is not None:
            summary.append(f"callback {safe_text(stall.callback)}")
        else:
            summary.append("?", style="dim")
        self._update(self._summary_view, summary)
        links = [("→ the task", stall.task)] if stall.task in model.tasks else []
        self._set_links(model, [(words, str(task)) for words, task in links])
        body = Text()
        body.append("stack sampled while it ran ", style="bold")
        body.append("(▶ the blocking line)\n", style="red")
        blocking = blocking_frame(stall.stack)
        for frame in stall.stack:
            if frame is blocking:
                body.append("▶ ", style="bold red")
                body.append(safe_text(frame.function) + "()", style="bold cyan")
                body.append(f"  {safe_text(short_path(frame.file))}", style="bold")
                body.append(f":{frame.line}" if frame.line is not None else "", style="bold")
                body.append("\n")
            else:
                _append_frame(body, _frame_dict(frame))
        if not stall.stack:
            body.append("  (no stack was sampled)\n", style="dim")
        self._update(self._body_view, body)

    def _set_title(self, title: str) -> None:
        """The pane's title (in its border): a cursor move changes it, and Textual draws the
        whole pane again for it (40 lines, with every widget under them), where the border's
        top line is all that changed."""
        if title == self.border_title:
            return
        self._title_only = True
        try:
            self.border_title = title
        finally:
            self._title_only = False

    def refresh(
        self,
        *regions: Region,
        repaint: bool = True,
        layout: bool = False,
        recompose: bool = False,
    ) -> Self:
        if self._title_only and not regions and repaint and not (layout or recompose):
            # Regions are relative to the content: the border's line is above it.
            offset = self.content_offset
            return super().refresh(Region(-offset.x, -offset.y, self.outer_size.width, 1))
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def focus_body(self) -> None:
        """Focus the scrolling part (the stack, the traceback) so that keys scroll it."""
        self.query_one("#detail-scroll").focus()

    def _update(self, view: Static, text: Text) -> None:
        """Update only what changed, and lay the screen out again (which redraws all of it)
        only when the text's height may have changed."""
        old = self._shown.get(id(view))
        if old != text:
            self._shown[id(view)] = text
            view.update(text, layout=not same_height(old, text, view.content_region.width))

    def set_stack(self, task_id: str, reply: StackReply) -> None:
        """The agent's stack reply (with source lines) for the shown task."""
        if task_id == self.task_id:
            self.stack_reply = reply

    def _summary(
        self, model: TaskModel, task: TaskInfo, warnings: Sequence[tuple[str, str]]
    ) -> Text:
        now = self.clock()
        text = Text()
        text.append_text(marker(task, task.id in model.cycle_members(), warned=bool(warnings)))
        text.append(f" {state_words(task, now)}", style=STATE_STYLES.get(task.state, ""))
        text.append(f"  · task {task.id} · ")
        text.append(safe_text(task.coro) + "()", style="cyan")
        if made_by_asyncio(task):
            text.append(f" · {ASYNCIO_LEGEND}", style="dim")
        text.append("\n")
        if task.request is not None:
            text.append("serves   ", style="bold")
            text.append(safe_text(served_words(task.request, task.route)) + "\n")
        if task.finished:
            if task.state == "failed":
                text.append("raised   ", style="bold")
                text.append(safe_text(task.exception or "?"), style="red")
            elif task.state == "done":
                text.append("result   ", style="bold")
                text.append(safe_text(task.result) if task.result is not None else "None")
            else:
                text.append("cancelled", style="yellow")
        else:
            text.append("awaits   ", style="bold")
            text.append(awaiting_text(task, model, now))
            text.append(cycle_note(task.id in model.cycle_members()), style="bold magenta")
        self._append_runtime(text, task, now)
        if len(model.loops) > 1:
            loop = model.loops.get(task.loop)
            text.append("\nruns on  ", style="bold")
            text.append(f"loop {safe_text(loop.label if loop else task.loop)}")
            text.append(f" (one of {len(model.loops)})", style="dim")
        requested = cancel_note(task, now)
        if requested:
            text.append("\n")
            text.append(f"{requested}: its loop has not run it yet", style="bold yellow")
        status = self.cancel_status.get(task.id)
        if status:
            text.append("\n")
            text.append(status, style="bold yellow")
        if warnings:
            # The kinds here; the whole words lead the scrolling part (a narrow pane keeps
            # room for the links).
            titles = ", ".join(dict.fromkeys(title for title, _ in warnings))
            text.append("\n")
            text.append(f"{WARNING_MARKER} {titles} (below)", style=WARNING_STYLE)
        return text

    def _append_runtime(self, text: Text, task: TaskInfo, now: float) -> None:
        """`ran      48,210 steps · busy 8.21s · longest 310ms` (when the agent times steps),
        then when it last ran and how long it has waited where it is."""
        figures = runtime_words(task.steps, task.busy_s, task.longest_step_s)
        if figures:
            text.append("\nran      ", style="bold")
            text.append(figures)
        moments = moments_words(task.last_ran_at, task.known_wait(now), now)
        if moments:
            text.append("\n         ")
            text.append(moments)

    def _related(self, model: TaskModel, task: TaskInfo) -> list[tuple[str, str]]:
        links: list[tuple[str, str]] = []
        if task.awaiting is not None and not task.finished:
            links.extend(
                ("→ awaits", other)
                for other in in_tree_order(model, task.awaiting.tasks)
                if other in model.tasks
            )
        if task.awaiting is not None and not task.finished:
            holders = task.awaiting.facts.get("holders") or ()
            links.extend(
                ("⚿ held by", str(holder)) for holder in holders if str(holder) in model.tasks
            )
        links.extend(
            ("← awaited by", waiter)
            for waiter in in_tree_order(model, task.awaited_by)
            if waiter in model.tasks
        )
        if task.parent is not None and task.parent in model.tasks:
            links.append(("↑ created by", task.parent))
        return links

    def _set_links(self, model: TaskModel, links: list[tuple[str, str]]) -> None:
        options = self._link_list
        if links == self._links:
            return
        labels = [
            Text.assemble((words, "bold"), f" {task_name(model, other)}") for words, other in links
        ]
        width = options.content_region.width
        if (
            len(links) == len(self._links)
            and links
            and all(label.cell_len <= width for label in [*labels, *self._link_labels])
        ):
            # As many one-line links as before: new words in place, no new layout.
            for index, label in enumerate(labels):
                options.replace_option_prompt_at_index(index, label)
        else:
            options.clear_options()
            options.add_options([Option(label) for label in labels])
            options.display = bool(links)
        self._links = links
        self._link_labels = labels

    def _body(self, task: TaskInfo, warnings: Sequence[tuple[str, str]] = ()) -> Text:
        text = Text()
        for _, words in warnings:
            text.append(f"{WARNING_MARKER} {safe_text(words)}\n", style=WARNING_STYLE)
        if warnings:
            text.append("\n")
        reply = self.stack_reply
        if task.finished:
            if task.traceback:
                _append_traceback(text, task.traceback)
            else:
                text.append("finished tasks have no stack\n", style="dim")
        else:
            text.append("stack\n", style="bold")
            frames: list[StackFrame]
            left_out_at, left_out = None, 0
            if reply is not None and reply.get("found") and reply.get("stack") is not None:
                frames = list(reply["stack"])
                left_out_at, left_out = reply.get("left_out_at"), reply.get("left_out", 0)
            else:
                frames = [_frame_dict(frame) for frame in task.stack]
                if task.stack_left_out is not None:
                    left_out_at, left_out = task.stack_left_out
            for frame in stack_items(frames, left_out_at, left_out):
                if isinstance(frame, str):
                    text.append(f"  {frame}\n", style="dim")
                else:
                    _append_frame(text, frame)  # type: ignore[arg-type]
            if not frames:
                text.append("  (no frames: the task has not started)\n", style="dim")
        created = (
            list(reply["created_from"])
            if reply is not None and reply.get("created_from")
            else [_frame_dict(frame) for frame in task.created_from]
        )
        if created:
            text.append("created from\n", style="bold")
            for frame in created:
                _append_frame(text, frame)
        return text

    @on(events.DescendantFocus)
    def _links_focused(self, event: events.DescendantFocus) -> None:
        """Tab onto the links: the first one is under the cursor, Enter follows it."""
        links = self._link_list
        if event.widget is links and links.highlighted is None and links.option_count:
            links.highlighted = 0

    @on(OptionList.OptionSelected, "#detail-links")
    def _link_chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if 0 <= event.option_index < len(self._links):
            self.post_message(self.TaskLinkChosen(self._links[event.option_index][1]))


def _append_traceback(text: Text, traceback: str) -> None:
    """A failed task's traceback as Python printed it, its last `TRACEBACK_LINES` lines."""
    lines = traceback.rstrip("\n").split("\n")
    text.append("traceback\n", style="bold")
    if len(lines) > TRACEBACK_LINES:
        text.append(f"  … {len(lines) - TRACEBACK_LINES} earlier lines\n", style="dim")
        lines = lines[-TRACEBACK_LINES:]
    for line in lines:
        style = "red" if line and not line[0].isspace() and not line.startswith("Traceback") else ""
        text.append(safe_text(line, 300) + "\n", style=style)


def _frame_dict(frame: Frame) -> StackFrame:
    return {"function": frame.function, "file": frame.file, "line": frame.line, "source": None}


def short_path(path: str) -> str:
    """Library paths from where the import system starts (`asyncio/tasks.py`); others whole."""
    for packages in ("/site-packages/", "/dist-packages/"):
        if packages in path:
            return path.rsplit(packages, 1)[1]
    _, found, tail = path.rpartition("/lib/python")
    if found and "/" in tail:
        return tail.split("/", 1)[1]
    return path


def _append_frame(text: Text, frame: StackFrame) -> None:
    location = safe_text(short_path(str(frame["file"])))
    if frame["line"] is not None:
        location += f":{frame['line']}"
    text.append("  ")
    text.append(safe_text(str(frame["function"])) + "()", style="cyan")
    text.append(f"  {location}\n", style="dim")
    source = frame.get("source")
    if source:
        text.append(f"      {safe_text(str(source).strip())}\n")
