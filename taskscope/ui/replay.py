"""`taskscope replay FILE`: the dashboard on a recording (`sources.recording.RecordingSource`).

Every view works as on a live process; the app's clock is the moment shown, so ages and
countdowns are said at that moment. Keys move in time (step, jump, start, end, a typed time),
play and pause (space), and change the speed; the header says it is a recording, of which
process, and which moment is shown; a one-line timeline under it draws the pending tasks over
the recording with the shown moment marked, the stalls the recording holds (`◆`) and the
sampled moments that had warnings (`!`); `n` and `N` go to just after the next and the
previous stall.

The timeline is read once, on a worker thread, as the recording opens: every update for its
pending count and its loops' stalls (the agent keeps a stall in a bounded list, so one stall is
in many updates: they are told apart by loop and time), and the lints at each keyframe and at
the end only (`WARNING_SAMPLES` keyframes at most), which keeps opening a large recording fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input, Static

from taskscope.lints import find_warnings, warning_records
from taskscope.model import TaskModel
from taskscope.recording import KEYFRAME, Recording, parse_at
from taskscope.report import safe_text
from taskscope.sources.recording import RecordingSource
from taskscope.ui.app import HELP, TaskscopeApp
from taskscope.ui.help_screen import HelpScreen
from taskscope.words import recording_moment, stall_mark_text

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
        "stall(1)": "just after the next stall (◆ on the timeline)",
        "stall(-1)": "just after the previous stall",
    }
)

BLOCKS = "▁▂▃▄▅▆▇█"
#: The timeline's marks: a stall started in the cell; warnings were found at a moment in it.
STALL_MARK = "◆"
WARNING_MARK = "!"
#: At most this many moments of a recording are linted for the timeline's warning marks.
WARNING_SAMPLES = 64


@dataclass(frozen=True, slots=True)
class StallMark:
    """One stall of a recording (one step that held a loop), told apart by loop and time."""

    loop: str
    started_at: float
    duration: float
    task_name: str | None
    callback: str | None
    #: The first recorded update that holds the stall ended (its stalls view lists it).
    shown_from: float
    #: Still running at the last update that held it.
    ongoing: bool = False


@dataclass(slots=True)
class TimelineFacts:
    """What the timeline draws, read from every update of a recording."""

    times: list[float] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    #: Every stall, by start.
    stalls: list[StallMark] = field(default_factory=list)
    #: The sampled moments that had warnings (keyframes and the end), with how many.
    warned: list[tuple[float, int]] = field(default_factory=list)


def read_timeline(recording: Recording) -> TimelineFacts:
    """The pending count and stalls of every update of `recording`, and the warnings at its
    keyframes and its end. A damaged end: what could be read."""
    facts = TimelineFacts()
    chunks = recording.chunks
    stalls: dict[tuple[str, float], StallMark] = {}
    samples = {index for index, chunk in enumerate(chunks) if chunk.flags == KEYFRAME}
    if len(samples) > WARNING_SAMPLES:
        every = len(samples) / WARNING_SAMPLES
        ordered = sorted(samples)
        samples = {ordered[int(n * every)] for n in range(WARNING_SAMPLES)}
    samples.add(len(chunks) - 1)
    try:
        for index, (at, state) in enumerate(recording.states()):
            facts.times.append(at)
            facts.pending.append(sum(task["state"] == "pending" for task in state["tasks"]))
            for loop in state.get("loops", ()):
                for stall in loop.get("stalls", ()):
                    _note_stall(stalls, str(loop["id"]), stall, at)
            if index in samples:
                try:
                    found = _warnings_in(state)
                except Exception:  # records the lints cannot read: no mark, the rest goes on
                    found = 0
                if found:
                    facts.warned.append((at, found))
    except Exception:  # a damaged end: the timeline shows what could be read
        pass
    facts.stalls = sorted(stalls.values(), key=lambda mark: (mark.started_at, mark.loop))
    return facts


def _note_stall(
    stalls: dict[tuple[str, float], StallMark], loop: str, stall: dict[str, Any], at: float
) -> None:
    """Keep one mark per stall: its first sighting, then the first one where it had ended
    (its whole length), which is where a jump to it lands. A stall's record while it runs
    says its start a microsecond apart from the record once it ended (the agent works it out
    from another clock): the two are one stall when their times overlap, as two steps of one
    loop never do."""
    started_at = float(stall["started_at"])
    duration = float(stall["duration"])
    key = (loop, started_at)
    known = stalls.get(key)
    if known is None:
        key, known = next(
            (
                (other_key, other)
                for other_key, other in stalls.items()
                if other.loop == loop
                and other.started_at < started_at + duration
                and started_at < other.started_at + other.duration
            ),
            (key, None),
        )
    if known is not None and not known.ongoing:
        return
    ongoing = bool(stall.get("ongoing"))
    stalls.pop(key, None)
    stalls[(loop, started_at)] = StallMark(
        loop=loop,
        started_at=started_at,
        duration=duration,
        task_name=stall.get("task_name"),
        callback=stall.get("callback"),
        shown_from=at if known is None or not ongoing else known.shown_from,
        ongoing=ongoing,
    )


def _warnings_in(state: dict[str, Any]) -> int:
    """How many warnings the lints find in one recorded state (the records a warning can be
    about only: a model of every record would cost far more)."""
    model = TaskModel.from_snapshot(warning_records(state))  # type: ignore[arg-type]
    return len(find_warnings(model))


class TimelineRead(Message):
    def __init__(self, facts: TimelineFacts) -> None:
        super().__init__()
        self.facts = facts


class Timeline(Static):
    """One line: pending tasks over the recording (one cell per slice of time), a `◆` where a
    stall started, a `!` where warnings were found, the slice of the shown moment in reverse."""

    DEFAULT_CSS = "Timeline { height: 1; }"

    def __init__(self, recording: Recording) -> None:
        super().__init__(id="timeline")
        self.recording = recording
        self.facts = TimelineFacts()
        self.position = recording.end

    @property
    def pending(self) -> list[int]:
        return self.facts.pending

    def set_facts(self, facts: TimelineFacts) -> None:
        self.facts = facts
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
        facts = self.facts
        if not facts.pending:
            return Text("reading the recording for its timeline…", style="italic dim")
        cells: list[int] = [-1] * width
        for at, count in zip(facts.times, facts.pending, strict=True):
            cell = self.cell_of(at, width)
            cells[cell] = max(cells[cell], count)
        last = 0
        for index, value in enumerate(cells):  # slices with no update hold the last count
            cells[index] = last = value if value >= 0 else last
        top = max(max(cells), 1)
        here = self.cell_of(self.position, width)
        stalled = {self.cell_of(stall.started_at, width) for stall in facts.stalls}
        warned = {self.cell_of(at, width) for at, _count in facts.warned}
        text = Text()
        for index, value in enumerate(cells):
            if index in stalled:
                mark, style = STALL_MARK, "bold red"
            elif index in warned:
                mark, style = WARNING_MARK, "bold yellow"
            else:
                mark, style = BLOCKS[min(len(BLOCKS) - 1, value * (len(BLOCKS) - 1) // top)], "cyan"
            text.append(mark, style="reverse bold" if index == here else style)
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
        Binding("n", "stall(1)", "Next stall"),
        Binding("N", "stall(-1)", "Previous stall", key_display="N", show=False),
    ]

    def __init__(self, source: RecordingSource, **options: object) -> None:
        super().__init__(source, clock=source.now, **options)  # type: ignore[arg-type]
        self.recording_source = source
        self.strip = Timeline(source.recording)
        self.timeline = self.strip
        self._time_box: Input | None = None
        #: The timeline (and its stalls) has been read.
        self.timeline_read = False

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
        self.post_message(TimelineRead(read_timeline(self.recording_source.recording)))

    @on(TimelineRead)
    def _timeline_read(self, message: TimelineRead) -> None:
        self.timeline_read = True
        self.strip.set_facts(message.facts)

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

    def action_stall(self, direction: int) -> None:
        """Go to just after the next (1) or previous (-1) stall: the first update that holds
        it whole, so the stalls view and the detail show it."""
        if not self.timeline_read:
            self.notify("Still reading the recording for its stalls", timeout=3)
            return
        stalls = self.strip.facts.stalls
        if not stalls:
            self.notify("This recording holds no stall", timeout=3)
            return
        position = self.recording_source.position
        order = sorted(range(len(stalls)), key=lambda i: (stalls[i].shown_from, i))
        if direction > 0:
            chosen = next((i for i in order if stalls[i].shown_from > position), None)
        else:
            chosen = next((i for i in reversed(order) if stalls[i].shown_from < position), None)
        if chosen is None:
            self.notify(f"No {'later' if direction > 0 else 'earlier'} stall", timeout=3)
            return
        stall = stalls[chosen]
        self.recording_source.seek(stall.shown_from)
        self._moved()
        text = stall_mark_text(
            chosen + 1,
            len(stalls),
            stall.task_name or stall.callback,
            stall.duration,
            stall.ongoing,
            stall.started_at,
        )
        self.notify(safe_text(text), timeout=4)

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
