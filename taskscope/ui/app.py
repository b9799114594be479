"""The dashboard app: what is app-wide. It holds the `Source`, the model and the update
buffer, runs the feed worker and the process facts reader, and answers the keys that work on
every screen (pause, quit, help, export). The views live on `MainScreen` (main_screen.py); the
cancel flow is `CancelFlow` (cancel_flow.py).

Data flow: the feed worker folds updates into an `UpdateBuffer` (making the model's records on
its own thread) and posts `FeedUpdated` (at most one pending); the main screen
applies the folded update to the `TaskModel` and then to the active view by task id, inside
`batch_update()`. Commands (cancel, stack, export, process facts) run in their own thread
workers, so a slow or blocked target never freezes the screen.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import ClassVar

from textual import on, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input
from textual.worker import get_current_worker

from taskscope.model import TaskInfo, TaskModel
from taskscope.report import safe_text
from taskscope.sources import ClientError, ProcessInfo, SnapshotUpdate, Source
from taskscope.ui import long_lived
from taskscope.ui.cancel_flow import CANCEL_GRACE, CancelRequest
from taskscope.ui.detail_pane import DetailPane
from taskscope.ui.feed import UpdateBuffer, prompt_switches, restore_switches
from taskscope.ui.help_screen import HelpScreen
from taskscope.ui.main_screen import FeedUpdated, MainScreen, UpdateSliceDue
from taskscope.ui.process_header import ProcessHeader
from taskscope.ui.task_display import ViewOptions
from taskscope.ui.task_tree import TREE_LIMIT, TaskTree
from taskscope.ui.views import ViewName

TICK_SECONDS = 1.0


#: The help screen's longer words for each binding's action (the footer shows the short ones).
HELP = {
    "quit": "quit (the target keeps running)",
    "help": "this help",
    "filter": "filter by name, coroutine, id or what a task awaits",
    "clear_filter": "clear the filter, the opened group or the warnings filter",
    "next_worker": "several processes (a parent and its workers): show one worker, the next, all",
    "cycle_sort": "sort by age, busy time, steps (busiest first), time waited where they "
    "are (longest first), name, state "
    "(busy and steps when the agent times steps)",
    "view('tree')": "tree view: tasks under their waiter, TaskGroup, gather or creator",
    "view('table')": "flat table of all tasks",
    "view('groups')": "grouped view: counts by coroutine and await site",
    "view('history')": "history: recently finished tasks and how they ended",
    "view('stalls')": "stalls: steps that blocked a loop longer than its threshold, newest "
    "first, with the blocking line (Enter: the whole sampled stack)",
    "toggle_finished": "show or hide finished tasks in the live views",
    "toggle_warned": "show only the tasks some warning is about (marked ⚠), or all again",
    "cancel_task": "cancel the selected task (asks first)",
    "cancel_subtree": "cancel the selected task and everything under it (asks first)",
    "export": "write the current snapshot as JSON to a file",
    "copy_task": "copy the selected task (awaits, stack, creator) as text to the clipboard",
    "toggle_pause": "pause or resume live updates",
}


class FeedEnded(Message):
    """The subscription ended: the process exited or the connection broke. `exit_unconfirmed`:
    the connection was lost while the process still looked alive, which it may not be for long
    (a process killed with SIGKILL closes its descriptors a moment before it is gone)."""

    def __init__(self, reason: str, *, exit_unconfirmed: bool = False) -> None:
        super().__init__()
        self.reason = reason
        self.exit_unconfirmed = exit_unconfirmed


class FactsRead(Message):
    def __init__(self, info: ProcessInfo) -> None:
        super().__init__()
        self.info = info


class ExportFinished(Message):
    def __init__(self, path: str | None, error: str | None) -> None:
        super().__init__()
        self.path = path
        self.error = error


class TaskscopeApp(App[int]):
    """htop for asyncio tasks: watch a process's tasks live and cancel the stuck ones."""

    CSS_PATH = "app.tcss"
    TITLE = "taskscope"
    ENABLE_COMMAND_PALETTE = False

    # The main screen lists these in its footer; here they also work over the other screens.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_pause", "Pause", show=False, priority=True),
        Binding("q", "quit", "Quit", show=False),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", show=False),
    ]

    def __init__(
        self,
        source: Source,
        *,
        interval: float = 0.5,
        clock: Callable[[], float] = time.time,
        export_dir: str | None = None,
        tree_limit: int = TREE_LIMIT,
        cancel_grace: float = CANCEL_GRACE,
        tick_seconds: float = TICK_SECONDS,
    ) -> None:
        super().__init__()
        self.source = source
        self.interval = interval
        self.clock = clock
        self.export_dir = export_dir or os.getcwd()
        self.tree_limit = tree_limit
        self.cancel_grace = cancel_grace
        self.tick_seconds = tick_seconds
        self.model = TaskModel()
        self.buffer = UpdateBuffer()
        self.paused = False
        self.gone: str | None = None
        #: The feed ended on a lost connection while the process still looked alive.
        self._exit_unconfirmed = False
        self.facts: ProcessInfo = {"pid": source.pid}
        #: The interpreter's switch interval before the feed started (restored at the end).
        self._switch_interval: float | None = None
        self.main = MainScreen(self)

    #: A widget shown under the header (a replay's timeline); none on a live process.
    timeline: Widget | None = None

    def moment_text(self) -> str:
        """Which moment the header says is shown; "" for a live process (the data's age)."""
        return ""

    def feed_applied(self) -> None:
        """An update from the feed is now on screen (a replay marks its moment)."""

    def get_default_screen(self) -> Screen[None]:
        return self.main

    # --- what the main screen shows, for callers of the app ------------------------------------

    @property
    def task_tree(self) -> TaskTree:
        return self.main.task_tree

    @property
    def detail(self) -> DetailPane:
        return self.main.detail

    @property
    def header(self) -> ProcessHeader:
        return self.main.header

    @property
    def view(self) -> ViewName:
        return self.main.view

    @property
    def selected(self) -> str | None:
        return self.main.selected

    @property
    def options(self) -> ViewOptions:
        return self.main.options

    @property
    def updates_applied(self) -> int:
        return self.main.updates_applied

    @property
    def auto_grouped(self) -> bool:
        return self.main.auto_grouped

    @property
    def cancels(self) -> list[CancelRequest]:
        return self.main.cancels

    def jump_to(self, task_id: str) -> bool:
        """Select a task in the tree (or the table when the tree is not usable)."""
        return self.main.jump_to(task_id)

    def selected_task(self) -> TaskInfo | None:
        return self.main.selected_task()

    def apply_pending(self) -> bool:
        """Apply whatever the feed folded since the last time, all at once."""
        return self.main.apply_pending()

    # --- the feed and the process facts --------------------------------------------------------

    def start_feed(self) -> None:
        """Start the feed and the facts reader: called by the main screen once its widgets
        are mounted (the first update may come at once, and may switch views)."""
        if self._switch_interval is None:
            self._switch_interval = prompt_switches()
        self._feed()
        self._read_facts()
        self.set_interval(max(1.0, self.tick_seconds), self._read_facts)

    def on_unmount(self) -> None:
        self.source.close()
        long_lived.release()
        if self._switch_interval is not None:
            restore_switches(self._switch_interval)
            self._switch_interval = None

    @work(thread=True, exclusive=True, group="feed")
    def _feed(self) -> None:
        worker = get_current_worker()
        try:
            for update in self.source.subscribe(self.interval):
                if worker.is_cancelled:
                    return
                if isinstance(update, SnapshotUpdate):
                    self.buffer.put_snapshot(update.snapshot)
                else:
                    self.buffer.put_delta(update.delta)
                self.post_message(FeedUpdated())
        except ClientError as error:
            if not worker.is_cancelled:
                reason = self._end_reason(str(error))
                exited = reason == self._exited_reason()
                self.post_message(FeedEnded(reason, exit_unconfirmed=not exited))
        except Exception as error:  # a bug or a broken source: say so, keep the last picture
            if not worker.is_cancelled:
                self.post_message(FeedEnded(f"the update feed failed: {error!r}"))
        else:
            if not worker.is_cancelled:
                self.post_message(FeedEnded("the agent stopped sending updates"))

    def _end_reason(self, error: str) -> str:
        """Say "process N exited" when it did: the socket error alone can race the exit."""
        try:
            alive = self.source.process_info().get("alive")
        except Exception:  # the facts are a nicety here
            return error
        return self._exited_reason() if alive is False else error

    def _exited_reason(self) -> str:
        return f"process {self.source.pid} exited"

    # The app's queue carries the feed's messages (the key that lands meanwhile is forwarded
    # to the focused view while it runs dry between two slices).
    @on(FeedUpdated)
    def _feed_updated(self) -> None:
        self.main.feed_updated()

    @on(UpdateSliceDue)
    def _slice_due(self) -> None:
        self.main.apply_slice()

    @on(FeedEnded)
    def _feed_ended(self, message: FeedEnded) -> None:
        if self.buffer or self.main.views.slices:
            self.main.apply_pending()
        self.gone = message.reason
        self._exit_unconfirmed = message.exit_unconfirmed
        self.main.updates_stopped()
        self.notify(
            safe_text(message.reason), title="Updates stopped", severity="error", timeout=10
        )
        self.main.changed()
        self.refresh_bindings()

    @work(thread=True, exclusive=True, group="facts")
    def _read_facts(self) -> None:
        try:
            info = self.source.process_info()
        except Exception:  # facts are decoration: never let them break the app
            return
        self.post_message(FactsRead(info))

    @on(FactsRead)
    def _facts_read(self, message: FactsRead) -> None:
        # Keep what was known (command line, memory) once the process is gone.
        self.facts = {**self.facts, **message.info}
        if "stopped" not in message.info:  # it runs again (a fact of now, not one to keep)
            self.facts.pop("stopped", None)
        if self._exit_unconfirmed and message.info.get("alive") is False:
            # The connection ended before the process was seen gone: now it is, say so.
            self._exit_unconfirmed = False
            self.gone = self._exited_reason()
            self.notify(self.gone, title="Updates stopped", severity="error", timeout=10)
        self.main.changed()

    # --- keys that work everywhere -------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_pause":
            # Space types into the filter box; it pauses everywhere else.
            return not isinstance(self.focused, Input)
        if action == "export" and self.gone is not None:
            return None
        return True

    def action_help(self) -> None:
        keys = [
            (
                binding.key_display or binding.key,
                HELP.get(binding.action.removeprefix("app."), binding.description),
            )
            for binding in self.main.BINDINGS
            if isinstance(binding, Binding)
            and (binding.action != "next_worker" or self.main.worker_pids())
        ]
        self.push_screen(HelpScreen(keys))

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self.main.apply_pending()
        self.notify(
            "Live updates paused (space resumes)" if self.paused else "Live updates resumed",
            timeout=2,
        )
        self.main.changed()

    # --- export --------------------------------------------------------------------------------

    def action_export(self) -> None:
        self._export()

    @work(thread=True, group="commands")
    def _export(self) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.clock()))
        path = os.path.join(self.export_dir, f"taskscope-{self.source.pid}-{stamp}.json")
        try:
            snapshot = self.source.snapshot()
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(snapshot, handle, ensure_ascii=False, indent=1)
        except (ClientError, OSError) as error:
            self.post_message(ExportFinished(None, str(error)))
            return
        self.post_message(ExportFinished(path, None))

    @on(ExportFinished)
    def _export_finished(self, message: ExportFinished) -> None:
        if message.error is not None:
            self.notify(safe_text(message.error), title="Export failed", severity="error")
        else:
            self.notify(
                f"Snapshot written to {safe_text(message.path or '')}", title="Exported", timeout=6
            )

    async def action_quit(self) -> None:
        self.exit(0)


def run_dashboard(source: Source, interval: float = 0.5) -> int:
    """`taskscope attach PID`: run the dashboard on `source` until the user quits; the
    source is closed after."""
    app = TaskscopeApp(source, interval=interval)
    try:
        result = app.run()
    except KeyboardInterrupt:
        return 130
    finally:
        source.close()
    return result if result is not None else 0
