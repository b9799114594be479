"""The views (tree, flat table, grouped, history, and the loops' stalls) in one `ContentSwitcher`:
which one is shown, which are stale, and an update being applied to the tree a slice at a time.

Only the shown view follows each update (by task id); the others are rebuilt when next shown.
The main screen decides when (it owns the messages and the timing); this module knows how.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from textual.widget import Widget
from textual.widgets import ContentSwitcher, Input

from taskscope.model import TaskModel
from taskscope.relations import LEGEND
from taskscope.ui.group_table import GroupTable
from taskscope.ui.history_table import HistoryTable
from taskscope.ui.row_list import RowList
from taskscope.ui.stall_table import ONGOING_MARK, StallTable
from taskscope.ui.task_display import ASYNCIO_LEGEND, ViewOptions
from taskscope.ui.task_table import TaskTable
from taskscope.ui.task_tree import TaskTree

ViewName = Literal["tree", "table", "groups", "history", "stalls"]
VIEWS: tuple[ViewName, ...] = ("tree", "table", "groups", "history", "stalls")
VIEW_TITLES = {
    "tree": "Task tree",
    "table": "All tasks",
    "groups": "Grouped",
    "history": "Recently finished",
    "stalls": "Loop stalls, newest first",
}
#: A line under each view that explains its marks.
VIEW_LEGENDS = {
    "tree": f"{LEGEND}   {ASYNCIO_LEGEND}",
    "table": ASYNCIO_LEGEND,
    "history": ASYNCIO_LEGEND,
    "stalls": f"{ONGOING_MARK} still blocking the loop   Enter: its whole stack",
}
#: Tasks of an update applied to the tree per slice (a few milliseconds of work).
SLICE_TASKS = 250


class TaskViews:
    """The views' widgets (made here, not looked up: timers and workers may still fire while
    the app shuts down, when a query would find nothing) and what each one shows."""

    def __init__(self, clock: Callable[[], float], tree_limit: int) -> None:
        self.tree = TaskTree(clock, limit=tree_limit, id="tree")
        self.table = TaskTable(clock, id="table")
        self.groups = GroupTable(id="groups")
        self.history = HistoryTable(clock, id="history")
        self.stalls = StallTable(clock, id="stalls")
        self.widgets: dict[ViewName, TaskTree | RowList] = {
            "tree": self.tree,
            "table": self.table,
            "groups": self.groups,
            "history": self.history,
            "stalls": self.stalls,
        }
        self.switcher = ContentSwitcher(initial="tree", id="views")
        self.current: ViewName = "tree"
        #: Views that missed updates: rebuilt when next shown.
        self.dirty: set[ViewName] = set(VIEWS)
        #: The slices of an update still to apply to the tree: (changed, removed) task ids.
        self.slices: list[tuple[list[str], list[str]]] = []
        self.slices_started = 0.0

    def follow(self, cursor_moved: Callable[[ViewName, str | None], None]) -> None:
        """Have each view tell `cursor_moved` at once when its cursor lands on another task
        or row. (Their highlight messages bubble up a widget at a time, and what the screen
        did on them was painted a frame or two after the cursor.)"""
        for name, widget in self.widgets.items():
            widget.cursor_moved = lambda key, name=name: cursor_moved(name, key)

    @property
    def shown(self) -> TaskTree | RowList:
        return self.widgets[self.current]

    def label(self) -> None:
        self.switcher.border_title = VIEW_TITLES[self.current]
        self.switcher.border_subtitle = VIEW_LEGENDS.get(self.current, "")

    def show(self, view: ViewName, model: TaskModel, options: ViewOptions) -> None:
        """Show `view` (rebuilt if it missed updates) and focus it, unless a filter is being
        typed. Slices left of an update must be applied first (`finish_slices`)."""
        self.current = view
        self.switcher.current = view
        self.label()
        if view in self.dirty:
            self.rebuild(view, model, options)
        if not isinstance(self.shown.screen.focused, Input):  # not while a filter is typed
            focus_now(self.shown)

    def cursor_task(self) -> str | None:
        """The task under the shown view's cursor (the grouped and stalls views have none)."""
        if self.current == "tree":
            return self.tree.selected_task
        if self.current in ("table", "history"):
            return self.shown.cursor_key if isinstance(self.shown, RowList) else None
        return None

    # --- following the model -------------------------------------------------------------------

    def sync(self, model: TaskModel, options: ViewOptions, full: bool) -> None:
        """Update the shown view by task id; the others are rebuilt when next shown."""
        view = self.current
        if view == "tree" and not full and "tree" not in self.dirty:
            self.tree.apply_changes(model, model.last_changed, model.last_removed)
        else:
            self.rebuild(view, model, options)
        self.dirty = set(VIEWS) - {view}

    def rebuild(self, view: ViewName, model: TaskModel, options: ViewOptions) -> None:
        if view == "tree":
            self.tree.rebuild(model, options)
        elif view == "table":
            self.table.update_rows(model, options)
        elif view == "groups":
            self.groups.update_rows(model, options)
        elif view == "stalls":
            self.stalls.update_rows(model, options)
        else:
            self.history.update_rows(model, options)
        self.dirty.discard(view)

    def rebuild_all(self, model: TaskModel, options: ViewOptions) -> None:
        """The options changed: every view is stale, the shown one is rebuilt now."""
        self.dirty = set(VIEWS)
        self.rebuild(self.current, model, options)

    def can_slice(self, full: bool) -> bool:
        """Whether an update can go to the tree in slices: not a snapshot, the tree shown,
        up to date and not over its limit. (Anything else is rebuilt whole, at once.)"""
        return (
            not full
            and self.current == "tree"
            and "tree" not in self.dirty
            and (not self.tree.overflow)
        )

    def plan_slices(self, model: TaskModel, started: float) -> None:
        """Cut the update just applied to `model` into slices for the tree."""
        self.dirty = set(VIEWS) - {"tree"}
        nodes = self.tree.node_for
        changed = sorted(
            model.last_changed, key=lambda task_id: (nodes(task_id) is None, _number(task_id))
        )
        removed = list(model.last_removed)
        # Tasks whose line only changed cost a check each; what adds or removes lines (and so
        # lays the tree out again: new tasks are sorted last) comes in the last slice, with the
        # one repaint.
        last = max(0, len(changed) - SLICE_TASKS)
        self.slices = [
            (changed[start : start + SLICE_TASKS], removed if start >= last else [])
            for start in range(0, max(1, len(changed)), SLICE_TASKS)
        ]
        self.slices_started = started

    def apply_slice(self, model: TaskModel) -> bool:
        """Apply the next slice to the tree (repainted with the last). True if it was the last."""
        changed, removed = self.slices.pop(0)
        self.tree.apply_changes(model, changed, removed, repaint=not self.slices)
        return not self.slices

    def set_warned(self, task_ids: frozenset[str], model: TaskModel, options: ViewOptions) -> None:
        """Mark the tasks some warning is about, in every view; the shown one repainted (the
        grouped view counts them per group: rebuilt)."""
        for widget in (self.tree, self.table, self.history, self.groups):
            widget.warned = task_ids
        if self.current == "tree":
            self.tree.tick()  # repaints the lines on screen
        elif self.current == "groups":
            self.rebuild("groups", model, options)
        else:
            self.shown.refresh()
        self.dirty.add("groups")

    def apply_all_slices(self, model: TaskModel) -> None:
        while self.slices:
            changed, removed = self.slices.pop(0)
            self.tree.apply_changes(model, changed, removed)


def focus_now(widget: Widget) -> None:
    """Give `widget` the focus before the next key is handed out. (Textual's `focus()` waits
    its turn in the app's queue, behind keys that arrived in the same write: `/slow` typed at
    once would run s, l, o, w as view keys.)"""
    widget.screen.set_focus(widget)


def _number(task_id: str) -> int:
    return int(task_id) if task_id.isdigit() else 0
