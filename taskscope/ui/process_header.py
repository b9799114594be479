"""The header: the process (pid, command, Python, CPU, memory, threads, open files), each event
loop (running, or blocked and for how long; tasks by state), how old the data is, and whether
updates are paused or the process has exited; under it, each loop's steps per second, busy
share and lag over the last minutes as sparklines (`LoopTrends`)."""

from __future__ import annotations

import os
from collections import deque
from typing import Any, Final

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from taskscope.model import LoopInfo, TaskModel
from taskscope.report import gil_wait_words, loop_names, program_words, safe_text
from taskscope.ui.source import ProcessInfo
from taskscope.ui.task_display import same_height
from taskscope.words import format_duration, lag_text, rate_text, share_text


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB"


def _program(command: str) -> str:
    return " ".join(program_words(command.split())) or "?"


def _fitted(command: str, width: int) -> str:
    """The command in `width` cells: paths lose their directories before anything is cut."""
    command = safe_text(command)
    if len(command) <= width:
        return command
    words = [os.path.basename(word) if "/" in word else word for word in command.split()]
    return safe_text(" ".join(words), width)


SEPARATOR = " · "


def _folded(line: Text, width: int) -> Text:
    """`line` broken where a fact ends (at a " · ") so that no fact is split across lines
    (a narrow terminal); unchanged when it fits."""
    if width <= 0 or line.cell_len <= width:
        return line
    plain = line.plain
    parts: list[Text] = []
    start = 0
    while line.cell_len - start > width:
        cut = plain.rfind(SEPARATOR, start, start + width)
        if cut <= start:
            break  # one fact wider than the line: let it wrap
        parts.append(line[start:cut])
        start = cut + len(SEPARATOR)
    parts.append(line[start:])
    return Text("\n").join(parts)


