"""`taskscope replay FILE`: the dashboard on a recording (`sources.recording.RecordingSource`).

Every view works as on a live process; the app's clock is the moment shown, so ages and
countdowns are said at that moment. Keys move in time (step, jump, start, end, a typed time),
play and pause (space), and change the speed; the header says it is a recording, of which
process, and which moment is shown; a one-line timeline under it draws the pending tasks over
the recording with the shown moment marked.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input, Static

from taskscope.recording import Recording, parse_at
from taskscope.report import safe_text
from taskscope.sources.recording import RecordingSource
from taskscope.ui.app import HELP, TaskscopeApp
from taskscope.ui.help_screen import HelpScreen
from taskscope.words import recording_moment

#: What the replay keys do, for the help screen.
HELP.update(
    {
        "step(-1)": "back one recorded update",
        "step(1)": "on one recorded update",
        "jump(-10)": "back 10 seconds",
        "jump(10)": "on 10 seconds",
        "to_start": "the start of the recording",
        "to_end": "the end of the recording",
        "ask_time": "go to a time: seconds or M:SS from the start, -S from the end, HH:MM:SS",
        "faster": "play faster",
        "slower": "play slower",
    }
)

BLOCKS = "▁▂▃▄▅▆▇█"


class TimelineRead(Message):
    def __init__(self, times: list[float], pending: list[int]) -> None:
        super().__init__()
        self.times = times
        self.pending = pending


class Timeline(Static):
    """One line: pending tasks over the recording (one cell per slice of time), the slice of
    the shown moment in reverse."""

    DEFAULT_CSS = "Timeline { height: 1; }"

    def __init__(self, recording: Recording) -> None:
        super().__init__(id="timeline")
        self.recording = recording
        self.times: list[float] = []
        self.pending: list[int] = []
        self.position = recording.end

    def set_counts(self, times: list[float], pending: list[int]) -> None:
        self.times, self.pending = times, pending
        self.refresh()

    def show_position(self, at: float) -> None:
        if at != self.position:
            self.position = at
            self.refresh()

    def cell_of(self, at: float, width: int) -> int:
        span = max(self.recording.end - self.recording.start, 1e-9)
        return min(width - 1, max(0, int((at - self.recording.start) / span * width)))

    def render(self) -> Text:
        width = max(1, self.content_region.width or 80)
        if not self.pending:
            return Text("reading the recording for its timeline…", style="italic dim")
        cells: list[int] = [-1] * width
        for at, count in zip(self.times, self.pending, strict=True):
            cell = self.cell_of(at, width)
            cells[cell] = max(cells[cell], count)
        last = 0
        for index, value in enumerate(cells):  # slices with no update hold the last count
            cells[index] = last = value if value >= 0 else last
        top = max(max(cells), 1)
        here = self.cell_of(self.position, width)
        text = Text()
        for index, value in enumerate(cells):
            block = BLOCKS[min(len(BLOCKS) - 1, value * (len(BLOCKS) - 1) // top)]
            text.append(block, style="reverse bold" if index == here else "cyan")
        return text


class ReplayApp(TaskscopeApp):
    """The dashboard on a recording: moves in time instead of following a process."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *TaskscopeApp.BINDINGS,
        Binding("left_square_bracket", "step(-1)", "Back", key_display="["),
        Binding("right_square_bracket", "step(1)", "On", key_display="]"),
        Binding("left_curly_bracket", "jump(-10)", "-10s", key_display="{"),
        Binding("right_curly_bracket", "jump(10)", "+10s", key_display="}"),
        # Over the lists' own home/end: in a replay they move in time.
        Binding("home", "to_start", "Start", show=False, priority=True),
        Binding("end", "to_end", "End", show=False, priority=True),
        Binding("colon", "ask_time", "Go to time", key_display=":"),
        Binding("plus", "faster", "Faster", key_display="+"),
        Binding("minus", "slower", "Slower", key_display="-"),
    ]

    def __init__(self, source: RecordingSource, **options: object) -> None:
        super().__init__(source, clock=source.now, **options)  # type: ignore[arg-type]
        self.recording_source = source
        self.strip = Timeline(source.recording)
        self.timeline = self.strip
        self._time_box: Input | None = None

    def start_feed(self) -> None:
        super().start_feed()
        self._read_timeline()

    def moment_text(self) -> str:
        source = self.recording_source
        state = f"playing · {source.speed:g}x" if source.playing else f"paused · {source.speed:g}x"
        return (
            f"recording of {source.pid} · "
            f"{recording_moment(source.position, source.start, source.end)} · {state}"
        )

    def feed_applied(self) -> None:
        self.strip.show_position(self.recording_source.position)

    @work(thread=True, group="timeline")
    def _read_timeline(self) -> None:
        times: list[float] = []
        pending: list[int] = []
        try:
            for at, state in self.recording_source.recording.states():
                times.append(at)
                pending.append(sum(task["state"] == "pending" for task in state["tasks"]))
        except Exception:  # a damaged end: the timeline shows what could be read
            pass
        self.post_message(TimelineRead(times, pending))

    @on(TimelineRead)
    def _timeline_read(self, message: TimelineRead) -> None:
        self.strip.set_counts(message.times, message.pending)

    # --- keys ----------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("to_start", "to_end") and isinstance(self.focused, Input):
            return False
        return super().check_action(action, parameters)

    def action_help(self) -> None:
        words = {**HELP, "toggle_pause": "play or pause the recording"}
        keys = [
            (
                binding.key_display or binding.key,
                words.get(binding.action.removeprefix("app."), binding.description),
            )
            for binding in [*self.main.BINDINGS, *self.BINDINGS[len(TaskscopeApp.BINDINGS) :]]
            if isinstance(binding, Binding)
        ]
        self.push_screen(HelpScreen(keys))

    def _moved(self) -> None:
        self.strip.show_position(self.recording_source.position)
        self.main.changed()

    def action_toggle_pause(self) -> None:
        self.recording_source.toggle_play()
        self._moved()

    def action_step(self, updates: int) -> None:
        self.recording_source.step(updates)
        self._moved()

    def action_jump(self, seconds: float) -> None:
        self.recording_source.seek_by(seconds)
        self._moved()

    def action_to_start(self) -> None:
        self.recording_source.seek(self.recording_source.start)
        self._moved()

    def action_to_end(self) -> None:
        self.recording_source.seek(self.recording_source.end)
        self._moved()

    def action_faster(self) -> None:
        self.recording_source.faster()
        self._moved()

    def action_slower(self) -> None:
        self.recording_source.slower()
        self._moved()

    def action_ask_time(self) -> None:
        if self._time_box is not None:
            self._time_box.focus()
            return
        box = Input(
            placeholder="go to: seconds or M:SS from the start, -S from the end, HH:MM:SS; "
            "Enter goes, Esc cancels",
            id="time-box",
        )
        self._time_box = box
        self.main.mount(box, before=self.main.query_one("Footer"))
        box.focus()

    @on(Input.Submitted, "#time-box")
    def _time_typed(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        self._close_time_box()
        if not text:
            return
        try:
            at = parse_at(text, self.recording_source.recording)
        except ValueError as error:
            self.notify(safe_text(str(error)), title="Not a time", severity="warning")
            return
        shown = self.recording_source.seek(at)
        if shown != at:
            self.notify("That time is outside the recording: showing its nearest end", timeout=4)
        self._moved()

    def on_key(self, event: object) -> None:
        key = getattr(event, "key", None)
        if key == "escape" and self._time_box is not None and self._time_box.has_focus:
            self._close_time_box()

    def _close_time_box(self) -> None:
        box, self._time_box = self._time_box, None
        if box is not None:
            box.remove()
            self.main.views.shown.focus()


def run_replay(source: RecordingSource) -> int:
    """`taskscope replay FILE`: the dashboard on the recording until the user quits."""
    app = ReplayApp(source)
    try:
        result = app.run()
    except KeyboardInterrupt:
        return 130
    finally:
        source.close()
    return result if result is not None else 0
