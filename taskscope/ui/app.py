"""The dashboard app: a header, the task views (tree, flat table, grouped, history), the detail
pane and the footer, fed by a `TaskSource` through a thread worker.

Data flow: the feed worker folds updates into an `UpdateBuffer` and posts `FeedUpdated` (at
most one pending); the handler applies the folded update to the `TaskModel` and then to the
active view by task id, inside `batch_update()`. Commands (cancel, stack, export, process
facts) run in their own thread workers, so a slow or blocked target never freezes the screen.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.timer import Timer
from textual.widgets import ContentSwitcher, Footer, Input
from textual.worker import get_current_worker

from taskscope.client import ClientError
from taskscope.model import TaskInfo, TaskModel
from taskscope.relations import LEGEND
from taskscope.report import safe_text, task_text
from taskscope.ui.cancel_dialog import CancelDialog
from taskscope.ui.detail_pane import DetailPane
from taskscope.ui.feed import UpdateBuffer
from taskscope.ui.group_table import GroupTable
from taskscope.ui.help_screen import HelpScreen
from taskscope.ui.history_table import HistoryTable
from taskscope.ui.process_header import ProcessHeader
from taskscope.ui.row_list import RowList
from taskscope.ui.source import AgentSource, ProcessInfo, TaskSource
from taskscope.ui.task_display import ASYNCIO_LEGEND, SORT_ORDER, ViewOptions, state_words
from taskscope.ui.task_table import TaskTable
from taskscope.ui.task_tree import TREE_LIMIT, TaskTree

ViewName = Literal["tree", "table", "groups", "history"]
VIEWS: tuple[ViewName, ...] = ("tree", "table", "groups", "history")
VIEW_TITLES = {
    "tree": "Task tree",
    "table": "All tasks",
    "groups": "Grouped",
    "history": "Recently finished",
}
#: A line under each view that explains its marks.
VIEW_LEGENDS = {
    "tree": f"{LEGEND}   {ASYNCIO_LEGEND}",
    "table": ASYNCIO_LEGEND,
    "history": ASYNCIO_LEGEND,
}
#: How long a cancelled task may keep running before we say it ignored the cancellation.
CANCEL_GRACE = 3.0
#: Tasks of an update applied to the tree per slice (a few milliseconds of work).
SLICE_TASKS = 250
TICK_SECONDS = 1.0


#: The help screen's longer words for each binding's action (the footer shows the short ones).
HELP = {
    "quit": "quit (the target keeps running)",
    "help": "this help",
    "filter": "filter by name, coroutine, id or what a task awaits",
    "clear_filter": "clear the filter or the opened group",
    "cycle_sort": "sort by age, then name, then state",
    "view('tree')": "tree view: tasks under their waiter, TaskGroup, gather or creator",
    "view('table')": "flat table of all tasks",
    "view('groups')": "grouped view: counts by coroutine and await site",
    "view('history')": "history: recently finished tasks and how they ended",
    "toggle_finished": "show or hide finished tasks in the live views",
    "cancel_task": "cancel the selected task (asks first)",
    "cancel_subtree": "cancel the selected task and everything under it (asks first)",
    "export": "write the current snapshot as JSON to a file",
    "copy_task": "copy the selected task (awaits, stack, creator) as text to the clipboard",
    "toggle_pause": "pause or resume live updates",
}


class FeedUpdated(Message):
    """New data is waiting in the update buffer. At most one is ever pending."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FeedUpdated)


class UpdateSliceDue(Message):
    """The next slice of an update being applied is due (keys that came meanwhile go first)."""


class FeedEnded(Message):
    """The subscription ended: the process exited or the connection broke. `exit_unconfirmed`:
    the connection was lost while the process still looked alive, which it may not be for long
    (a process killed with SIGKILL closes its descriptors a moment before it is gone)."""

    def __init__(self, reason: str, *, exit_unconfirmed: bool = False) -> None:
        super().__init__()
        self.reason = reason
        self.exit_unconfirmed = exit_unconfirmed


class FactsRead(Message):
    def __init__(self, info: ProcessInfo) -> None:
        super().__init__()
        self.info = info


