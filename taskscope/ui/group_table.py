"""The grouped view: tasks grouped by coroutine and await site with counts, biggest first
(`10,000 x handle() awaiting StreamReader.read`), for processes with many tasks. Tasks of one
coroutine parked at the same line are one group, whatever task or peer each one waits for."""

from __future__ import annotations

import os

from rich.text import Text

from taskscope.model import TaskModel
from taskscope.report import safe_text
from taskscope.ui.detail_pane import short_path
from taskscope.ui.row_list import RowList
from taskscope.ui.task_display import (
    ASYNCIO_MARK,
    FULL_COLUMNS_FROM,
    WARNING_MARKER,
    WARNING_STYLE,
    ViewOptions,
    made_by_asyncio,
    matches,
)
from taskscope.words import GroupRow, group_order, group_rows


class GroupTable(RowList):
    """One row per (coroutine, await site); Enter opens the group's tasks in the table."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.groups: dict[str, GroupRow] = {}
        self.model = TaskModel()
        self.empty_text = "no tasks"
        #: The tasks some warning is about, and how many of each group's tasks they are.
        self.warned: frozenset[str] = frozenset()
        self.warned_count: dict[str, int] = {}

    def update_rows(self, model: TaskModel, options: ViewOptions) -> None:
        self.model = model
        groups = group_rows(model.await_sites(include_finished=False), model.object_letters)
        if options.filter:
            groups = _filtered(model, groups, options.filter)
        self.groups = {f"{row.label}\x00{row.what}\x00{row.site}": row for row in groups}
        warned = self.warned
        self.warned_count = (
            {key: count for key, row in self.groups.items() if (count := _count_in(row, warned))}
            if warned
            else {}
        )
        self.set_rows(list(self.groups))

    def _narrow(self) -> bool:
        """An 80-column terminal's view: what a group runs is cut shorter, for what its
        tasks await to show."""
        return 0 < self.size.width < FULL_COLUMNS_FROM

    def header(self) -> Text:
        if self._narrow():
            return Text(f"  {'TASKS':>6}    COROUTINE AND WHAT IT AWAITS")
        return Text(f"  {'TASKS':>9}    COROUTINE AND WHAT IT AWAITS, WHERE")

    def render_row(self, key: str) -> Text:
        row = self.groups[key]
        first = self.model.tasks.get(row.ids[0]) if row.ids else None
        asyncio_made = first is not None and made_by_asyncio(first)
        warned = self.warned_count.get(key, 0)
        narrow = self._narrow()
        text = Text.assemble(
            (WARNING_MARKER, WARNING_STYLE) if warned else " ",
            " ",
            (f"{row.count:>{6 if narrow else 9},}", "bold"),
            " x ",
            (
                (ASYNCIO_MARK if asyncio_made else "") + safe_text(row.label, 20 if narrow else 40),
                "dim" if asyncio_made else "cyan",
            ),
            "  awaiting " if row.what not in ("running", "ready") else "  ",
            safe_text(row.what, 80),
        )
        if row.site:
            text.append(f"  at {safe_text(_short_site(row.site), 60)}", style="dim")
        if warned:
            text.append(f"  {WARNING_MARKER} {warned:,} with warnings", style=WARNING_STYLE)
        return text


def _count_in(row: GroupRow, warned: frozenset[str]) -> int:
    return sum(1 for task_id in row.ids if task_id in warned)


def _short_site(site: str) -> str:
    """`demo_service.py:84`, `asyncio/tasks.py:520`: enough to tell two sites apart."""
    short = short_path(site)
    return os.path.basename(short) if short == site else short


def _filtered(model: TaskModel, groups: list[GroupRow], needle: str) -> list[GroupRow]:
    result: list[GroupRow] = []
    lowered = needle.lower()
    for row in groups:
        if lowered in row.label.lower() or lowered in row.what.lower():
            result.append(row)
            continue
        kept = [
            task_id
            for task_id in row.ids
            if matches(model.tasks[task_id], needle, model.object_letters)
        ]
        if kept:
            result.append(GroupRow(row.coro, row.what, row.site, kept, row.request))
    result.sort(key=group_order)
    return result
