"""The history: recently finished tasks (done, cancelled, failed), newest first, with how
they ended."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text

from taskscope.model import TaskModel
from taskscope.report import age_text, clock, pad_cells, safe_text
from taskscope.ui.row_list import RowList
from taskscope.ui.task_display import (
    FULL_COLUMNS_FROM,
    ViewOptions,
    coro_text,
    made_by_asyncio,
    marker,
    matches,
)
from taskscope.words import format_duration


class HistoryTable(RowList):
    """Finished tasks kept by the agent's history, newest first."""

    def __init__(self, clock: Callable[[], float], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.model = TaskModel()
        self.empty_text = "no task has finished yet"
        #: The tasks some warning is about (marked ⚠).
        self.warned: frozenset[str] = frozenset()

    def update_rows(self, model: TaskModel, options: ViewOptions) -> None:
        self.model = model
        if model.history_since is not None:
            # The agent came by an attach: what finished before it is beyond its sight.
            self.empty_text = (
                f"no task has finished since the agent started at {clock(model.history_since)} "
                "(earlier finishes were not seen)"
            )
        finished = [
            task
            for task in model.finished()
            if not options.filter or matches(task, options.filter, model.object_letters)
        ]
        self.set_rows([task.id for task in reversed(finished)])

    def _widths(self) -> tuple[int, int, bool]:
        """The name and coroutine columns' widths and whether LIVED shows: narrower in an
        80-column terminal, for the outcome to stay on screen."""
        if 0 < self.size.width < FULL_COLUMNS_FROM:
            return 12, 10, False
        return 24, 24, True

    def header(self) -> Text:
        name, coro, lived = self._widths()
        lived_column = f"{'LIVED':>7}  " if lived else ""
        return Text(f"   {'ENDED':>9} {'NAME':{name}} {'COROUTINE':{coro}} {lived_column}OUTCOME")

    def render_row(self, key: str) -> Text:
        task = self.model.tasks.get(key)
        if task is None:
            return Text(f"   {key} (gone)", style="dim")
        ago = (
            format_duration(max(0.0, self.clock() - task.finished_at)) + " ago"
            if task.finished_at is not None
            else "?"
        )
        if task.state == "failed":
            outcome = Text(safe_text(task.exception or "failed", 120), style="red")
        elif task.state == "cancelled":
            outcome = Text("cancelled", style="yellow")
        else:
            result = task.result
            outcome = Text("done" + (f": {safe_text(result, 100)}" if result else ""))
        name_width, coro_width, lived = self._widths()
        return Text.assemble(
            marker(task, warned=task.id in self.warned),
            " ",
            ago.rjust(9),
            " ",
            pad_cells(safe_text(task.name, name_width), name_width),
            " ",
            (
                pad_cells(coro_text(task, coro_width), coro_width),
                "dim" if made_by_asyncio(task) else "cyan",
            ),
            " ",
            (age_text(task, self.clock()).rjust(7) + "  ") if lived else "",
            outcome,
        )
