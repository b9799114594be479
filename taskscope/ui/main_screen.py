"""The dashboard's main screen: the header, the task views (tree, flat table, grouped,
history) and their switching, the detail pane, the filter box and the footer.

It applies the feed's updates to the model and the active view (the tree a slice of tasks at a
time, so that a key landing meanwhile is answered soon), follows the selection (fetching its
stack), and asks and reports cancellations through `CancelFlow`. The header and the detail
pane follow one signal, `ModelChanged`, posted whenever what they show may have changed: the
model, the selection, the options, the process facts, a cancellation's progress.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input

from taskscope.model import TaskInfo, TaskModel
from taskscope.protocol import StackReply
from taskscope.report import read_only_words, safe_text, task_text
from taskscope.sources import Capability, ClientError
from taskscope.ui import long_lived
from taskscope.ui.cancel_dialog import CancelDialog
from taskscope.ui.cancel_flow import CancelFlow, CancelRequest, Progress, ask, refused
from taskscope.ui.detail_pane import DetailPane
from taskscope.ui.process_header import LoopTrends, ProcessHeader
from taskscope.ui.row_list import RowList
from taskscope.ui.screen_updates import clusters
from taskscope.ui.task_display import ViewOptions, has_figures, next_sort, state_words
from taskscope.ui.task_tree import TaskTree
from taskscope.ui.views import VIEWS, TaskViews, ViewName, focus_now
from taskscope.ui.warnings import WARNINGS_EVERY, Warnings, look, model_copy

if TYPE_CHECKING:
    from taskscope.ui.app import TaskscopeApp


#: What the detail pane says in the stalls view with no stall under the cursor.
STALL_HINT = "Select a stall to see the stack sampled while it blocked the loop."
#: The cancellation message of a cancel from the dashboard (the task sees it).
CANCEL_MESSAGE = "cancelled from the taskscope dashboard"
#: Seconds after a key moved a cursor within which its changes are drawn at once, not at
#: the next frame timer's tick (and the collector waits: `long_lived.hold_for_key`).
KEY_FRAME_WAIT = 0.25


class FeedUpdated(Message):
    """New data is waiting in the update buffer. At most one is ever pending."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FeedUpdated)


class UpdateSliceDue(Message):
    """The next slice of an update being applied is due (keys that came meanwhile go first)."""