class ProcessHeader(Static):
    """Two or more lines of facts; rebuilt from the model and process facts on each tick."""

    _last_text: Text | None = None
    _shown_args: tuple[Any, ...] | None = None

    def on_resize(self) -> None:
        # The process line is fitted to the width: fit it again.
        if self._shown_args is not None:
            model, info, data_age, paused, gone, notice, moment, warnings = self._shown_args
            self.show(
                model,
                info,
                data_age,
                paused=paused,
                gone=gone,
                notice=notice,
                moment=moment,
                warnings=warnings,
            )

    def _process_line(self, model: TaskModel | None, info: ProcessInfo) -> Text:
        """`taskscope · pid · command · Python · CPU · RSS · threads · fds` on one line: the
        command gives up what does not fit (its directories first), never the facts after it."""
        pid = info.get("pid", model.pid if model else 0)
        facts: list[str] = []
        python = info.get("python") or (model.python if model else "")
        if python:
            facts.append(f"Python {safe_text(python)}")
        if "host" in info:
            facts.append(f"remote {safe_text(info['host'])}")
        if "cpu_percent" in info:
            facts.append(f"CPU {info['cpu_percent']:.0f}%")
        if "rss" in info:
            facts.append(f"RSS {_megabytes(info['rss'])}")
        if "threads" in info:
            facts.append(f"{info['threads']} threads")
        if "fds" in info:
            facts.append(f"{info['fds']} fds")
        head = f" · pid {pid}"
        tail = "".join(f" · {fact}" for fact in facts)
        text = Text()
        text.append("taskscope", style="bold")
        text.append(head)
        if "command" in info:
            width = self.content_region.width or self.size.width or 1000
            room = width - len("taskscope") - len(head) - len(tail) - len(" · ")
            command = _fitted(_program(info["command"]), max(12, min(60, room)))
            text.append(" · ")
            text.append(command, style="bold cyan")
        text.append(tail)
        return _folded(text, self.content_region.width)

    def _loop_line(
        self, loop: LoopInfo, name: str, counts: dict[str, int], compact: bool = False
    ) -> Text:
        """`loop NAME: running, lag · N pending · done · cancelled · failed` (or blocked);
        `name` as `loop_names` says it; `compact`: the finished counts that are zero left out
        (a narrow terminal)."""
        text = Text(f"loop {name}: ")
        if loop.blocked_for is not None:
            text.append(f"⏸ BLOCKED for {format_duration(loop.blocked_for)}", style="bold red")
            if loop.blocking_stack:
                frame = loop.blocking_stack[-1]
                text.append(
                    f" in {safe_text(frame.function)} {safe_text(frame.location)}",
                    style="red",
                )
        elif loop.running:
            text.append("running", style="green")
            if loop.lag is not None:
                text.append(f", lag {loop.lag * 1000:.1f} ms")
        else:
            text.append("closed" if loop.closed else "not running", style="yellow")
        _append_counts(text, counts, compact)
        return _folded(text, self.content_region.width)

    def _loops_text(self, model: TaskModel, rows: int) -> Text:
        """A line per loop in at most `rows` rows (compact ones if need be); when they do not
        all fit, the most telling (`loops_by_interest`) and a last line summing up the
        others."""
        counts = model.counts_by_loop()
        names = loop_names(model)  # two loops of one thread are told apart by their ids
        loops = list(model.loops.values())
        for compact in (False, True):
            lines = [
                self._loop_line(loop, names[loop.id], counts.get(loop.id, {}), compact)
                for loop in loops
            ]
            if sum(_rows(line) for line in lines) <= rows:
                return Text("\n").join(lines)  # all of them, in the agent's order
        ranked = loops_by_interest(model)
        lines = [
            self._loop_line(loop, names[loop.id], counts.get(loop.id, {}), True) for loop in ranked
        ]
        shown: list[Text] = []
        used = 1  # the summary's row
        for line in lines:
            if used + _rows(line) > rows:
                break
            shown.append(line)
            used += _rows(line)
        rest = ranked[len(shown) :]
        noun = "loop" if len(rest) == 1 else "loops"
        summary = Text(f"+ {len(rest)} more {noun}: ", style="bold")
        running = sum(1 for loop in rest if loop.running and loop.blocked_for is None)
        if running < len(rest):
            summary.append(f"{running} running")
        else:
            summary.append("running" if len(rest) == 1 else "all running")
        totals: dict[str, int] = {}
        for loop in rest:
            for state, count in counts.get(loop.id, {}).items():
                totals[state] = totals.get(state, 0) + count
        short = summary.copy()
        _append_counts(summary, totals, compact=True)
        summary = _folded(summary, self.content_region.width)
        if _rows(summary) > 1:  # a narrow terminal: the pending count only
            short.append(f" · {totals.get('pending', 0):,} pending")
            summary = short
        shown.append(summary)
        return Text("\n").join(shown)

    def show(
        self,
        model: TaskModel | None,
        info: ProcessInfo,
        data_age: float | None,
        *,
        paused: bool,
        gone: str | None,
        notice: str = "",
        moment: str = "",
        warnings: str = "",
    ) -> None:
        """`moment`: a replay's "recording of PID · 14:02:11 (+1:30 of 10:00) · paused · 1x",
        said instead of the data's age. `warnings`: the warnings' summary, one line."""
        self._shown_args = (model, info, data_age, paused, gone, notice, moment, warnings)
        text = self._process_line(model, info)
        if model is not None and model.loops:
            # The status line (data age, paused, exited) and the warnings always keep a row.
            rows = HEADER_ROWS - _rows(text) - 1 - (1 if warnings else 0)
            text.append("\n")
            text.append(self._loops_text(model, max(1, rows)))
        elif model is not None and not moment and gone is None:
            # Attached before the program started asyncio, after its loop ended, or to one that
            # never runs one: an empty tree alone would look like a dashboard that failed.
            text.append("\n")
            text.append(NO_LOOP_NOW, style="italic")
        if warnings:
            width = self.content_region.width or 200
            text.append("\n")
            text.append(safe_text(warnings, width), style="bold yellow")
        text.append("\n")
        if gone is not None:
            text.append(
                f"✗ {safe_text(gone)}: showing the last data received; q quits",
                style="bold white on red",
            )
        elif moment:
            text.append(safe_text(moment), style="bold")
        elif data_age is None:
            text.append("waiting for the first snapshot…", style="italic")
        else:
            style = "bold red" if data_age > 5 else ("yellow" if data_age > 2 else "dim")
            text.append(f"data {data_age:.1f} s old", style=style)
            stopped = info.get("stopped")
            if stopped is not None and data_age > 1:
                text.append(f"  {_stopped_words(stopped, info.get('pid'))}", style="bold red")
        if paused:
            text.append("  ⏸ PAUSED (space resumes)", style="bold black on yellow")
        starved = gil_wait_words(model, short=True) if model is not None and not moment else None
        if starved is not None:
            text.append(f"  {starved}", style="yellow")
        if notice:
            text.append("  ")
            text.append(notice, style="italic")
        if text != self._last_text:  # skip no-ops; lay the screen out only for a new height
            old, self._last_text = self._last_text, text
            self.update(text, layout=not same_height(old, text, self.content_region.width))


def _stopped_words(why: str, pid: int | None) -> str:
    """Why no data comes from a stopped process, and how to let it run."""
    if why == "tracer":
        return "⏸ the process is held by a debugger: nothing runs in it until it continues"
    return f"⏸ the process is stopped (SIGSTOP, Ctrl-Z): `kill -CONT {pid}` resumes it"


#: The header's line while the process has no event loop.
NO_LOOP_NOW: Final = "no event loop runs in this process now: its tasks show here once one does"


#: The header's height at most (`#header`'s max-height in app.tcss).
HEADER_ROWS = 6


def _rows(text: Text) -> int:
    return text.plain.count("\n") + 1


def _append_counts(text: Text, counts: dict[str, int], compact: bool = False) -> None:
    """` · N pending · N done · N cancelled · N failed`; `compact`: zeros after pending
    left out."""
    text.append(f" · {counts.get('pending', 0):,} pending")
    for state, style in (("done", "dim"), ("cancelled", "yellow"), ("failed", "red")):
        count = counts.get(state, 0)
        if count or not compact:
            text.append(f" · {count:,} {state}", style=style)


