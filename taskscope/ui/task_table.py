"""The flat task table: one row per shown task, sorted by age, busy time, steps, time waited,
name or state; WAITED says how long each task has waited where it is (see `wait_words`).
When the agent times steps, BUSY and STEPS come right after the name, in place of STATE (the
marker says the state), so that a narrow terminal still shows them: "which task eats my loop"
is the list sorted by busy."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text

from taskscope.model import TaskInfo, TaskModel
from taskscope.report import pad_cells, safe_text
from taskscope.ui.row_list import RowList
from taskscope.ui.task_display import (
    FULL_COLUMNS_FROM,
    ViewOptions,
    age_text,
    awaiting_text,
    coro_text,
    has_figures,
    made_by_asyncio,
    marker,
    matches_itself,
    sort_key,
)
from taskscope.words import count_text, cycle_note, step_time_text, wait_words


class TaskTable(RowList):
    """Every shown task as a row; rows are task ids, drawn from the model when on screen."""

    def __init__(self, clock: Callable[[], float], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.model = TaskModel()
        self.options = ViewOptions()
        self.empty_text = "no tasks match"
        #: The agent times steps: BUSY and STEPS columns instead of STATE.
        self.figures = False
        #: The tasks some warning is about (marked ⚠).
        self.warned: frozenset[str] = frozenset()

    def update_rows(self, model: TaskModel, options: ViewOptions) -> None:
        new_filter = options.filter if options.filter != self.options.filter else ""
        self.model = model
        self.options = options
        self.figures = has_figures(model)
        now = self.clock()
        shown = [
            task for task in model.tasks.values() if options.shows(task, now, model.object_letters)
        ]
        shown.sort(key=sort_key(options.sort))
        self.set_rows([task.id for task in shown])
        if new_filter:
            # On the first task named like the filter, not one that only awaits it.
            current = model.tasks.get(self.cursor_key or "")
            if current is None or not matches_itself(current, new_filter):
                named = next((t.id for t in shown if matches_itself(t, new_filter)), None)
                if named is not None:
                    self.select_key(named)

    def _narrow(self) -> bool:
        """An 80-column terminal's table: the name, the coroutine and what a task awaits (the
        detail pane says the rest), rather than columns that push the awaiting out of sight."""
        return 0 < self.size.width < FULL_COLUMNS_FROM

    def header(self) -> Text:
        if self._narrow():
            figure = f"{'BUSY':>7} " if self.figures else ""
            return Text(f"   {'ID':>5} {'NAME':12} {'COROUTINE':10} {figure}AWAITING")
        if self.figures:
            return Text(
                f"   {'ID':>6} {'NAME':20} {'BUSY':>7} {'STEPS':>7} {'AGE':>7} {'WAITED':>7}  "
                f"{'COROUTINE':18} AWAITING"
            )
        return Text(
            f"   {'ID':>6} {'NAME':24} {'COROUTINE':24} {'STATE':9} {'AGE':>7} {'WAITED':>7}  "
            "AWAITING"
        )

    def render_row(self, key: str) -> Text:
        task = self.model.tasks.get(key)
        if task is None:
            return Text(f"   {key:>6} (gone)", style="dim")
        in_cycle = task.id in self.model.cycle_members() if self.model.cycles else False
        what = awaiting_text(task, self.model, self.clock()) + cycle_note(in_cycle)
        waited = wait_words(*task.known_wait(self.clock()))
        quiet = task.finished or made_by_asyncio(task)
        if self._narrow():
            return Text.assemble(
                *self._lead(task, in_cycle, quiet, 5, 12),
                (pad_cells(coro_text(task, 10), 10), "dim" if quiet else "cyan"),
                " ",
                (step_time_text(task.busy_s).rjust(7) + " ") if self.figures else "",
                what,
            )
        if self.figures:
            return Text.assemble(
                *self._lead(task, in_cycle, quiet, 6, 20),
                step_time_text(task.busy_s).rjust(7),
                " ",
                count_text(task.steps).rjust(7),
                " ",
                age_text(task, self.clock()).rjust(7),
                " ",
                waited.rjust(7),
                "  ",
                (pad_cells(coro_text(task, 18), 18), "dim" if quiet else "cyan"),
                " ",
                what,
            )
        return Text.assemble(
            *self._lead(task, in_cycle, quiet, 6, 24),
            (pad_cells(coro_text(task, 24), 24), "dim" if quiet else "cyan"),
            " ",
            f"{task.state:9} ",
            age_text(task, self.clock()).rjust(7),
            " ",
            waited.rjust(7),
            "  ",
            what,
        )

    def _lead(
        self, task: TaskInfo, in_cycle: bool, quiet: bool, id_width: int, name_width: int
    ) -> tuple[Text | str | tuple[str, str], ...]:
        """What every layout's row begins with: the marker, the id and the name."""
        return (
            marker(task, in_cycle, warned=task.id in self.warned),
            " ",
            f"{task.id:>{id_width}} ",
            (pad_cells(safe_text(task.name, name_width), name_width), "dim" if quiet else "bold"),
            " ",
        )