class ModelChanged(Message):
    """What the header or the detail pane shows may have changed. At most one is pending:
    however many changes came meanwhile, they are shown once."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ModelChanged)


class StackFetched(Message):
    def __init__(self, task_id: str, reply: StackReply) -> None:
        super().__init__()
        self.task_id = task_id
        self.reply = reply


class WarningsFound(Message):
    """A look for warnings (on a worker thread) is over."""

    def __init__(self, warnings: Warnings) -> None:
        super().__init__()
        self.warnings = warnings


class CancelFinished(Message):
    """The agent answered every cancel request of one confirmation."""

    def __init__(self, request: CancelRequest, outcomes: dict[str, str]) -> None:
        super().__init__()
        self.request = request
        self.outcomes = outcomes


class MainScreen(Screen[None]):
    """The views of one process's tasks, with the header, the detail pane and the footer."""

    # Pause comes first: the footer lists keys in this order and cuts off what does not fit.
    # The keys that work on every screen are the app's actions (and the app's bindings too).
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "app.toggle_pause", "Pause", priority=True, key_display="space"),
        Binding("q", "app.quit", "Quit"),
        Binding("ctrl+c", "app.quit", "Quit", show=False, priority=True),
        Binding("question_mark", "app.help", "Help", key_display="?"),
        # Priority: run when the app takes the key, before the keys typed after it are handed
        # out (`/slow` in one write must land in the box, not run s, l, o, w).
        Binding("slash", "filter", "Filter", key_display="/", priority=True),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("w", "next_worker", "Worker", show=False),
        Binding("s", "cycle_sort", "Sort"),
        Binding("t", "view('tree')", "Tree"),
        Binding("l", "view('table')", "List"),
        Binding("g", "view('groups')", "Grouped"),
        Binding("h", "view('history')", "History"),
        Binding("b", "view('stalls')", "Stalls"),
        Binding("f", "toggle_finished", "Finished"),
        Binding("exclamation_mark", "toggle_warned", "Warnings", key_display="!"),
        Binding("c", "cancel_task", "Cancel"),
        Binding("C", "cancel_subtree", "Cancel subtree", key_display="C"),
        Binding("e", "app.export", "Export JSON"),
        Binding("y", "copy_task", "Copy task"),
    ]

    def __init__(self, dashboard: TaskscopeApp) -> None:
        super().__init__()
        #: Below 100 columns the views take more of the width from the detail pane (app.tcss).
        self.HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
        self.dashboard = dashboard
        self.clock = dashboard.clock
        self.model: TaskModel = dashboard.model
        self.options = ViewOptions()
        self.selected: str | None = None
        #: The stall under the stalls view's cursor (its row key).
        self.selected_stall: str | None = None
        #: The warnings of the last look, when it was (monotonic) and whether the model
        #: changed since.
        self.warnings = Warnings()
        self._warnings_looked = 0.0
        self._warnings_stale = False
        #: Looks for warnings finished (tests wait for the first).
        self.warnings_looks = 0
        self.received_at: float | None = None
        self.updates_applied = 0
        self.last_apply_seconds = 0.0
        self.auto_grouped = False
        self.cancel_flow = CancelFlow(dashboard.cancel_grace)
        self._can_cancel = False
        #: The header waits for the next ModelChanged to be shown again.
        self._header_stale = True
        self._stack_timer: Timer | None = None
        #: A key moved a cursor during an update: its next slice waits for the key's picture.
        self._slices_held = False
        #: When (monotonic) a key moved a cursor whose picture is not drawn yet, or None.
        self._key_frame_due: float | None = None
        self._filter_timer: Timer | None = None
        # Widgets are made here, not looked up: timers and workers may still fire while the
        # app shuts down, when a query would find nothing.
        self.views = TaskViews(self.clock, dashboard.tree_limit)
        self.views.follow(self._cursor_moved)
        self._detail = DetailPane(self.clock, id="detail")
        self._header = ProcessHeader(id="header")
        self.trends = LoopTrends(id="trends")
        self._filter_box = Input(
            placeholder="filter by name, coroutine or what a task awaits; Enter keeps it, "
            "Esc clears it",
            id="filter",
        )
        self._filter_box.display = False

    # --- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield self._header
        yield self.trends
        if self.dashboard.timeline is not None:  # a replay's timeline, under the header
            yield self.dashboard.timeline
        with Horizontal(id="main"):
            with self.views.switcher:
                yield from self.views.widgets.values()
            yield self._detail
        yield self._filter_box
        yield Footer()

    @property
    def view(self) -> ViewName:
        return self.views.current

    @property
    def task_tree(self) -> TaskTree:
        return self.views.tree

    @property
    def detail(self) -> DetailPane:
        return self._detail

    @property
    def header(self) -> ProcessHeader:
        return self._header

    @property
    def cancels(self) -> list[CancelRequest]:
        return self.cancel_flow.requests

    def on_mount(self) -> None:
        self.views.label()
        if self.focused is None:  # a / typed before the screen was up has the filter box
            focus_now(self.task_tree)
        self._show_changes()
        self.set_interval(self.dashboard.tick_seconds, self._tick)
        self.dashboard.start_feed()

    # --- the one signal the header and the detail pane follow ----------------------------------

    def changed(self, *, header: bool = True) -> None:
        """Say that what the detail pane shows may have changed, and unless `header` is
        False (the selection, a stack, a cancel's progress) what the header shows too: the
        header counts every task, which a cursor move must not pay for."""
        self._header_stale = self._header_stale or header
        self.post_message(ModelChanged())

    @on(ModelChanged)
    def _show_changes(self) -> None:
        if self._header_stale:
            self._header_stale = False
            self._show_header()
        if self.view == "stalls":
            stall = self.views.stalls.stall(self.selected_stall)
            self.detail.show(self.model, None, stall=stall, hint=STALL_HINT)
            return
        warned = self.warnings.by_task.get(self.selected, ()) if self.selected else ()
        self.detail.show(self.model, self.selected, warnings=warned)

    def _show_header(self) -> None:
        age = None if self.received_at is None else max(0.0, self.clock() - self.received_at)
        notice = ""
        if self.options.only_ids is not None:
            notice = f"group: {self.options.only_label} (Esc shows all)"
        elif self.options.only_pid is not None:
            notice = f"worker {self.options.only_pid} only (w: next, Esc shows all)"
        elif self.options.filter:
            notice = f"filter: {safe_text(self.options.filter)} (Esc clears)"
        if self.options.only_warned is not None:
            notice = (notice + " · " if notice else "") + "only tasks with warnings (! shows all)"
        if self.options.sort != "age":
            notice = (notice + " · " if notice else "") + f"sorted by {self.options.sort}"
        if not self.options.show_finished:
            notice = (notice + " · " if notice else "") + "finished tasks hidden"
        if self.model.read_only:
            notice = (notice + " · " if notice else "") + read_only_words(self.model.read_only)
        self.header.show(
            self.model if self.received_at is not None else None,
            self.dashboard.facts,
            age,
            paused=self.dashboard.paused,
            gone=self.dashboard.gone,
            notice=notice,
            moment=self.dashboard.moment_text(),
            warnings=self.warnings.summary,
        )

    # --- applying updates ----------------------------------------------------------------------

    def feed_updated(self) -> None:
        """The app's `FeedUpdated`: apply what came, unless paused or an update is under way
        (or held for a key's picture: `_hold_slices` takes it up again)."""
        if not self.dashboard.paused and not self.views.slices and not self._slices_held:
            self._apply_in_slices()

    def _hold_slices(self) -> None:
        """A key moved a cursor: apply no more of the update under way until the screen shows
        the key's effect. (Called while the view handles the key: the view's own message
        queue takes the callback after the key, and the screen runs it once it has drawn
        what the key changed.)"""
        if self._slices_held or not (self.views.slices or self.dashboard.buffer):
            return
        self._slices_held = True
        self.views.shown.call_after_refresh(self._release_slices)

    def _release_slices(self) -> None:
        self._slices_held = False
        if self.views.slices:
            self.app.post_message(UpdateSliceDue())
        elif self.dashboard.buffer and not self.dashboard.paused:
            self.app.post_message(FeedUpdated())

    def apply_pending(self) -> bool:
        """Apply whatever the feed folded since the last time, all at once (an update being
        applied in slices is finished first). False if there was nothing."""
        finished = self.finish_slices()
        update = self.dashboard.buffer.take()
        if update is None:
            return finished
        started = time.perf_counter()
        with self.app.batch_update():
            full = update.snapshot is not None
            update.apply_to(self.model)
            self.views.sync(self.model, self.options, full)
            self._after_update(full, started)
        return True

    def _apply_in_slices(self) -> None:
        """Apply the feed's update to the tree a slice of tasks at a time, each slice its own
        message: a key that lands meanwhile is answered after the slice under way, not after
        the whole update. (Snapshots, and views rebuilt whole, go at once.)"""
        update = self.dashboard.buffer.take()
        if update is None:
            return
        started = time.perf_counter()
        full = update.snapshot is not None
        if not self.views.can_slice(full):
            with self.app.batch_update():
                update.apply_to(self.model)
                self.views.sync(self.model, self.options, full)
                self._after_update(full, started)
            return
        update.apply_to(self.model)
        self.views.plan_slices(self.model, started)
        self.apply_slice()

    def apply_slice(self) -> None:
        """The app's `UpdateSliceDue`: the next slice of the update under way."""
        if not self.views.slices or self._slices_held:
            return
        with self.app.batch_update():
            if self.views.apply_slice(self.model):
                self._after_update(False, self.views.slices_started)
        if self.views.slices:
            # Posted to the app, from the event loop, not from here: the app's queue then runs
            # dry, and the widgets' own tasks (the key forwarded to the tree) run before the
            # next slice (which waits for the key's picture if the key moved a cursor).
            asyncio.get_running_loop().call_soon(self.app.post_message, UpdateSliceDue())
        elif self.dashboard.buffer and not self.dashboard.paused:
            self.app.post_message(FeedUpdated())  # more arrived while this one was applied

    def finish_slices(self) -> bool:
        """Apply what is left of an update under way at once. False if none was."""
        if not self.views.slices:
            return False
        with self.app.batch_update():
            self.views.apply_all_slices(self.model)
            self._after_update(False, self.views.slices_started)
        return True

    def _after_update(self, full: bool, started: float) -> None:
        """What follows an update once the views have it: counts, detail, header, cancels."""
        self.received_at = self.clock()
        self.updates_applied += 1
        self.trends.record(self.model)  # one sample per loop and update
        self._warnings_stale = True
        if not self._warnings_looked:
            self._look_for_warnings()  # the first picture: at once
        self.dashboard.feed_applied()
        self._maybe_auto_group()
        self._check_cancels()
        self.changed()
        self._update_bindings()
        if self.selected is not None and self.selected in self.model.last_changed:
            self._schedule_stack(self.selected)
        if full:
            # What a full picture made lives long: out of the collector's full passes,
            # which otherwise walk all of it and hold up a key (taskscope.ui.long_lived).
            long_lived.keep()
        self.last_apply_seconds = time.perf_counter() - started

    def _maybe_auto_group(self) -> None:
        limit = self.dashboard.tree_limit
        if self.auto_grouped or self.view != "tree" or len(self.model.tasks) <= limit:
            return
        pending = sum(1 for task in self.model.tasks.values() if not task.finished)
        if pending > limit:
            self.auto_grouped = True
            self._switch_view("groups")
            self.notify(
                f"{pending:,} tasks: showing the grouped view (the tree takes up to "
                f"{limit:,}; / filters, t forces the tree)",
                title="Many tasks",
                timeout=8,
            )

    def _rebuild_all(self) -> None:
        self.finish_slices()
        self.views.rebuild_all(self.model, self.options)

    def _tick(self) -> None:
        """Once a second: ages and data age move on even without updates."""
        with self.app.batch_update():
            if self.view == "tree":
                self.task_tree.expire()
                self.task_tree.tick(within=self.dashboard.tick_seconds)
            else:
                self.views.shown.refresh()
            if not self.dashboard.paused:
                self._check_cancels()
            self.changed()
        if self._warnings_stale and time.monotonic() - self._warnings_looked >= WARNINGS_EVERY:
            self._look_for_warnings()

    # --- warnings ------------------------------------------------------------------------------

    def _look_for_warnings(self) -> None:
        """Look for warnings in a copy of the model on a worker thread: the lints walk every
        task, which the screen's thread must not pay for at each update."""
        self._warnings_stale = False
        self._warnings_looked = time.monotonic()
        self._find_warnings(model_copy(self.model))

    # A description of its own: Textual's is made of the arguments' repr, here every task of
    # the model in words (80 ms of the screen's thread at 10,000 tasks, every 2 seconds).
    @work(thread=True, exclusive=True, group="warnings", description="look for warnings")
    def _find_warnings(self, model: TaskModel) -> None:
        self.post_message(WarningsFound(look(model)))

    @on(WarningsFound)
    def _warnings_found(self, message: WarningsFound) -> None:
        self.warnings_looks += 1
        found = message.warnings
        if found == self.warnings:
            return
        ids_changed = found.task_ids != self.warnings.task_ids
        self.warnings = found
        if ids_changed:
            self.views.set_warned(found.task_ids, self.model, self.options)
            if self.options.only_warned is not None:
                self._set_options(only_warned=found.task_ids)
        self.changed()

    def action_toggle_warned(self) -> None:
        """Show only the tasks some warning is about, or all again."""
        if self.options.only_warned is not None:
            self._set_options(only_warned=None)
            self.notify("All tasks", timeout=2)
            return
        ids = self.warnings.task_ids
        self._set_options(only_warned=ids)
        self.notify(
            f"Only the {len(ids):,} tasks with warnings (! shows all)"
            if ids
            else "No task has a warning now (! shows all)",
            timeout=3,
        )

    # --- views and options ---------------------------------------------------------------------

    def action_view(self, view: ViewName) -> None:
        if view in VIEWS:
            self._switch_view(view)

    def _switch_view(self, view: ViewName) -> None:
        self.finish_slices()
        self.views.show(view, self.model, self.options)
        if view == "stalls":
            self.selected_stall = self.views.stalls.cursor_key
        self.changed(header=False)  # the detail pane shows a stall only in the stalls view
        self._select(self.views.cursor_task())

    def action_cycle_sort(self) -> None:
        sort = next_sort(self.options.sort, has_figures(self.model))
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
        # The rebuilt view may have put its cursor on another task without a highlight
        # message (same line, other task): the detail pane follows the cursor, not the past.
        cursor = self.views.cursor_task() if self.view != "groups" else self.selected
        self._select(cursor)
        self.changed()

    def action_filter(self) -> None:
        box = self._filter_box
        box.display = True
        focus_now(box)
        self.app.refresh_bindings()

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
        focus_now(self.views.shown)

    def action_clear_filter(self) -> None:
        box = self._filter_box
        if self._filter_timer is not None:
            self._filter_timer.stop()
        box.value = ""
        box.display = False
        self._set_options(filter="", only_ids=None, only_label="", only_pid=None, only_warned=None)
        focus_now(self.views.shown)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "filter":
            # A / typed into the filter box is part of the filter.
            return not isinstance(self.app.focused, Input)
        if action in ("cancel_task", "cancel_subtree"):
            task = self.selected_task()
            if self.dashboard.gone is not None or task is None or task.finished:
                return None
        if action == "clear_filter":
            return bool(
                self.options.filter
                or self.options.only_ids is not None
                or self.options.only_pid is not None
                or self.options.only_warned is not None
                or self._filter_box.display
            )
        if action == "next_worker":
            return bool(self.worker_pids())
        return True

    def worker_pids(self) -> list[int]:
        """The processes of a look at several (a parent and its workers), by pid; empty for
        one process."""
        return sorted({loop.pid for loop in self.model.loops.values() if loop.pid is not None})

    def action_next_worker(self) -> None:
        """Show one worker's tasks, then the next worker's, then all of them again."""
        current = self.options.only_pid
        following = [pid for pid in self.worker_pids() if current is None or pid > current]
        chosen = following[0] if following else None
        self._set_options(only_pid=chosen)
        self.notify(f"Worker {chosen} only" if chosen is not None else "All workers", timeout=2)

    # --- selection and the detail pane ---------------------------------------------------------

    def _cursor_moved(self, view: ViewName, key: str | None) -> None:
        """A view's cursor moved (told at once, not by message: see `TaskViews.follow`)."""
        if view == self.view:
            if view == "stalls" and key != self.selected_stall:
                self.selected_stall = key
                self.changed(header=False)
            self._select(key if view in ("tree", "table", "history") else None)
            self._hold_slices()
            self._key_frame_due = time.monotonic()
            long_lived.hold_for_key()

    def _compositor_refresh(self) -> None:
        """Textual's, drawing the changed regions in groups (`screen_updates.clusters`), not
        all in one rectangle around them: a key's two rows of the tree and the detail pane
        are drawn without the rows of the tree between them. A key's picture is then on
        screen: the collector runs again."""
        app = self.app
        compositor = self._compositor
        dirty = compositor._dirty_regions
        groups = clusters(dirty)
        if app.is_inline or self is not app.screen or self.size.region in dirty or len(groups) < 2:
            super()._compositor_refresh()
        else:
            for group in groups:
                compositor._dirty_regions = set(group)
                app._display(self, compositor.render_update(screen_stack=app._background_screens))
            self._dirty_widgets.clear()
            app._update_mouse_over(self)
        if self._key_frame_due is not None and self is app.screen:
            self._key_frame_due = None
            long_lived.resume()

    def on_screen_suspend(self) -> None:
        """Another screen (a dialog, the help) comes up before a key's picture was drawn:
        the collector must not wait for a frame this screen will not draw meanwhile."""
        if self._key_frame_due is not None:
            self._key_frame_due = None
            long_lived.resume()

    async def _on_idle(self, event: events.Idle) -> None:
        """Draw a key's picture as soon as what it changed is known to the screen (Textual's
        own `Screen._on_idle` runs after this one). Textual draws the screen on a 60 Hz
        timer, which after a recent frame waits for the next tick: 17 ms, and 20-30 ms on a
        loaded machine, which a key that moved a cursor need not wait."""
        due = self._key_frame_due
        if due is None:
            return
        dirty = (
            self._dirty_widgets
            or self._repaint_required
            or self._layout_required
            or self._scroll_required
        )
        if dirty and self.is_current and not self.app._batch_count:
            self._on_timer_update()  # what the timer does: lay out and draw what changed
        elif time.monotonic() - due > KEY_FRAME_WAIT:  # nothing to draw came: stop waiting
            self._key_frame_due = None
            long_lived.resume()

    @on(RowList.RowChosen, "#stalls")
    def _stall_chosen(self, message: RowList.RowChosen) -> None:
        """Enter on a stall: its whole sampled stack in the detail pane, focused to scroll."""
        self.selected_stall = message.key
        self.changed(header=False)
        self.detail.focus_body()

    @on(RowList.RowChosen, "#groups")
    def _group_chosen(self, message: RowList.RowChosen) -> None:
        row = self.views.groups.groups[message.key]
        self.options = ViewOptions(
            filter="",
            show_finished=self.options.show_finished,
            sort=self.options.sort,
            only_ids=frozenset(row.ids),
            only_label=f"{row.count:,} x {safe_text(row.label)} {safe_text(row.what)}",
        )
        self._rebuild_all()
        self._switch_view("table")
        self.changed()

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
            else self.views.table.select_key(task_id)
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
        focus_now(self.views.widgets[target])
        return True

    def _select(self, task_id: str | None) -> None:
        if task_id == self.selected:
            return
        self.selected = task_id
        # At once, not on the next ModelChanged: in the same frame as the cursor.
        self.detail.show(self.model, task_id)
        self._update_bindings()
        if task_id is not None:
            self._schedule_stack(task_id)

    def _update_bindings(self) -> None:
        """Refresh the footer only when the cancel keys change state: the footer rebuilds
        all its keys on every refresh, which would cost more than the cursor move itself."""
        can_cancel = self.check_action("cancel_task", ()) is True
        if can_cancel != self._can_cancel:
            self._can_cancel = can_cancel
            self.app.refresh_bindings()

    def _schedule_stack(self, task_id: str) -> None:
        if self._stack_timer is not None:
            self._stack_timer.stop()
        self._stack_timer = self.set_timer(0.2, lambda: self._fetch_stack(task_id))

    @work(thread=True, exclusive=True, group="stack")
    def _fetch_stack(self, task_id: str) -> None:
        if self.dashboard.gone is not None:
            return
        task = self.model.tasks.get(task_id)
        if task is None or task.finished:
            return
        try:
            reply = self.dashboard.source.stack(task_id)
        except ClientError:
            return
        self.post_message(StackFetched(task_id, reply))

    @on(StackFetched)
    def _stack_fetched(self, message: StackFetched) -> None:
        self.detail.set_stack(message.task_id, message.reply)
        self.changed(header=False)

    def selected_task(self) -> TaskInfo | None:
        """The task under the active view's cursor, read from the view itself: the highlight
        message that updates `selected` may still wait in the queue behind the key asking
        (a fast `down` then `c` must cancel the task the cursor is on, not the one before)."""
        task_id = self.views.cursor_task() if self.view != "groups" else self.selected
        return self.model.tasks.get(task_id) if task_id is not None else None

    def action_copy_task(self) -> None:
        task = self.selected_task()
        if task is None:
            self.notify("No task selected", severity="warning", timeout=3)
            return
        # OSC 52: the terminal puts it on the system clipboard (most terminals, over ssh too).
        self.app.copy_to_clipboard(task_text(task, self.model, self.dashboard.source.pid))
        self.notify(f"Task {task.id} ({safe_text(task.name, 40)}) copied", timeout=3)

    # --- cancelling (the flow itself is `CancelFlow`) ------------------------------------------

    def action_cancel_task(self) -> None:
        self._confirm_cancel(subtree=False)

    def action_cancel_subtree(self) -> None:
        self._confirm_cancel(subtree=True)

    def _confirm_cancel(self, subtree: bool) -> None:
        task = self.selected_task()
        if task is None or task.finished or self.dashboard.gone is not None:
            return
        source = self.dashboard.source
        if Capability.CANCEL not in source.capabilities:
            # Each kind of look says why in its own words (a recording shows the past; a
            # read-only look has no agent): its `cancel` refuses at once, sending nothing.
            reason = f"{source.label} cannot cancel tasks: that needs the taskscope agent"
            try:
                source.cancel(task.id)
            except ClientError as refusal:
                reason = str(refusal) or reason
            self.notify(safe_text(reason, 200), title="Cannot cancel", severity="warning")
            return
        now = self.clock()
        question = ask(
            self.model,
            task,
            subtree=subtree,
            pid=self.dashboard.source.pid,
            state_words=lambda shown: state_words(shown, now),
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self._send_cancel(self.cancel_flow.confirmed(question))
            else:
                self.notify(f"{question.name} not cancelled", timeout=2)

        self.app.push_screen(
            CancelDialog(question.question, question.detail, question.warning), answered
        )

    @work(thread=True, group="commands", description="send cancel requests")
    def _send_cancel(self, request: CancelRequest) -> None:
        # Innermost tasks first: a parent's own cleanup then sees its children already gone.
        # The request itself belongs to the UI thread: answers travel in the message.
        outcomes: dict[str, str] = {}
        for task_id in reversed(request.ids):
            try:
                result = self.dashboard.source.cancel(task_id, CANCEL_MESSAGE)
            except ClientError as error:
                outcomes[task_id] = f"error: {error}"
            else:
                outcomes[task_id] = (
                    refused(result.error) if result.outcome == "failed" else result.outcome
                )
        self.post_message(CancelFinished(request, outcomes))

    @on(CancelFinished)
    def _cancel_finished(self, message: CancelFinished) -> None:
        progress = self.cancel_flow.answered(
            message.request, message.outcomes, self.model, self.clock()
        )
        self._show_progress(progress)
        self.changed(header=False)

    def updates_stopped(self) -> None:
        """No more updates will come: cancels still waiting for their outcome are said
        unseen."""
        self._show_progress(self.cancel_flow.updates_stopped(self.model))

    def _check_cancels(self) -> None:
        self._show_progress(self.cancel_flow.check(self.model, self.clock()))

    def _show_progress(self, progress: Progress) -> None:
        self.detail.cancel_status.update(progress.status)
        for notice in progress.notices:
            self.notify(
                notice.text, title=notice.title, severity=notice.severity, timeout=notice.timeout
            )
        if progress.status:
            self.changed(header=False)
