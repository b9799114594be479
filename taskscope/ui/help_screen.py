"""The help screen (`?`): every key of the dashboard with what it does."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

#: Keys handled by the views themselves, not by app bindings.
VIEW_KEYS: list[tuple[str, str]] = [
    ("↑ ↓ PgUp PgDn Home End", "move the cursor"),
    ("← →", "collapse / expand a tree node (← again goes to the parent)"),
    (
        "Enter",
        "grouped view: open the group's tasks; stalls view: the stall's whole stack, "
        "focused to scroll; detail links: jump to the task",
    ),
    (
        "Tab / Shift+Tab",
        "move between the task view and the detail pane's links (held by, awaits, ...)",
    ),
]


class HelpScreen(ModalScreen[None]):
    """A table of keys; Escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close help")
    ]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
        table.add_column("Key", style="bold cyan", no_wrap=True)
        table.add_column("Does")
        for key, description in [*self.keys, *VIEW_KEYS]:
            table.add_row(Text(key), Text(description))
        with VerticalScroll(id="help-box"):
            yield Static(Text("taskscope keys", style="bold"))
            yield Static(table)
            yield Static(Text("Escape, q or ? closes this help.", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
