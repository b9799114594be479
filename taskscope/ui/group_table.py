"""The grouped view: tasks grouped by coroutine and await site with counts, biggest first
(`10,000 x handle() awaiting StreamReader.read`), for processes with many tasks."""

from __future__ import annotations

from rich.text import Text

from taskscope.model import TaskModel
from taskscope.report import safe_text
from taskscope.ui.row_list import RowList
from taskscope.ui.task_display import ViewOptions, matches

Group = tuple[str, str, int, list[str]]


class GroupTable(RowList):
    """One row per (coroutine, await site); Enter opens the group's tasks in the table."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.groups: dict[str, Group] = {}
        self.empty_text = "no tasks"

    def update_rows(self, model: TaskModel, options: ViewOptions) -> None:
        groups = model.groups(include_finished=False)
        if options.filter:
            groups = _filtered(model, groups, options.filter)
        self.groups = {
            f"{coro}\x00{what}": (coro, what, count, ids) for coro, what, count, ids in groups
        }
        self.set_rows(list(self.groups))

    def header(self) -> Text:
        return Text(f"{'TASKS':>9}    COROUTINE AND WHAT IT AWAITS")

    def render_row(self, key: str) -> Text:
        coro, what, count, _ids = self.groups[key]
        return Text.assemble(
            (f"{count:>9,}", "bold"),
            " x ",
            (safe_text(coro + "()", 40), "cyan"),
            "  awaiting " if what not in ("running", "ready") else "  ",
            safe_text(what, 80),
        )


def _filtered(model: TaskModel, groups: list[Group], needle: str) -> list[Group]:
    result: list[Group] = []
    for coro, what, _count, ids in groups:
        if needle.lower() in coro.lower() or needle.lower() in what.lower():
            result.append((coro, what, len(ids), ids))
            continue
        kept = [task_id for task_id in ids if matches(model.tasks[task_id], needle)]
        if kept:
            result.append((coro, what, len(kept), kept))
    result.sort(key=lambda row: (-row[2], row[0], row[1]))
    return result
