"""A scrolling list of rows drawn from data on demand (the Line API): the base of the flat
task table, the grouped view and the history.

Only the lines on screen are rendered, so 100,000 rows cost a sorted list of keys, not
100,000 widgets; the cursor follows its row's key when the rows change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip


class RowList(ScrollView, can_focus=True):
    """Rows identified by string keys, with a header line and a cursor."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "choose", "Open", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {"row-list--header", "row-list--cursor"}

    class RowHighlighted(Message):
        """The cursor moved onto a row."""

        def __init__(self, row_list: RowList, key: str | None) -> None:
            super().__init__()
            self.row_list = row_list
            self.key = key

        @property
        def control(self) -> RowList:
            return self.row_list

    class RowChosen(Message):
        """Enter was pressed on a row."""

        def __init__(self, row_list: RowList, key: str) -> None:
            super().__init__()
            self.row_list = row_list
            self.key = key

        @property
        def control(self) -> RowList:
            return self.row_list

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.keys: list[str] = []
        self._index: dict[str, int] | None = None
        self.cursor = 0
        self.empty_text = "nothing to show"
        #: Called at once when the cursor lands on another row, before `RowHighlighted`
        #: reaches anyone: what follows the cursor is then painted in the same frame.
        self.cursor_moved: Callable[[str | None], None] | None = None

    # --- subclass hooks ------------------------------------------------------------------------

    def header(self) -> Text:
        return Text("")

    def render_row(self, key: str) -> Text:
        return Text(key)

    # --- rows ----------------------------------------------------------------------------------

    @property
    def cursor_key(self) -> str | None:
        return self.keys[self.cursor] if 0 <= self.cursor < len(self.keys) else None

    def set_rows(self, keys: list[str]) -> None:
        """Replace the rows, keeping the cursor on the same key when it is still there."""
        current = self.cursor_key
        self.keys = keys
        self._index = None
        if current is not None:
            index = self.index_of(current)
            if index is not None:
                self.cursor = index
        self.cursor = max(0, min(self.cursor, len(keys) - 1))
        self.virtual_size = Size(self.size.width, len(keys) + 1)
        self.refresh()
        if self.cursor_key != current:
            self._highlighted()

    def index_of(self, key: str) -> int | None:
        if self._index is None:
            self._index = {row: index for index, row in enumerate(self.keys)}
        return self._index.get(key)

    def select_key(self, key: str) -> bool:
        index = self.index_of(key)
        if index is None:
            return False
        self._move_to(index)
        return True

    def _move_to(self, index: int) -> None:
        if not self.keys:
            return
        index = max(0, min(index, len(self.keys) - 1))
        changed = index != self.cursor
        self.cursor = index
        height = max(1, self.size.height - 1)
        top = self.scroll_offset.y
        if index < top:
            self.scroll_to(y=index, animate=False)
        elif index >= top + height:
            self.scroll_to(y=index - height + 1, animate=False)
        self.refresh()
        if changed:
            self._highlighted()

    def _highlighted(self) -> None:
        if self.cursor_moved is not None:
            self.cursor_moved(self.cursor_key)
        self.post_message(self.RowHighlighted(self, self.cursor_key))

    def action_cursor(self, step: int) -> None:
        self._move_to(self.cursor + step)

    def action_page(self, direction: int) -> None:
        self._move_to(self.cursor + direction * max(1, self.size.height - 2))

    def action_jump(self, index: int) -> None:
        self._move_to(index if index >= 0 else len(self.keys) - 1)

    def action_choose(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.RowChosen(self, key))

    def on_click(self, event: object) -> None:
        offset = getattr(event, "y", None)
        if isinstance(offset, int) and offset >= 1:
            self._move_to(self.scroll_offset.y + offset - 1)

    # --- rendering -----------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y == 0:
            style = self.get_component_rich_style("row-list--header")
            return self._strip(self.header(), width, base + style)
        index = self.scroll_offset.y + y - 1
        if index >= len(self.keys):
            if index == 0:
                return self._strip(Text(self.empty_text, style="dim italic"), width, base)
            return Strip.blank(width, base)
        text = self.render_row(self.keys[index])
        style = base
        if index == self.cursor:
            style = base + self.get_component_rich_style("row-list--cursor")
            text.stylize(style)
        return self._strip(text, width, style)

    def _strip(self, text: Text, width: int, style: Style) -> Strip:
        text.no_wrap = True
        text.overflow = "ellipsis"
        segments = [segment for segment in text.render(self.app.console) if segment.text != "\n"]
        return (
            Strip(segments).crop_extend(0, width, style).simplify()
            if segments
            else Strip([Segment(" " * width, style)])
        )