class StackFetched(Message):
    def __init__(self, task_id: str, reply: dict[str, Any]) -> None:
        super().__init__()
        self.task_id = task_id
        self.reply = reply


class CancelFinished(Message):
    """The agent answered every cancel request of one confirmation."""

    def __init__(self, request: CancelRequest, outcomes: dict[str, str]) -> None:
        super().__init__()
        self.request = request
        self.outcomes = outcomes


class ExportFinished(Message):
    def __init__(self, path: str | None, error: str | None) -> None:
        super().__init__()
        self.path = path
        self.error = error


@dataclass(slots=True)
class CancelRequest:
    """One confirmed cancellation (a task, or a subtree) and what became of each task."""

    root: str
    name: str
    ids: list[str]
    outcomes: dict[str, str] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)
    deadline: float = 0.0
    reported: bool = False


class TaskscopeApp(App[int]):
    """htop for asyncio tasks: watch a process's tasks live and cancel the stuck ones."""

    CSS_PATH = "app.tcss"
    TITLE = "taskscope"
    ENABLE_COMMAND_PALETTE = False

    # Pause comes first: the footer lists keys in this order and cuts off what does not fit.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_pause", "Pause", priority=True, key_display="space"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("s", "cycle_sort", "Sort"),
        Binding("t", "view('tree')", "Tree"),
        Binding("l", "view('table')", "List"),
        Binding("g", "view('groups')", "Grouped"),
        Binding("h", "view('history')", "History"),
        Binding("f", "toggle_finished", "Finished"),
        Binding("c", "cancel_task", "Cancel"),
        Binding("C", "cancel_subtree", "Cancel subtree", key_display="C"),
        Binding("e", "export", "Export JSON"),
        Binding("y", "copy_task", "Copy task"),
    ]

    def __init__(
        self,
        source: TaskSource,
        *,
        interval: float = 0.5,
        clock: Callable[[], float] = time.time,
        export_dir: str | None = None,
        tree_limit: int = TREE_LIMIT,
        cancel_grace: float = CANCEL_GRACE,
        tick_seconds: float = TICK_SECONDS,
    ) -> None:
        super().__init__()
        self.source = source
        self.interval = interval
        self.clock = clock
        self.export_dir = export_dir or os.getcwd()
        self.tree_limit = tree_limit
        self.cancel_grace = cancel_grace
        self.tick_seconds = tick_seconds
        self.model = TaskModel()
        self.buffer = UpdateBuffer()
        self.options = ViewOptions()
        self.view: ViewName = "tree"
        self.paused = False
        self.gone: str | None = None
        #: The feed ended on a lost connection while the process still looked alive.
        self._exit_unconfirmed = False
        self.received_at: float | None = None
        self.facts: ProcessInfo = {"pid": source.pid}
        self.selected: str | None = None
        self.updates_applied = 0
        self.last_apply_seconds = 0.0
        self.auto_grouped = False
        self.cancels: list[CancelRequest] = []
        self._dirty: set[ViewName] = set(VIEWS)
        self._can_cancel = False
        #: The slices of an update still to apply to the tree: (changed, removed) task ids.
        self._slices: list[tuple[list[str], list[str]]] = []
        self._slices_started = 0.0
        self._stack_timer: Timer | None = None
        self._filter_timer: Timer | None = None
        # Widgets are made here, not looked up: timers and workers may still fire while the
        # app shuts down, when a query would find nothing.
        self._tree = TaskTree(self.clock, limit=self.tree_limit, id="tree")
        self._table = TaskTable(self.clock, id="table")
        self._groups = GroupTable(id="groups")
        self._history = HistoryTable(self.clock, id="history")
        self._views: dict[ViewName, TaskTree | RowList] = {
            "tree": self._tree,
            "table": self._table,
            "groups": self._groups,
            "history": self._history,
        }
        self._switcher = ContentSwitcher(initial="tree", id="views")
        self._detail = DetailPane(self.clock, id="detail")
        self._header = ProcessHeader(id="header")
        self._filter_box = Input(
            placeholder="filter by name, coroutine or what a task awaits; Enter keeps it, "
            "Esc clears it",
            id="filter",
        )

    # --- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield self._header
        with Horizontal(id="main"):
            with self._switcher:
                yield from self._views.values()
            yield self._detail
        yield self._filter_box
        yield Footer()

    @property
    def task_tree(self) -> TaskTree:
        return self._tree

    @property
    def detail(self) -> DetailPane:
        return self._detail

    @property
    def header(self) -> ProcessHeader:
        return self._header

    def on_mount(self) -> None:
        self._filter_box.display = False
        self._switcher.border_title = VIEW_TITLES["tree"]
        self._switcher.border_subtitle = VIEW_LEGENDS["tree"]
        self.task_tree.focus()
        self.detail.show(self.model, None)
        self._refresh_header()
        self._feed()
        self._read_facts()
        self.set_interval(self.tick_seconds, self._tick)
        self.set_interval(max(1.0, self.tick_seconds), self._read_facts)

    def on_unmount(self) -> None:
        self.source.close()
        gc.unfreeze()

    # --- the feed ------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="feed")
    def _feed(self) -> None:
        worker = get_current_worker()
        try:
            for kind, payload in self.source.subscribe(self.interval):
                if worker.is_cancelled:
                    return
                if kind == "snapshot":
                    self.buffer.put_snapshot(payload)  # type: ignore[arg-type]
                else:
                    self.buffer.put_delta(payload)  # type: ignore[arg-type]
                self.post_message(FeedUpdated())
        except ClientError as error:
            if not worker.is_cancelled:
                reason = self._end_reason(str(error))
                exited = reason == self._exited_reason()
                self.post_message(FeedEnded(reason, exit_unconfirmed=not exited))
        except Exception as error:  # a bug or a broken source: say so, keep the last picture
            if not worker.is_cancelled:
                self.post_message(FeedEnded(f"the update feed failed: {error!r}"))
        else:
            if not worker.is_cancelled:
                self.post_message(FeedEnded("the agent stopped sending updates"))

    def _end_reason(self, error: str) -> str:
        """Say "process N exited" when it did: the socket error alone can race the exit."""
        try:
            alive = self.source.process_info().get("alive")
        except Exception:  # the facts are a nicety here
            return error
        return self._exited_reason() if alive is False else error

    def _exited_reason(self) -> str:
        return f"process {self.source.pid} exited"

    @on(FeedUpdated)
    def _feed_updated(self) -> None:
        if not self.paused and not self._slices:
            self._apply_in_slices()

    @on(FeedEnded)
    def _feed_ended(self, message: FeedEnded) -> None:
        if self.buffer or self._slices:
            self.apply_pending()
        self.gone = message.reason
        self._exit_unconfirmed = message.exit_unconfirmed
        self.notify(
            safe_text(message.reason), title="Updates stopped", severity="error", timeout=10
        )
        self._refresh_header()
        self.refresh_bindings()

    def apply_pending(self) -> bool:
        """Apply whatever the feed folded since the last time, all at once (an update being
        applied in slices is finished first). False if there was nothing."""
        finished = self._finish_slices()
        update = self.buffer.take()
        if update is None:
            return finished
        started = time.perf_counter()
        with self.batch_update():
            full = update.snapshot is not None
            update.apply_to(self.model)
            self._sync_views(full)
            self._after_update(full, started)
        return True

    def _apply_in_slices(self) -> None:
        """Apply the feed's update to the tree a slice of tasks at a time, each slice its own
        message: a key that lands meanwhile is answered after the slice under way, not after
        the whole update. (Snapshots, and views rebuilt whole, go at once.)"""
        update = self.buffer.take()
        if update is None:
            return
        started = time.perf_counter()
        full = update.snapshot is not None
        if full or self.view != "tree" or "tree" in self._dirty or self.task_tree.overflow:
            with self.batch_update():
                update.apply_to(self.model)
                self._sync_views(full)
                self._after_update(full, started)
            return
        update.apply_to(self.model)
        self._dirty = set(VIEWS) - {"tree"}
        nodes = self.task_tree.node_for
        changed = sorted(
            self.model.last_changed, key=lambda task_id: (nodes(task_id) is None, _number(task_id))
        )
        removed = list(self.model.last_removed)
        # Tasks whose line only changed cost a check each; what adds or removes lines (and so
        # lays the tree out again: new tasks are sorted last) comes in the last slice, with the
        # one repaint.
        last = max(0, len(changed) - SLICE_TASKS)
        self._slices = [
            (changed[start : start + SLICE_TASKS], removed if start >= last else [])
            for start in range(0, max(1, len(changed)), SLICE_TASKS)
        ]
        self._slices_started = started
        self._apply_slice()

    @on(UpdateSliceDue)
    def _apply_slice(self) -> None:
        if not self._slices:
            return
        changed, removed = self._slices.pop(0)
        with self.batch_update():
            self.task_tree.apply_changes(self.model, changed, removed, repaint=not self._slices)
            if not self._slices:
                self._after_update(False, self._slices_started)
        if self._slices:
            # Posted from the event loop, not from here: the app's queue then runs dry, and
            # the widgets' own tasks (the key forwarded to the tree) run before the next slice.
            asyncio.get_running_loop().call_soon(self.post_message, UpdateSliceDue())
        elif self.buffer and not self.paused:
            self.post_message(FeedUpdated())  # more arrived while this one was applied

    def _finish_slices(self) -> bool:
        """Apply what is left of an update under way at once. False if none was."""
        if not self._slices:
            return False
        with self.batch_update():
            while self._slices:
                changed, removed = self._slices.pop(0)
                self.task_tree.apply_changes(self.model, changed, removed)
            self._after_update(False, self._slices_started)
        return True

    def _after_update(self, full: bool, started: float) -> None:
        """What follows an update once the views have it: counts, detail, header, cancels."""
        self.received_at = self.clock()
        self.updates_applied += 1
        self._maybe_auto_group()
        self._check_cancels()
        self._refresh_detail()
        self._refresh_header()
        self._update_bindings()
        if self.selected is not None and self.selected in self.model.last_changed:
            self._schedule_stack(self.selected)
        if full:
            # What a full picture made (records, nodes, Textual's own widgets) lives long: out
            # of the garbage collector's full passes, which otherwise walk all of it (30-250 ms
            # at 10,000 tasks here) and hold up a key. Objects still go when no longer
            # referenced; on_unmount gives them back to the collector.
            gc.freeze()
        self.last_apply_seconds = time.perf_counter() - started

    def _maybe_auto_group(self) -> None:
        if self.auto_grouped or self.view != "tree" or len(self.model.tasks) <= self.tree_limit:
            return
        pending = sum(1 for task in self.model.tasks.values() if not task.finished)
        if pending > self.tree_limit:
            self.auto_grouped = True
            self._switch_view("groups")
            self.notify(
                f"{pending:,} tasks: showing the grouped view (the tree takes up to "
                f"{self.tree_limit:,}; / filters, t forces the tree)",
                title="Many tasks",
                timeout=8,
            )

    def _sync_views(self, full: bool) -> None:
        """Update the active view by task id; the others are rebuilt when next shown."""
        view = self.view
        if view == "tree" and not full and "tree" not in self._dirty:
            self.task_tree.apply_changes(
                self.model, self.model.last_changed, self.model.last_removed
            )
        else:
            self._rebuild_view(view)
        self._dirty = set(VIEWS) - {view}

    def _rebuild_view(self, view: ViewName) -> None:
        if view == "tree":
            self.task_tree.rebuild(self.model, self.options)
        elif view == "table":
            self._table.update_rows(self.model, self.options)
        elif view == "groups":
            self._groups.update_rows(self.model, self.options)
        else:
            self._history.update_rows(self.model, self.options)
        self._dirty.discard(view)

    def _rebuild_all(self) -> None:
        self._finish_slices()
        self._dirty = set(VIEWS)
        self._rebuild_view(self.view)

    def _tick(self) -> None:
        """Once a second: ages and data age move on even without updates."""
        with self.batch_update():
            if self.view == "tree":
                self.task_tree.expire()
                self.task_tree.tick()
            else:
                self._views[self.view].refresh()
            if not self.paused:
                self._check_cancels()
            self._refresh_detail()
            self._refresh_header()

    @work(thread=True, exclusive=True, group="facts")
    def _read_facts(self) -> None:
        try:
            info = self.source.process_info()
        except Exception:  # facts are decoration: never let them break the app
            return
        self.post_message(FactsRead(info))

    @on(FactsRead)
    def _facts_read(self, message: FactsRead) -> None:
        # Keep what was known (command line, memory) once the process is gone.
        self.facts = {**self.facts, **message.info}
        if self._exit_unconfirmed and message.info.get("alive") is False:
            # The connection ended before the process was seen gone: now it is, say so.
            self._exit_unconfirmed = False
            self.gone = self._exited_reason()
            self.notify(self.gone, title="Updates stopped", severity="error", timeout=10)
        self._refresh_header()

    def _refresh_header(self) -> None:
        age = None if self.received_at is None else max(0.0, self.clock() - self.received_at)
        notice = ""
        if self.options.only_ids is not None:
            notice = f"group: {self.options.only_label} (Esc shows all)"
        elif self.options.filter:
            notice = f"filter: {safe_text(self.options.filter)} (Esc clears)"
        if self.options.sort != "age":
            notice = (notice + " · " if notice else "") + f"sorted by {self.options.sort}"
        if not self.options.show_finished:
            notice = (notice + " · " if notice else "") + "finished tasks hidden"
        self.header.show(
            self.model if self.received_at is not None else None,
            self.facts,
            age,
            paused=self.paused,
            gone=self.gone,
            notice=notice,
        )

    # --- selection and the detail pane ---------------------------------------------------------

    @on(TaskTree.TaskHighlighted)
    def _tree_highlighted(self, message: TaskTree.TaskHighlighted) -> None:
        if self.view == "tree":
            self._select(message.task_id)

    @on(RowList.RowHighlighted)
    def _row_highlighted(self, message: RowList.RowHighlighted) -> None:
        if message.row_list.id != self.view:
            return
        self._select(message.key if self.view in ("table", "history") else None)

    @on(RowList.RowChosen, "#groups")
    def _group_chosen(self, message: RowList.RowChosen) -> None:
        groups = self._groups
        row = groups.groups[message.key]
        self.options = ViewOptions(
            filter="",
            show_finished=self.options.show_finished,
            sort=self.options.sort,
            only_ids=frozenset(row.ids),
            only_label=f"{row.count:,} x {safe_text(row.coro)}() {safe_text(row.what)}",
        )
        self._rebuild_all()
        self._switch_view("table")
        self._refresh_header()

    @on(DetailPane.TaskLinkChosen)
    def _link_chosen(self, message: DetailPane.TaskLinkChosen) -> None:
        self.jump_to(message.task_id)

    def jump_to(self, task_id: str) -> bool:
        """Select a task in the tree (or the table when the tree is not usable)."""
        target: ViewName = "table" if self.task_tree.overflow else "tree"
        if self.view in ("tree", "table"):
            target = self.view
        if self.view != target:
            self._switch_view(target)
        found = (
            self.task_tree.select_task(task_id)
            if target == "tree"
            else self._table.select_key(task_id)
        )
        if not found:
            name = (
                safe_text(self.model.tasks[task_id].name)
                if task_id in self.model.tasks
                else task_id
            )
            self.notify(
                f"{name} is not shown (filter or finished tasks hidden); Esc clears the filter",
                severity="warning",
            )
            return False
        self._select(task_id)
        self._views[target].focus()
        return True

    def _select(self, task_id: str | None) -> None:
        if task_id == self.selected:
            return
        self.selected = task_id
        self._refresh_detail()
        self._update_bindings()
        if task_id is not None:
            self._schedule_stack(task_id)

    def _update_bindings(self) -> None:
        """Refresh the footer only when the cancel keys change state: the footer rebuilds
        all its keys on every refresh, which would cost more than the cursor move itself."""
        can_cancel = self.check_action("cancel_task", ()) is True
        if can_cancel != self._can_cancel:
            self._can_cancel = can_cancel
            self.refresh_bindings()

    def _refresh_detail(self) -> None:
        self.detail.show(self.model, self.selected)

    def _schedule_stack(self, task_id: str) -> None:
        if self._stack_timer is not None:
            self._stack_timer.stop()
        self._stack_timer = self.set_timer(0.2, lambda: self._fetch_stack(task_id))

    @work(thread=True, exclusive=True, group="stack")
    def _fetch_stack(self, task_id: str) -> None:
        if self.gone is not None:
            return
        task = self.model.tasks.get(task_id)
        if task is None or task.finished:
            return
        try:
            reply = self.source.stack(task_id)
        except ClientError:
            return
        self.post_message(StackFetched(task_id, reply))

    @on(StackFetched)
    def _stack_fetched(self, message: StackFetched) -> None:
        self.detail.set_stack(message.task_id, message.reply)
        self._refresh_detail()

    def selected_task(self) -> TaskInfo | None:
        """The task under the active view's cursor, read from the view itself: the highlight
        message that updates `selected` may still wait in the queue behind the key asking
        (a fast `down` then `c` must cancel the task the cursor is on, not the one before)."""
        task_id = self.selected
        if self.view == "tree":
            task_id = self.task_tree.selected_task
        elif self.view in ("table", "history"):
            view = self._views[self.view]
            if isinstance(view, RowList):
                task_id = view.cursor_key
        return self.model.tasks.get(task_id) if task_id is not None else None

    # --- actions -------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_pause":
            # Space types into the filter box; it pauses everywhere else.
            return not isinstance(self.focused, Input)
        if action in ("cancel_task", "cancel_subtree"):
            task = self.selected_task()
            if self.gone is not None or task is None or task.finished:
                return None
        if action == "clear_filter":
            return bool(
                self.options.filter or self.options.only_ids is not None or self._filter_box.display
            )
        if action == "export" and self.gone is not None:
            return None
        return True

    def action_help(self) -> None:
        keys = [
            (binding.key_display or binding.key, HELP.get(binding.action, binding.description))
            for binding in self.BINDINGS
            if isinstance(binding, Binding)
        ]
        self.push_screen(HelpScreen(keys))

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self.apply_pending()
        self.notify(
            "Live updates paused (space resumes)" if self.paused else "Live updates resumed",
            timeout=2,
        )
        self._refresh_header()

    def action_view(self, view: ViewName) -> None:
        if view in VIEWS:
            self._switch_view(view)

    def _switch_view(self, view: ViewName) -> None:
        self._finish_slices()
        self.view = view
        switcher = self._switcher
        switcher.current = view
        switcher.border_title = VIEW_TITLES[view]
        switcher.border_subtitle = VIEW_LEGENDS.get(view, "")
        if view in self._dirty:
            self._rebuild_view(view)
        widget = self._views[view]
        widget.focus()
        if view == "tree":
            self._select(self.task_tree.selected_task)
        elif view == "table":
            self._select(self._table.cursor_key)
        elif view == "history":
            self._select(self._history.cursor_key)
        else:
            self._select(None)

    def action_cycle_sort(self) -> None:
        index = SORT_ORDER.index(self.options.sort)
        sort = SORT_ORDER[(index + 1) % len(SORT_ORDER)]
        self._set_options(sort=sort)
        self.notify(f"Sorted by {sort}", timeout=2)

    def action_toggle_finished(self) -> None:
        show = not self.options.show_finished
        self._set_options(show_finished=show)
        self.notify(
            "Showing recently finished tasks"
            if show
            else "Hiding finished tasks (h shows the history)",
            timeout=2,
        )

    def _set_options(self, **changes: Any) -> None:
        self.options = dataclasses.replace(self.options, **changes)
        self._rebuild_all()
        self._refresh_header()

    def action_filter(self) -> None:
        box = self._filter_box
        box.display = True
        box.focus()
        self.refresh_bindings()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        value = event.value
        self._filter_timer = self.set_timer(0.15, lambda: self._apply_filter(value))

    def _apply_filter(self, value: str) -> None:
        if value != self.options.filter:
            self._set_options(filter=value)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._apply_filter(event.value)
        if not event.value:
            event.input.display = False
        self._views[self.view].focus()

    def action_clear_filter(self) -> None:
        box = self._filter_box
        if self._filter_timer is not None:
            self._filter_timer.stop()
        box.value = ""
        box.display = False
        self._set_options(filter="", only_ids=None, only_label="")
        self._views[self.view].focus()

    # --- cancelling ----------------------------------------------------------------------------

    def action_cancel_task(self) -> None:
        self._confirm_cancel(subtree=False)

    def action_cancel_subtree(self) -> None:
        self._confirm_cancel(subtree=True)

    def _confirm_cancel(self, subtree: bool) -> None:
        task = self.selected_task()
        if task is None or task.finished or self.gone is not None:
            return
        name = safe_text(task.name, 40)
        what = f"{safe_text(task.coro, 40)}(), {state_words(task, self.clock())}"
        if subtree:
            ids = [
                task_id
                for task_id in self.model.subtree(task.id)
                if not self.model.tasks[task_id].finished
            ]
            count = len(ids)
            question = (
                f"Cancel {name} and everything under it: {count} "
                f"task{'s' if count != 1 else ''} ({what})?"
            )
            names = [safe_text(self.model.tasks[task_id].name, 30) for task_id in ids[1:9]]
            detail = ("also: " + ", ".join(names) + (" …" if count > 9 else "")) if names else ""
        else:
            ids = [task.id]
            question = f"Cancel {name} ({what})?"
            detail = ""

        warning = self._ends_program(task, name)

        def answered(yes: bool | None) -> None:
            if yes:
                request = CancelRequest(root=task.id, name=name, ids=ids)
                self.cancels.append(request)
                self._send_cancel(request)
            else:
                self.notify(f"{name} not cancelled", timeout=2)

        self.push_screen(CancelDialog(question, detail, warning), answered)

    def _ends_program(self, task: TaskInfo, name: str) -> str:
        """A plain warning when cancelling `task` ends the program (or its thread's loop):
        it is the task `asyncio.run` drives, or every other task runs under it."""
        for loop in self.model.loops.values():
            if loop.main_task == task.id:
                if loop.thread_name in (None, "MainThread"):
                    ends = f"the program (process {self.source.pid})"
                else:
                    ends = f"the event loop of thread {safe_text(loop.thread_name, 30)}"
                return f"⚠ This ends {ends}: {name} is the main task, the one asyncio.run drives."
        others = {other.id for other in self.model.pending()} - {task.id}
        if others and others <= set(self.model.subtree(task.id)):
            return (
                f"⚠ This will likely end the program (process {self.source.pid}): every other "
                f"task runs under {name}."
            )
        return ""

    @work(thread=True, group="commands")
    def _send_cancel(self, request: CancelRequest) -> None:
        # Innermost tasks first: a parent's own cleanup then sees its children already gone.
        # The request itself belongs to the UI thread: answers travel in the message.
        outcomes: dict[str, str] = {}
        for task_id in reversed(request.ids):
            try:
                outcomes[task_id] = self.source.cancel(task_id)
            except ClientError as error:
                outcomes[task_id] = f"error: {error}"
        self.post_message(CancelFinished(request, outcomes))

    @on(CancelFinished)
    def _cancel_finished(self, message: CancelFinished) -> None:
        request = message.request
        request.deadline = self.clock() + self.cancel_grace
        request.outcomes = message.outcomes
        for task_id, outcome in request.outcomes.items():
            if outcome == "requested":
                self.detail.cancel_status[task_id] = "cancel requested…"
            elif outcome == "already_finished":
                request.results[task_id] = "already finished"
            elif outcome == "no_such_task":
                request.results[task_id] = "gone"
            else:
                request.results[task_id] = outcome
        errors = [outcome for outcome in request.outcomes.values() if outcome.startswith("error")]
        if errors:
            self.notify(safe_text(errors[0]), title="Cancel failed", severity="error")
        self._check_cancels()
        self._refresh_detail()

    def _check_cancels(self) -> None:
        """Turn each requested cancellation into an outcome: cancelled, finished otherwise,
        or still running after the grace period because the task ignored it."""
        now = self.clock()
        for request in self.cancels:
            if request.reported or not request.outcomes:
                continue
            for task_id in request.ids:
                if task_id in request.results:
                    continue
                task = self.model.tasks.get(task_id)
                if task is None:
                    request.results[task_id] = "gone"
                elif task.state == "cancelled":
                    request.results[task_id] = "cancelled"
                elif task.finished:
                    request.results[task_id] = task.state
                elif now >= request.deadline:
                    request.results[task_id] = "still running"
            if len(request.results) == len(request.ids):
                self._report_cancel(request)

    def _report_cancel(self, request: CancelRequest) -> None:
        request.reported = True
        for task_id, result in request.results.items():
            status = {
                "cancelled": "⊘ cancelled",
                "still running": "! still running after the cancel: it ignored the "
                "cancellation or is still cleaning up",
            }
            self.detail.cancel_status[task_id] = status.get(result, result)
        if len(request.ids) == 1:
            result = request.results[request.root]
            if result == "still running":
                self.notify(
                    f"{request.name} is still running {self.cancel_grace:.0f} s after the cancel: "
                    "it caught CancelledError and carried on, or is still cleaning up "
                    "(a TaskGroup waits for its tasks)",
                    title="Still running",
                    severity="warning",
                    timeout=8,
                )
            else:
                self.notify(f"{request.name}: {result}", title="Cancelled", timeout=5)
        else:
            tally: dict[str, int] = {}
            for result in request.results.values():
                tally[result] = tally.get(result, 0) + 1
            stubborn = [
                safe_text(self.model.tasks[task_id].name, 20)
                for task_id, result in request.results.items()
                if result == "still running" and task_id in self.model.tasks
            ]
            text = ", ".join(f"{count} {result}" for result, count in sorted(tally.items()))
            if stubborn:
                text += f" ({', '.join(stubborn[:5])})"
            self.notify(
                f"{request.name} and its subtree: {text}",
                title="Cancelled",
                severity="warning" if stubborn else "information",
                timeout=8,
            )
        self._refresh_detail()

    # --- export --------------------------------------------------------------------------------

    def action_copy_task(self) -> None:
        task = self.selected_task()
        if task is None:
            self.notify("No task selected", severity="warning", timeout=3)
            return
        # OSC 52: the terminal puts it on the system clipboard (most terminals, over ssh too).
        self.copy_to_clipboard(task_text(task, self.model, self.source.pid))
        self.notify(f"Task {task.id} ({safe_text(task.name, 40)}) copied", timeout=3)

    def action_export(self) -> None:
        self._export()

    @work(thread=True, group="commands")
    def _export(self) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.clock()))
        path = os.path.join(self.export_dir, f"taskscope-{self.source.pid}-{stamp}.json")
        try:
            snapshot = self.source.snapshot()
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(snapshot, handle, ensure_ascii=False, indent=1)
        except (ClientError, OSError) as error:
            self.post_message(ExportFinished(None, str(error)))
            return
        self.post_message(ExportFinished(path, None))

    @on(ExportFinished)
    def _export_finished(self, message: ExportFinished) -> None:
        if message.error is not None:
            self.notify(safe_text(message.error), title="Export failed", severity="error")
        else:
            self.notify(
                f"Snapshot written to {safe_text(message.path or '')}", title="Exported", timeout=6
            )

    async def action_quit(self) -> None:
        self.exit(0)


def run_dashboard(
    pid: int, interval: float = 0.5, timeout: float = 10.0, socket_dir: str | None = None
) -> int:
    """`taskscope attach PID`: run the dashboard on the real process until the user quits."""
    source = AgentSource(pid, timeout=timeout, socket_dir=socket_dir)
    app = TaskscopeApp(source, interval=interval)
    try:
        result = app.run()
    except KeyboardInterrupt:
        return 130
    finally:
        source.close()
    return result if result is not None else 0


def _number(task_id: str) -> int:
    return int(task_id) if task_id.isdigit() else 0
