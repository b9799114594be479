"""The confirmation before cancelling: it names the task (and, for a subtree, how many tasks)
and only `y` confirms (any other key, Escape included, keeps the task running); a warning
comes first when the cancel would end the program."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.events import Key
from textual.screen import ModalScreen
from textual.widgets import Static


class CancelDialog(ModalScreen[bool]):
    """Dismisses with True only when the user presses y."""

    def __init__(self, question: str, detail: str = "", warning: str = "") -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.warning = warning

    def compose(self) -> ComposeResult:
        with Vertical(id="cancel-box"):
            if self.warning:
                yield Static(Text(self.warning, style="bold red"), id="cancel-warning")
            yield Static(Text(self.question + " [y/N]", style="bold"), id="cancel-question")
            if self.detail:
                yield Static(Text(self.detail), id="cancel-detail")
            yield Static(Text("y cancels · n, Esc or Enter keeps it running", style="dim"))

    def on_key(self, event: Key) -> None:
        # Only y confirms. Anything else is a no: a stray key never cancels, and never leaks
        # to the app behind the dialog (Ctrl+C still quits: it is a priority binding).
        event.stop()
        event.prevent_default()
        self.dismiss(event.key == "y")
