"""The task tree: tasks nested under what they belong to (their waiter, TaskGroup or gather,
else their creator), updated in place by task id.

Nodes hold only a task id; each line is rendered from the model when it is drawn, so a changed
task costs one line refresh, and ages tick by refreshing only the lines on screen. New tasks
are added, gone ones removed, and a task is moved only when its tree parent changed. An await
cycle hangs under its lowest-numbered member, which is marked ⟳ instead of nesting forever.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from functools import partial
from typing import ClassVar, Self

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.strip import Strip
from textual.widgets import Tree
from textual.widgets._tree import _TreeLine
from textual.widgets.tree import TreeNode

from taskscope.model import TaskInfo, TaskModel
from taskscope.relations import AWAITED_STROKE, CREATED, CREATED_STROKE, relation
from taskscope.report import pad_cells, safe_text
from taskscope.ui.task_display import (
    FULL_COLUMNS_FROM,
    MOVING_SORTS,
    ViewOptions,
    age_text,
    coro_text,
    made_by_asyncio,
    marker,
    matches_itself,
    row_awaiting_text,
    sort_key,
)
from taskscope.words import awaiting_label, count_text, cycle_note, step_time_text

#: Above this many shown tasks the tree stays empty and points to the grouped view.
TREE_LIMIT = 20_000
NAME_WIDTH = 30
CORO_WIDTH = 24
AGE_WIDTH = 7
#: A tree narrower than `FULL_COLUMNS_FROM` (an 80-column terminal's) gives its name and
#: coroutine columns a share of its width, and narrower than this drops the age column: what
#: a task awaits must stay on screen.
AGE_SHOWN_FROM = 64


def tree_columns(width: int) -> tuple[int, int, bool]:
    """The name and coroutine columns' widths and whether the age column is shown, for a
    tree `width` cells wide."""
    if width >= FULL_COLUMNS_FROM:
        return NAME_WIDTH, CORO_WIDTH, True
    name = max(14, min(NAME_WIDTH, width // 3))
    coro = max(10, min(CORO_WIDTH, width // 5))
    return name, coro, width >= AGE_SHOWN_FROM


#: A tick draws the rows on screen again in this many groups, spread over the tick.
TICK_PARTS = 4

TaskNode = TreeNode[str]


class TaskTree(Tree[str]):
    """Every shown task as a tree node keyed by task id."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "collapse", "Collapse", show=False),
        Binding("right", "expand", "Expand", show=False),
    ]

    class TaskHighlighted(Message):
        """The cursor moved onto a task."""

        def __init__(self, task_id: str | None) -> None:
            super().__init__()
            self.task_id = task_id

    def __init__(
        self, clock: Callable[[], float], *, limit: int = TREE_LIMIT, id: str | None = None
    ) -> None:
        #: node id -> (its parent's line, its line) from the last layout, to reuse (set first:
        #: Textual's constructor lays the lines out).
        self._line_by_node: dict[int, tuple[object, _TreeLine[str]]] = {}
        self._frame_style: Style | None = None
        #: The lines as last drawn, kept when nodes are added or removed until the lines are
        #: laid out again: only the rows that then show another line are drawn again.
        self._lines_drawn: list[_TreeLine[str]] | None = None
        #: Tasks whose label may have changed since the tree was last drawn.
        self._relabel: set[str] = set()
        #: Called at once when the cursor lands on another task (see `watch_cursor_line`).
        self.cursor_moved: Callable[[str | None], None] | None = None
        self._cursor_told: str | None = None
        super().__init__("tasks", id=id)
        self.show_root = False
        self.guide_depth = 3
        self.clock = clock
        self.limit = limit
        self.model = TaskModel()
        self.options = ViewOptions()
        self.overflow = False
        self._task_nodes: dict[str, TaskNode] = {}
        self._parent_of: dict[str, str | None] = {}
        self._cycle_members: set[str] = set()
        self._cycle_roots: set[str] = set()
        self._loop_blocked: set[str] = set()
        #: The tasks some warning is about (marked ⚠).
        self.warned: frozenset[str] = frozenset()
        self._sibling_keys: dict[int, list[tuple[object, ...]]] = {}
        #: The sort key each node was placed by (name or state sort only): a task whose key
        #: changes (renamed, finished) is moved to its new place among its siblings.
        self._placed_key: dict[str, tuple[object, ...]] = {}

    # --- queries -------------------------------------------------------------------------------

    @property
    def task_ids(self) -> set[str]:
        return set(self._task_nodes)

    def node_for(self, task_id: str) -> TaskNode | None:
        return self._task_nodes.get(task_id)

    @property
    def selected_task(self) -> str | None:
        node = self.cursor_node
        return node.data if node is not None else None

    # --- building and updating -----------------------------------------------------------------

    def _prepare(self, model: TaskModel) -> None:
        self.model = model
        cycle_members = model.cycle_members()
        loop_blocked = {loop.id for loop in model.loops.values() if loop.blocked_for is not None}
        if cycle_members != self._cycle_members or loop_blocked != self._loop_blocked:
            # Marks of tasks that did not change themselves: every line is drawn again.
            self._line_cache.clear()
            self.refresh()
        self._cycle_members = cycle_members
        self._loop_blocked = loop_blocked
        self._cycle_roots = {min(cycle, key=int) for cycle in model.cycles if cycle}
        self._sibling_keys = {}

    def _shown_count(self, now: float) -> int:
        shows = self.options.shows
        return sum(1 for task in self.model.tasks.values() if shows(task, now))

    def rebuild(self, model: TaskModel, options: ViewOptions) -> None:
        """Build every node afresh: for a new snapshot or new view options, never per delta."""
        self._prepare(model)
        new_filter = options.filter if options.filter != self.options.filter else ""
        self.options = options
        selected = self.selected_task
        self.clear()
        self._task_nodes.clear()
        self._parent_of.clear()
        self._placed_key.clear()
        now = self.clock()
        shown = [
            task for task in model.tasks.values() if options.shows(task, now, model.object_letters)
        ]
        if len(shown) > self.limit:
            self._show_overflow(len(shown))
            return
        self.overflow = False
        key = sort_key(options.sort)
        shown.sort(key=key)
        for task in shown:
            self._place(task.id, set())
        self.get_node_at_line(0)  # lays the new lines out, for the cursor to find its node
        named = self._first_named(new_filter, selected) if new_filter else None
        if named is not None:
            self.select_task(named)
        elif selected is not None and self._is_shown_for_itself(selected, now):
            self.select_task(selected)
        elif self._task_nodes:
            # Not on a task shown only as the context of a match: on the first match.
            first = self._first_shown()
            if first is not None:
                self.select_task(first)
            elif selected is None or not self.select_task(selected):
                self.cursor_line = 0

    def _is_shown_for_itself(self, task_id: str, now: float) -> bool:
        """The task passes the view's filter (not only shown as an ancestor of one that does)."""
        task = self.model.tasks.get(task_id)
        return (
            task is not None
            and task_id in self._task_nodes
            and self.options.shows(task, now, self.model.object_letters)
        )

    def _first_named(self, needle: str, selected: str | None) -> str | None:
        """After a new filter: the first task from the top whose own name, coroutine or id
        matches it, unless the selected task's does (None: keep the usual choice)."""
        tasks = self.model.tasks
        chosen = tasks.get(selected) if selected in self._task_nodes else None
        if chosen is not None and matches_itself(chosen, needle):
            return None
        pending = list(reversed(self.root.children))
        while pending:
            node = pending.pop()
            task = tasks.get(node.data) if node.data is not None else None
            if task is not None and matches_itself(task, needle):
                return task.id
            pending.extend(reversed(node.children))
        return None

    def _first_shown(self) -> str | None:
        """The first task from the top that is shown for itself, not as context."""
        now = self.clock()
        pending = list(reversed(self.root.children))
        while pending:
            node = pending.pop()
            if node.data is not None and self._is_shown_for_itself(node.data, now):
                return node.data
            pending.extend(reversed(node.children))
        return None

    def _show_overflow(self, count: int) -> None:
        self.overflow = True
        self.root.add_leaf(
            Text(
                f"{count:,} tasks: too many for the tree (limit {self.limit:,}). "
                "Press g for the grouped view, or / to filter.",
                style="bold yellow",
            )
        )

    def apply_changes(
        self,
        model: TaskModel,
        changed: Iterable[str],
        removed: Iterable[str],
        *,
        repaint: bool = True,
    ) -> None:
        """Bring the nodes up to date with the tasks that changed or went in the last update.

        Labels are drawn from the model, so a changed task whose node stays put costs
        nothing here: with `repaint` (the last slice of an update), the rows on screen that
        show a changed task, or another line than before, are drawn again; nothing else.
        (Off-screen lines are drawn when scrolled to. A label that changed because another
        task did, such as a countdown, or a waited task's name, moves on at the next tick.)"""
        self._prepare(model)
        changed = list(changed)
        self._relabel.update(changed)
        now = self.clock()
        if self.overflow:
            if self._shown_count(now) <= self.limit:
                self.rebuild(model, self.options)
            return
        for task_id in removed:
            self._drop(task_id)
        shows = self.options.shows
        selected = self.selected_task
        placed_by = sort_key(self.options.sort)
        moving_sort = self.options.sort in MOVING_SORTS
        for task_id in sorted(changed, key=_number):
            task = model.tasks.get(task_id)
            if task is None:
                continue
            node = self._task_nodes.get(task_id)
            if not shows(task, now):
                if node is not None and not node.children:
                    self._drop(task_id)
                continue
            if node is None:
                self._place(task_id, set())
            else:
                new_parent = self._parent_for(task) != self._parent_of.get(task_id)
                # A figure or wait sort orders siblings when the tree is built: its keys move
                # on every update, and moving every task that ran would cost each update.
                new_place = not moving_sort and placed_by(task) != self._placed_key.get(task_id)
                if new_parent or new_place:
                    self._move(task_id)
        if len(self._task_nodes) > self.limit:
            self.rebuild(model, self.options)
            return
        node = self._task_nodes.get(selected) if selected is not None else None
        if selected is not None and node is not None and node is not self.cursor_node:
            # The selected task was moved, which makes its node anew: the cursor follows it
            # once the lines are laid out again (asking for a line lays them out).
            self.get_node_at_line(0)
            self.select_task(selected)
        if repaint:
            self._repaint()

    # --- cheaper bookkeeping than Textual's, for 10,000 nodes ---------------------------------

    def clear(self) -> Self:
        """Textual's, forgetting the lines kept by node id: a cleared tree numbers its nodes
        from 0 again, so a kept line would draw another task in a rebuilt view."""
        self._line_by_node = {}
        self._lines_drawn = None
        self._relabel = set()
        return super().clear()

    def _invalidate(self) -> None:
        """Textual's, without asking for a layout of the whole screen on every node added or
        removed (the tree's size is all that can change, and its `virtual_size`, a layout
        reactive, asks for one when it does), and without drawing every line again: the
        lines are laid out again at the next idle moment, and `_build` draws the rows on
        screen that then show another line than before."""
        if self._tree_lines_cached is not None and self._lines_drawn is None:
            self._lines_drawn = self._tree_lines_cached
        self._tree_lines_cached = None
        self.root._reset()
        self.check_idle()

    def _build(self) -> None:
        """Textual's list of lines, made without its recursive closure (whose reference cycle
        left each old list of 10,000 lines to the garbage collector's full passes), without
        measuring every label for a width (the view does not scroll sideways: overflow-x is
        hidden), and reusing the line of every node whose place did not change (a line is
        its path from the top, so it can be kept while its parent's line is)."""
        lines: list[_TreeLine[str]] = []
        add_line = lines.append
        line_type = _TreeLine
        old_lines = self._line_by_node
        new_lines: dict[int, tuple[object, _TreeLine[str]]] = {}
        tops = [self.root] if self.show_root else list(self.root._children)
        final = len(tops) - 1
        pending: list[tuple[_TreeLine[str] | None, TaskNode, bool]] = [
            (None, tops[index], True) for index in range(final, -1, -1)
        ]
        pop = pending.pop
        push = pending.append
        while pending:
            parent_line, node, last = pop()
            kept = old_lines.get(node._id)
            if kept is not None and kept[0] is parent_line and kept[1].last is last:
                line = kept[1]
                new_lines[node._id] = kept
            else:
                path = [node] if parent_line is None else [*parent_line.path, node]
                line = line_type(path, last)
                new_lines[node._id] = (parent_line, line)
            node._line = len(lines)
            add_line(line)
            children = node._children
            if node._expanded and children:
                final = len(children) - 1
                push((line, children[final], True))
                for index in range(final - 1, -1, -1):
                    push((line, children[index], False))
        self._line_by_node = new_lines
        self._tree_lines_cached = lines
        drawn, self._lines_drawn = self._lines_drawn, None
        if drawn is not None:
            self._redraw_moved_rows(drawn, lines)
        size = Size(self.size.width, len(lines))
        if size != self.virtual_size:
            # Not by the reactive, whose refresh draws every row on screen again: the rows
            # that changed are drawn by `_redraw_moved_rows`, the scrollbar is told here.
            self.set_reactive(Tree.virtual_size, size)
            self._scroll_update(size)
        if self.cursor_line != -1:
            if self.cursor_node is not None:
                self.cursor_line = self.cursor_node._line
            if self.cursor_line >= len(lines):
                self.cursor_line = -1
        if self._relabel:
            self._repaint()

    def _redraw_moved_rows(self, before: list[_TreeLine[str]], after: list[_TreeLine[str]]) -> None:
        """Nodes were added or removed: forget the drawn rows that now show another line
        (Textual keys a drawn row by its number and its nodes' update counts, which another
        node on that row may share), and draw those on screen again."""

        def moved(row: int) -> bool:
            if row >= len(before) or row >= len(after):
                return (row < len(before)) != (row < len(after))
            return before[row] is not after[row]

        cache = self._line_cache
        drawn = list(cache.keys())  # a Textual LRUCache: no iteration of its own
        for key in drawn:
            if isinstance(key[0], int) and moved(key[0]):
                cache.discard(key)
        top = self.scroll_offset.y
        for row in range(top, top + self.size.height):
            if moved(row):
                self._refresh_line(row)

    def _repaint(self) -> None:
        """Draw again the rows on screen that show a task changed since the last time: its
        node's update count moves on, which Textual's cache of drawn rows is keyed by. The
        lines are not laid out for this: when nodes were added or removed, `_build` calls
        this once it has laid them out (at the next idle moment, like a key's own redraw)."""
        if self._tree_lines_cached is None:
            return
        relabel, self._relabel = self._relabel, set()
        nodes = self._task_nodes
        for task_id in relabel:  # off screen too: a drawn row may be kept for a scroll back
            node = nodes.get(task_id)
            if node is not None:
                node._updates += 1
        lines = self._tree_lines_cached
        top = self.scroll_offset.y
        for row in range(top, min(len(lines), top + self.size.height)):
            if lines[row].path[-1].data in relabel:
                self._refresh_line(row)

    def expire(self) -> None:
        """Drop finished tasks whose time in the live view is over (no delta says so)."""
        now = self.clock()
        shows = self.options.shows
        stale = [
            task_id
            for task_id, node in self._task_nodes.items()
            if (task := self.model.tasks.get(task_id)) is not None
            and task.finished
            and not node.children
            and not shows(task, now)
        ]
        for task_id in stale:
            self._drop(task_id)

    def tick(self, within: float = 0.0) -> None:
        """Draw the rows on screen again (ages move on even when no task changed), a group
        of rows at a time spread over `within` seconds: drawing every row in one frame
        takes 10-50 ms here at once, and a key that lands meanwhile waits for all of it."""
        for part in range(TICK_PARTS):
            if part == 0 or within <= 0:
                self._tick_rows(part)
            else:
                self.set_timer(within * part / TICK_PARTS, partial(self._tick_rows, part))

    def _tick_rows(self, part: int) -> None:
        height = self.size.height
        top = self.scroll_offset.y + part * height // TICK_PARTS
        for line in range(top, self.scroll_offset.y + (part + 1) * height // TICK_PARTS):
            node = self.get_node_at_line(line)
            if node is None:
                break
            node.refresh()

    def _parent_for(self, task: TaskInfo) -> str | None:
        if task.id in self._cycle_roots:
            return None
        parent = self.model.tree_parent(task)
        if parent is None:
            return None
        parent_task = self.model.tasks[parent]
        if parent_task.finished and not self.options.shows(
            parent_task, self.clock(), self.model.object_letters
        ):
            return None
        return parent

    def _place(self, task_id: str, placing: set[str]) -> TaskNode | None:
        """Add the node for `task_id`, placing its ancestors first when they have no node."""
        node = self._task_nodes.get(task_id)
        if node is not None:
            return node
        task = self.model.tasks.get(task_id)
        if task is None:
            return None
        parent_id = self._parent_for(task)
        parent_node: TaskNode = self.root
        if parent_id is not None and parent_id not in placing:
            placing.add(task_id)
            placed = self._place(parent_id, placing)
            placing.discard(task_id)
            if placed is not None:
                parent_node = placed
            else:
                parent_id = None
        elif parent_id is not None:
            parent_id = None  # an undetected loop: hang it at the top rather than recurse
        node = self._insert(parent_node, task)
        self._task_nodes[task_id] = node
        self._parent_of[task_id] = parent_id
        return node

    def _insert(self, parent: TaskNode, task: TaskInfo) -> TaskNode:
        """Add a task's node among its siblings in sort order (for the age order, the CLI's:
        pending first, then by creation), so that siblings never shift as updates arrive."""
        label = Text(safe_text(task.name))  # a Text: a str label would be parsed as markup
        key = sort_key(self.options.sort)
        mine = key(task)
        self._placed_key[task.id] = mine
        # Textual counts an added node as an update of the whole tree and of the parent, which
        # the cache of drawn rows is keyed by: every row on screen under that parent would be
        # drawn again. Only the rows that show another line are (`_redraw_moved_rows`); the
        # parent's own row changes only with its first child (its ▼), by `allow_expand`.
        counts = self._updates, parent._updates
        if not parent.children:
            self._sibling_keys[parent.id] = [mine]
            node = parent.add(label, data=task.id, expand=True, allow_expand=False)
        else:
            keys = self._sibling_keys.get(parent.id)
            if keys is None:
                keys = [
                    key(self.model.tasks[child.data]) if child.data in self.model.tasks else ()
                    for child in parent.children
                ]
                self._sibling_keys[parent.id] = keys
            index = bisect.bisect_right(keys, mine)
            keys.insert(index, mine)
            if index < len(parent.children):
                node = parent.add(
                    label, data=task.id, expand=True, allow_expand=False, before=index
                )
            else:
                node = parent.add(label, data=task.id, expand=True, allow_expand=False)
        self._updates, parent._updates = counts
        if not parent.is_root and not parent.allow_expand:
            parent.allow_expand = True
            self._relabel.add(parent.data or "")  # its row gets its ▼
        return node

    def _subtree_ids(self, node: TaskNode) -> list[str]:
        ids: list[str] = []
        pending = [node]
        while pending:
            current = pending.pop()
            if current.data is not None:
                ids.append(current.data)
            pending.extend(reversed(current.children))
        return ids

    def _detach_subtree(self, task_id: str) -> list[str]:
        """Remove a node and its descendants; return the descendants' ids (to re-place)."""
        node = self._task_nodes.get(task_id)
        if node is None:
            return []
        ids = self._subtree_ids(node)
        parent = node.parent
        self._sibling_keys.pop(parent.id if parent is not None else -1, None)
        node.remove()
        if parent is not None and not parent.is_root and not parent.children:
            parent.allow_expand = False
            self._relabel.add(parent.data or "")  # its row loses its ▼
        for gone in ids:
            self._task_nodes.pop(gone, None)
            self._parent_of.pop(gone, None)
            self._placed_key.pop(gone, None)
        return ids[1:]

    def _drop(self, task_id: str) -> None:
        for descendant in self._detach_subtree(task_id):
            if descendant in self.model.tasks:
                self._place(descendant, set())

    def _move(self, task_id: str) -> None:
        for moved in [task_id, *self._detach_subtree(task_id)]:
            if moved in self.model.tasks:
                self._place(moved, set())

    def select_task(self, task_id: str) -> bool:
        """Put the cursor on a task's node, expanding its ancestors. False if not shown."""
        node = self._task_nodes.get(task_id)
        if node is None:
            return False
        parent = node.parent
        while parent is not None and not parent.is_root:
            parent.expand()
            parent = parent.parent
        self.move_cursor(node)
        return True

    # --- rendering -----------------------------------------------------------------------------

    def relation_of(self, task_id: str) -> str | None:
        """How the task hangs under its parent node: awaited, created, or None at the top."""
        parent = self._parent_of.get(task_id)
        task = self.model.tasks.get(task_id)
        if parent is None or task is None:
            return None
        return relation(task, parent)

    def render_lines(self, crop: Region) -> list[Strip]:
        # The widget's style, worked out from its ancestors: once a frame, not once a line.
        self._frame_style = self.rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._frame_style = None

    def render_line(self, y: int) -> Strip:
        style = self._frame_style if self._frame_style is not None else self.rich_style
        scroll_x, scroll_y = self.scroll_offset
        return self._render_line(y + scroll_y, scroll_x, scroll_x + self.size.width, style)

    def _render_line(self, y: int, x1: int, x2: int, base_style: Style) -> Strip:
        """Textual draws every branch alike; a child its parent only created (nobody awaits
        it) gets the dashed branch of `taskscope.relations` instead."""
        strip = super()._render_line(y, x1, x2, base_style)
        lines = self._tree_lines
        if y >= len(lines):
            return strip
        path = lines[y].path
        task_id = path[-1].data
        if len(path) < 2 or task_id is None or self.relation_of(task_id) != CREATED:
            return strip
        start = (len(path) - 2) * self.guide_depth - x1
        end = start + 2
        if start < 0 or end > strip.cell_length:
            return strip
        before, branch, after = strip.divide([start, end, strip.cell_length])
        dashed = [
            Segment(segment.text.replace(AWAITED_STROKE, CREATED_STROKE), segment.style)
            for segment in branch
        ]
        return Strip.join([before, Strip(dashed, 2), after])

    def render_label(self, node: TaskNode, base_style: Style, style: Style) -> Text:
        task = self.model.tasks.get(node.data) if node.data is not None else None
        if task is None:
            label = node.label.copy() if isinstance(node.label, Text) else Text(str(node.label))
            label.stylize(style)
            return label
        depth = 0
        parent = node.parent
        while parent is not None and not parent.is_root:
            depth += 1
            parent = parent.parent
        toggle = ("▼ " if node.is_expanded else "▶ ") if node.children else "  "
        name_column, coro_width, age_shown = tree_columns(self.size.width)
        # Each level's guides take from its name: the columns after it stay aligned (but for
        # a name cut to its least, far down the tree).
        least = 8 if name_column == NAME_WIDTH else 6
        name_width = max(least, name_column - depth * self.guide_depth)
        name = safe_text(task.name, name_width)
        coro = coro_text(task, coro_width)
        in_cycle = task.id in self._cycle_members
        # Shown only as the context of a filter's match, or made by asyncio: in the background.
        context = bool(self.options.filter) and not self.options.shows(
            task, self.clock(), self.model.object_letters
        )
        quiet = task.finished or context or made_by_asyncio(task)
        what = row_awaiting_text(task, self.model, self.clock()) + cycle_note(in_cycle)
        text = Text.assemble(
            (toggle, base_style),
            marker(task, in_cycle, task.loop in self._loop_blocked, task.id in self.warned),
            " ",
            (pad_cells(name, name_width), "dim" if quiet else "bold"),
            " ",
            (pad_cells(coro, coro_width), "dim" if quiet else "cyan"),
            " ",
            (age_text(task, self.clock()).rjust(AGE_WIDTH) + " ") if age_shown else "",
            self._figure(task),
            " ",
            (what, "dim" if task.finished else ""),
        )
        text.stylize(style)
        return text

    def _figure(self, task: TaskInfo) -> str:
        """Sorted by busy time or steps, the figure sorted by, as a column after the age."""
        if self.options.sort == "busy":
            return step_time_text(task.busy_s).rjust(AGE_WIDTH) + " "
        if self.options.sort == "steps":
            return count_text(task.steps).rjust(AGE_WIDTH) + " "
        return ""

    def get_label_width(self, node: TaskNode) -> int:
        task = self.model.tasks.get(node.data) if node.data is not None else None
        if task is None:
            return len(str(node.label))
        width = NAME_WIDTH + CORO_WIDTH + AGE_WIDTH + 8
        return width + (
            len(awaiting_label(task.awaiting)) + 16 if task.awaiting is not None else 24
        )

    def action_expand(self) -> None:
        node = self.cursor_node
        if node is not None and node.children:
            node.expand()

    def action_collapse(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.children and node.is_expanded:
            node.collapse()
        elif node.parent is not None and not node.parent.is_root:
            self.move_cursor(node.parent)

    def watch_cursor_line(self, previous_line: int, line: int) -> None:
        """Textual's, then tell `cursor_moved` at once when the cursor is on another task.

        The selection (and the detail pane) then changes in the same frame as the cursor: by
        `TaskHighlighted`, which bubbles up to the screen a widget at a time, it was painted
        a frame or two after the cursor, each frame 17-33 ms after the one before."""
        super().watch_cursor_line(previous_line, line)
        task_id = self.selected_task
        if task_id != self._cursor_told:
            self._cursor_told = task_id
            if self.cursor_moved is not None:
                self.cursor_moved(task_id)

    @on(Tree.NodeHighlighted)
    def _highlighted(self, event: Tree.NodeHighlighted[str]) -> None:
        event.stop()
        self.post_message(self.TaskHighlighted(event.node.data))

    @on(Tree.NodeSelected)
    def _selected(self, event: Tree.NodeSelected[str]) -> None:
        event.stop()


def _number(task_id: str) -> int:
    return int(task_id) if task_id.isdigit() else 0