def loops_by_interest(model: TaskModel) -> list[LoopInfo]:
    """The loops, the most telling first, for the header and its sparklines when not all
    fit: the blocked ones (longest first), then the main thread's, then the others in the
    agent's order."""
    loops = list(model.loops.values())
    order = {loop.id: index for index, loop in enumerate(loops)}
    return sorted(
        loops,
        key=lambda loop: (
            loop.blocked_for is None,
            -(loop.blocked_for or 0.0),
            loop.thread_name != "MainThread",
            order[loop.id],
        ),
    )


#: Samples kept per loop and figure: one per update, two minutes at the default interval.
TREND_SAMPLES = 120
#: Loops given a line of sparklines (a look at many workers shows the first ones).
TREND_LOOPS = 4


class LoopTrend:
    """One loop's recent figures, oldest first, a bounded ring each: steps per second, the
    share of time busy, and the lag."""

    __slots__ = ("busy", "lag", "steps")

    def __init__(self) -> None:
        self.steps: deque[float] = deque(maxlen=TREND_SAMPLES)
        self.busy: deque[float] = deque(maxlen=TREND_SAMPLES)
        self.lag: deque[float] = deque(maxlen=TREND_SAMPLES)

    def add(self, loop: LoopInfo) -> None:
        if loop.steps_per_s is not None:
            self.steps.append(loop.steps_per_s)
        if loop.busy_share is not None:
            self.busy.append(loop.busy_share)
        if loop.lag is not None:
            self.lag.append(loop.lag)
        elif loop.blocked_for is not None:
            self.lag.append(loop.blocked_for)  # blocked: it lags at least that much


class TrendLine(Horizontal):
    """`steps/s ▃▄▄▅▃ 2.1k/s · busy ▂▂▇▂ 34% · lag ▁▁▂▁ 0.4 ms` for one loop, drawn with
    Textual's `Sparkline`; a figure the agent does not send is left out."""

    def __init__(self, label: str) -> None:
        super().__init__(classes="trend-line")
        self.label = label
        self.sparks = {name: Sparkline([], classes="trend-spark") for name in FIGURES}
        self.values = {name: Static("", classes=f"trend-value trend-{name}") for name in FIGURES}
        self.names = {name: Static(words, classes="trend-name") for name, words in FIGURES.items()}

    def compose(self) -> ComposeResult:
        if self.label:
            yield Static(self.label, classes="trend-loop")
        for name in FIGURES:
            yield self.names[name]
            yield self.sparks[name]
            yield self.values[name]

    def show(self, trend: LoopTrend, loop: LoopInfo) -> None:
        shown = {
            "steps": (trend.steps, rate_text(loop.steps_per_s)),
            "busy": (trend.busy, share_text(loop.busy_share)),
            "lag": (trend.lag, lag_text(loop.lag)),
        }
        first = True
        for name, (samples, value) in shown.items():
            present = bool(samples)
            for widget in (self.names[name], self.sparks[name], self.values[name]):
                if widget.display != present:
                    widget.display = present
            if present:
                # A separator between figures, none before the first shown.
                words = FIGURES[name] if first else f"· {FIGURES[name]}"
                if self.names[name].content != words:
                    self.names[name].update(words)
                first = False
                # One sample would fill the line with full bars: a trend needs two.
                self.sparks[name].data = list(samples) if len(samples) > 1 else []
                # Of a fixed width (app.tcss): no new layout of the screen for it, which
                # at each update cost 10-15 ms of the screen's thread at 10,000 tasks.
                if self.values[name].content != value:
                    self.values[name].update(value, layout=False)


#: The figures of a trend line, and the words before each sparkline.
FIGURES = {"steps": "steps/s", "busy": "busy", "lag": "lag"}


class LoopTrends(Vertical):
    """Under the header, a line of sparklines per loop (the first `TREND_LOOPS`), fed from the
    successive updates: at most one sample per loop and figure per update."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.trends: dict[str, LoopTrend] = {}
        self._lines: dict[str, TrendLine] = {}

    def record(self, model: TaskModel) -> None:
        """Take one sample of each loop's figures from the update just applied, and show."""
        loops = list(model.loops.values())
        if len(loops) > TREND_LOOPS:
            loops = loops_by_interest(model)[:TREND_LOOPS]
        for loop in loops:
            self.trends.setdefault(loop.id, LoopTrend()).add(loop)
        for gone in set(self.trends) - set(model.loops):
            del self.trends[gone]
        if list(self._lines) != [loop.id for loop in loops]:
            self._lines = {
                loop.id: TrendLine(safe_text(loop.label, 14) if len(loops) > 1 else "")
                for loop in loops
            }
            self.remove_children()
            self.mount_all(self._lines.values())
        for loop in loops:
            trend = self.trends[loop.id]
            line = self._lines[loop.id]
            line.display = bool(trend.steps or trend.busy or trend.lag)
            line.show(trend, loop)
