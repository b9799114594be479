"""The stalls view: every step that held a loop longer than its stall threshold, newest first,
from every loop's stall history: how long, how long ago, which task (or callback) ran, and
the blocking line (the innermost frame of the program's own code in the stack sampled while the
step still ran). A stall still under way is marked; the whole stack goes to the detail pane.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from rich.text import Text

from taskscope.model import LoopInfo, Stall, TaskModel
from taskscope.report import pad_cells, safe_text
from taskscope.ui.row_list import RowList
from taskscope.ui.task_display import FULL_COLUMNS_FROM, ViewOptions, blocking_frame, who_stalled
from taskscope.words import format_duration, no_stalls_words, step_time_text

#: The width of the task (or callback) column.
WHO_WIDTH = 20
#: Marks a stall still under way (the loop is blocked now).
ONGOING_MARK = "⏸"


def stall_key(loop: LoopInfo, stall: Stall) -> str:
    return f"{loop.id}|{stall.started_at!r}"


class StallTable(RowList):
    """Every loop's stall history as rows, newest first; a row's key names loop and stall."""

    def __init__(self, clock: Callable[[], float], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.model = TaskModel()
        self.stalls: dict[str, tuple[LoopInfo, Stall]] = {}
        self.empty_text = no_stalls_words(None)

    def update_rows(self, model: TaskModel, options: ViewOptions) -> None:
        self.model = model
        self.stalls = {
            stall_key(loop, stall): (loop, stall)
            for loop in model.loops.values()
            for stall in loop.stalls
        }
        thresholds = sorted(
            {loop.stall_threshold for loop in model.loops.values() if loop.stall_threshold}
        )
        self.empty_text = no_stalls_words(thresholds[0] if thresholds else None)
        newest_first = sorted(
            self.stalls, key=lambda key: self.stalls[key][1].started_at, reverse=True
        )
        self.set_rows(newest_first)

    def stall(self, key: str | None) -> tuple[LoopInfo, Stall] | None:
        return self.stalls.get(key) if key is not None else None

    def _who_width(self) -> int:
        """The task column's width: narrower in an 80-column terminal, for the blocking line
        to show."""
        return 12 if 0 < self.size.width < FULL_COLUMNS_FROM else WHO_WIDTH

    def header(self) -> Text:
        loop = f"  {'LOOP'}" if len(self.model.loops) > 1 else ""
        who = "TASK OR CALLBACK" if self._who_width() == WHO_WIDTH else "RAN"
        width = self._who_width()
        return Text(f"  {'LASTED':>7} {'AGO':>7}  {who:{width}} BLOCKING LINE{loop}")

    def render_row(self, key: str) -> Text:
        found = self.stalls.get(key)
        if found is None:
            return Text(f"  {key} (gone)", style="dim")
        loop, stall = found
        frame = blocking_frame(stall.stack)
        if frame is not None:
            # The file's name only (the detail pane has its path): a narrow view keeps it.
            place = os.path.basename(frame.file) + (f":{frame.line}" if frame.line else "")
            line = Text.assemble(
                (safe_text(frame.function, 40) + "()", "cyan"), "  ", (safe_text(place), "dim")
            )
        else:
            line = Text("(no stack sampled)", style="dim")
        ago = format_duration(max(0.0, self.clock() - stall.started_at))
        mark = (ONGOING_MARK, "bold red") if stall.ongoing else (" ", "")
        loop_column = f"  {safe_text(loop.label, 20)}" if len(self.model.loops) > 1 else ""
        width = self._who_width()
        who = pad_cells(safe_text(who_stalled(stall), width), width)
        return Text.assemble(
            mark,
            " ",
            (step_time_text(stall.duration).rjust(7), "bold red" if stall.ongoing else "bold"),
            " ",
            ago.rjust(7),
            "  ",
            (who, "bold"),
            " ",
            line,
            (loop_column, "dim"),
        )
