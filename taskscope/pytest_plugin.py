"""A pytest plugin: what a hanging async test is stuck on, and which tasks a test left behind.

Registered as the `pytest11` entry point `taskscope`, so pytest loads it in every run; it does
nothing, and imports nothing beyond pytest and the standard library, until asked for with
`--taskscope` (or `--taskscope-leaks`, or loaded by name with `-p taskscope`). Then it starts
taskscope's agent in the pytest process, so the loops the tests make (`asyncio.run`,
pytest-asyncio, anyio) are tracked with who created each task, and:

- shortly before pytest-timeout fails a test, and whenever the process receives
  `--taskscope-signal` (SIGUSR1 by default), prints the task tree of the process's event loops
  in the words of `taskscope tree`, then each pending task's stack, on the real terminal;
- with `--taskscope-leaks`, fails a test that leaves tasks pending when it ends, naming each
  one, what it awaits and where it was created.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterable
from types import FrameType
from typing import Any

import pytest

#: Names under which `-p` (or PYTEST_PLUGINS) loads this plugin explicitly.
_OWN_NAMES = frozenset({"taskscope", "taskscope.pytest_plugin"})
#: How long before pytest-timeout's deadline the hang report is printed: this much of the
#: timeout, at most `_MAX_LEAD` seconds.
_LEAD_FRACTION = 0.1
_MAX_LEAD = 1.0
#: Tasks made by test runners, not by the tests: anyio's runner task lives for the whole
#: session and is created by whichever test happens to be first.
_RUNNER_CREATORS = frozenset({"TestRunner._call_in_runner_task"})

_SESSION_KEY = pytest.StashKey["TaskscopeSession"]()
_LEAKS_KEY = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("taskscope", "taskscope: what async tests are stuck on")
    group.addoption(
        "--taskscope",
        action="store_true",
        default=False,
        help="track the asyncio tasks of the tests; print their task tree shortly before "
        "pytest-timeout fails a test, and on --taskscope-signal",
    )
    group.addoption(
        "--taskscope-leaks",
        action="store_true",
        default=False,
        help="fail a test that leaves asyncio tasks pending when it ends (implies --taskscope)",
    )
    group.addoption(
        "--taskscope-signal",
        default="SIGUSR1",
        metavar="SIGNAL",
        help="the signal that prints the task tree of the running test (default SIGUSR1; "
        "'none' for no handler)",
    )


def asked_for(config: pytest.Config) -> bool:
    """Whether the plugin should run: an option of its own, or loaded explicitly by name."""
    if config.getoption("taskscope") or config.getoption("taskscope_leaks"):
        return True
    explicit = list(config.getoption("plugins", default=None) or [])
    explicit += os.environ.get("PYTEST_PLUGINS", "").split(",")
    return any(name.strip() in _OWN_NAMES for name in explicit)


def pytest_configure(config: pytest.Config) -> None:
    if not asked_for(config):
        return
    session = TaskscopeSession(config, parse_signal(config.getoption("taskscope_signal")))
    config.stash[_SESSION_KEY] = session
    config.pluginmanager.register(session, "taskscope-session")
    session.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(_SESSION_KEY, None)
    if session is not None:
        del config.stash[_SESSION_KEY]
        session.stop()
        config.pluginmanager.unregister(session)


def parse_signal(text: str) -> signal.Signals | None:
    """`SIGUSR1`, `usr1`, `10` or `none` as a signal (None: no handler)."""
    name = text.strip().upper()
    if name in ("", "NONE", "OFF", "NO"):
        return None
    try:
        if name.isdigit():
            return signal.Signals(int(name))
        return signal.Signals[name if name.startswith("SIG") else "SIG" + name]
    except (KeyError, ValueError):
        raise pytest.UsageError(
            f"--taskscope-signal: no signal {text!r} here; use a name such as SIGUSR1, or none"
        ) from None


class TaskscopeSession:
    """The plugin at work, registered only when asked for: the agent, a reporter thread that
    prints hang reports (on a deadline or a signal), and the leak check."""

    def __init__(self, config: pytest.Config, signum: signal.Signals | None) -> None:
        self.config = config
        self.signum = signum
        self.check_leaks = bool(config.getoption("taskscope_leaks"))
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        #: (monotonic time to print the hang report at, test id, its timeout), or None.
        self._deadline: tuple[float, str, float] | None = None
        #: Halfway to the report: when the agent takes a look of its own, so that the report
        #: says how long each task has waited where it is (a look notes where each waits).
        self._midway: float | None = None
        self._current_test = ""
        self._wake_read, self._wake_write = -1, -1
        self._reporter: threading.Thread | None = None
        #: The handler the signal had before ours (None: ours is not installed).
        self._previous_handler: Any = None
        self._installed_agent = False
        # The leak check: the tasks pending when the test body started (by number), whether
        # the body runs, and what asyncio.run cancelled silently meanwhile.
        self._pending_before: set[str] = set()
        self._in_call = False
        self._cancelled_by_run: list[str] = []
        self._original_cancel_all: Callable[[Any], None] | None = None
        self._our_cancel_all: Callable[[Any], None] | None = None

    # --- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        from taskscope import agent

        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        if self.signum is not None and threading.current_thread() is threading.main_thread():
            try:
                previous = signal.signal(self.signum, self._on_signal)
            except (OSError, ValueError) as error:
                raise pytest.UsageError(
                    f"--taskscope-signal: {self.signum.name} cannot be caught ({error}); "
                    "use another, such as SIGUSR1, or none"
                ) from None
            self._previous_handler = signal.SIG_DFL if previous is None else previous
        if not agent.is_installed():
            agent.install()  # when it cannot start, it says why in one line; reports say so
            self._installed_agent = agent.is_installed()
        self._reporter = threading.Thread(
            target=self._report_loop, name="taskscope-pytest-reporter", daemon=True
        )
        self._reporter.start()
        if self.check_leaks:
            self._wrap_cancel_all()

    def stop(self) -> None:
        if self.signum is not None and self._previous_handler is not None:
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(self.signum, self._previous_handler)
        self._unwrap_cancel_all()
        self._wake(b"q")
        if self._reporter is not None:
            self._reporter.join(timeout=5)
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_read = self._wake_write = -1  # a late signal writes nowhere
        if self._installed_agent:
            from taskscope import agent

            agent.uninstall()

    # --- hang reports --------------------------------------------------------------------------

    # Old-style wrappers (hookwrapper): the plugin is loaded by every pytest run of anyone
    # who installed taskscope, so it must import under older pytests too.
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, Any, None]:
        self._current_test = item.nodeid
        try:
            yield
        finally:
            self._current_test = ""

    @pytest.hookimpl(optionalhook=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> None:
        """pytest-timeout arms its timer: arm ours to fire a little before. Returns None, so
        pytest-timeout's own implementation still runs."""
        timeout = float(getattr(settings, "timeout", 0) or 0)
        if timeout <= 0:
            return
        lead = min(_MAX_LEAD, timeout * _LEAD_FRACTION)
        now = time.monotonic()
        with self._lock:
            self._deadline = (now + timeout - lead, item.nodeid, timeout)
            self._midway = now + (timeout - lead) / 2
        self._wake(b"t")

    @pytest.hookimpl(optionalhook=True)
    def pytest_timeout_cancel_timer(self, item: pytest.Item) -> None:
        with self._lock:
            self._deadline = self._midway = None
        self._wake(b"t")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # In a signal handler, on the main thread: only a write to a pipe, which takes no
        # lock the interrupted code might hold. The reporter thread does the work.
        self._wake(b"s")

    def _wake(self, what: bytes) -> None:
        if self._wake_write >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_write, what)

    def _report_loop(self) -> None:
        while True:
            with self._lock:
                deadline, midway = self._deadline, self._midway
            due_at = deadline[0] if deadline is not None else None
            if midway is not None and due_at is not None:
                due_at = min(due_at, midway)
            wait = None if due_at is None else max(0.0, due_at - time.monotonic())
            try:
                ready, _, _ = select.select([self._wake_read], [], [], wait)
            except (OSError, ValueError):
                return
            if ready:
                try:
                    woken_by = os.read(self._wake_read, 512)
                except OSError:
                    return
                if b"q" in woken_by or not woken_by:
                    return
                if b"s" in woken_by:
                    name = self.signum.name if self.signum is not None else "signal"
                    test = self._current_test or "no test running"
                    self._print_report(f"taskscope: {name}: tasks of {test}")
                continue
            if midway is not None and midway <= time.monotonic():
                with self._lock:
                    if self._midway is midway:
                        self._midway = None
                self._look_midway()
                continue
            with self._lock:
                due = self._deadline is deadline and deadline is not None
                if due:
                    self._deadline = None
            if due and deadline is not None:
                _, test, timeout = deadline
                self._print_report(
                    f"taskscope: {test} is about to time out ({timeout:g} s): its tasks"
                )

    def _look_midway(self) -> None:
        """A look whose only use is what the agent notes of it: at the report, a task still
        where this look found it has waited there at least since."""
        from taskscope import agent

        with contextlib.suppress(Exception):  # nothing here may end the reporter thread
            agent.snapshot()

    def _print_report(self, title: str) -> None:
        # On the reporter thread: nothing here may end it, or break the test run.
        try:
            text = hang_report(self._terminal_width())
        except Exception as error:
            text = f"taskscope: no task tree: {type(error).__name__}: {error}"
        try:
            self._write(title, text)
        except Exception:
            with contextlib.suppress(Exception):
                print(f"{title}\n{text}", file=sys.__stderr__, flush=True)

    def _terminal_width(self) -> int:
        try:
            return max(80, int(self.config.get_terminal_writer().fullwidth))
        except Exception:
            return 120

    def _write(self, title: str, text: str) -> None:
        """Print on the real terminal, with pytest's capture suspended meanwhile (as
        pytest-timeout and faulthandler do)."""
        capman: Any = self.config.pluginmanager.getplugin("capturemanager")
        writer = self.config.get_terminal_writer()
        suspended = capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()
        with self._write_lock, suspended:
            writer.line()
            writer.sep("=", title)
            writer.line(text)
            writer.sep("=", "end of taskscope report")
            writer.flush()

    # --- leaks ---------------------------------------------------------------------------------

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, None]:
        if not self.check_leaks:
            yield
            return
        self._pending_before = _pending_ids()
        self._cancelled_by_run = []
        self._in_call = True
        try:
            yield
        finally:
            self._in_call = False
            leaks = list(self._cancelled_by_run)
            self._cancelled_by_run = []
            with contextlib.suppress(Exception):
                leaks += self._still_pending()
            if leaks:
                item.stash[_LEAKS_KEY] = leaks

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, None]:
        outcome = yield
        if call.when == "call" and outcome.excinfo is None:
            report: pytest.TestReport = outcome.get_result()
            leaks = item.stash.get(_LEAKS_KEY, None)
            if leaks:
                del item.stash[_LEAKS_KEY]
                text = leak_text(leaks)
                if report.passed:
                    report.outcome = "failed"
                    report.longrepr = text
                else:
                    report.sections.append(("taskscope: tasks left pending", text))

    def _still_pending(self) -> list[str]:
        """Tasks made by the test body and still pending on a loop that outlives it."""
        from taskscope import agent
        from taskscope.model import TaskModel

        snapshot = agent.snapshot(include_finished=False)
        if snapshot is None:
            return []
        model = TaskModel.from_snapshot(snapshot)
        return [
            leak_line(task, model)
            for task in model.pending()
            if task.id not in self._pending_before and not _made_by_runner(task)
        ]

    def _wrap_cancel_all(self) -> None:
        """See the tasks `asyncio.run` (an `asyncio.Runner` closing) cancels without a word:
        its module's `_cancel_all_tasks` is wrapped while the leak check is on."""
        import asyncio.runners as runners

        original = getattr(runners, "_cancel_all_tasks", None)
        if not callable(original):
            return  # a Python that closes runners otherwise: only loops that outlive a test
        session = weakref.ref(self)

        def _cancel_all_tasks(loop: Any) -> None:
            live = session()
            if live is not None and live._in_call:
                with contextlib.suppress(Exception):
                    live._note_cancelled_by_run(loop)
            original(loop)

        _cancel_all_tasks.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(runners, "_cancel_all_tasks", _cancel_all_tasks)  # noqa: B010 (not in typeshed)
        self._original_cancel_all, self._our_cancel_all = original, _cancel_all_tasks

    def _unwrap_cancel_all(self) -> None:
        import asyncio.runners as runners

        if self._our_cancel_all is not None:
            if getattr(runners, "_cancel_all_tasks", None) is self._our_cancel_all:
                setattr(runners, "_cancel_all_tasks", self._original_cancel_all)  # noqa: B010
            self._original_cancel_all = self._our_cancel_all = None

    def _note_cancelled_by_run(self, loop: Any) -> None:
        import asyncio

        from taskscope import agent
        from taskscope.model import TaskModel

        if sys.exc_info()[1] is not None:
            return  # the runner closes on an exception: the test fails for that already
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        if not pending:
            return
        numbers = {str(agent.task_number(task)) for task in pending}
        snapshot = agent.snapshot(include_finished=False)
        if snapshot is None:
            return
        model = TaskModel.from_snapshot(snapshot)
        self._cancelled_by_run += [
            leak_line(task, model, "cancelled silently when its asyncio runner closed")
            for task in model.pending()
            if task.id in numbers
            and task.id not in self._pending_before
            and not _made_by_runner(task)
        ]


def _pending_ids() -> set[str]:
    from taskscope import agent

    snapshot = agent.snapshot(include_finished=False)
    if snapshot is None:
        return set()
    return {str(record["id"]) for record in snapshot["tasks"] if record["state"] == "pending"}


def _made_by_runner(task: Any) -> bool:
    return bool(task.created_from) and task.created_from[0].function in _RUNNER_CREATORS


def hang_report(width: int = 120) -> str:
    """The task tree of this process's loops, in the words of `taskscope tree`, with the
    warnings (a lock deadlock, an await cycle...), then the stack of each pending task
    (outermost first) and where it was created."""
    from taskscope import agent
    from taskscope.lints import find_warnings, warned_tasks
    from taskscope.model import TaskModel
    from taskscope.report import task_text, tree_text, warning_lines

    snapshot = agent.snapshot()
    if snapshot is None:
        return "taskscope: the agent is not running in this process"
    model = TaskModel.from_snapshot(snapshot)
    # What hangs a test is often a lock deadlock or an await cycle: said as `taskscope tree`
    # says it, under the tree.
    findings = find_warnings(model)
    tree = tree_text(model, sys.argv, width=width, warned=warned_tasks(findings))
    parts = ["\n".join([tree, *warning_lines(findings, model)])]
    pending = sorted(model.pending(), key=lambda task: task.number)
    parts += [task_text(task, model) for task in pending]
    return "\n\n".join(parts)


def leak_line(task: Any, model: Any, note: str = "") -> str:
    """One task left behind: its name and coroutine, what it awaits, where it was created."""
    from taskscope.report import safe_text
    from taskscope.words import task_doing

    line = f"{safe_text(task.name)}  {safe_text(task.coro)}()"
    if task.awaiting is not None:
        in_cycle = task.id in model.cycle_members()
        doing = task_doing(task, in_cycle=in_cycle, letter=model.letter_of(task))
        line += f"  awaiting {safe_text(doing)}"
    if note:
        line += f"  ({note})"
    frames: Iterable[Any] = task.created_from
    created = [f"{safe_text(frame.function)}  {safe_text(frame.location)}" for frame in frames]
    if created:
        line += "\n    created at " + "\n               ".join(created)
    else:
        line += "\n    created at: not known (made before taskscope tracked its loop)"
    return line


def leak_text(leaks: list[str]) -> str:
    count = f"{len(leaks)} task{'s' if len(leaks) != 1 else ''}"
    return f"taskscope: this test left {count} pending when it ended:\n" + "\n".join(
        "  " + leak.replace("\n", "\n  ") for leak in leaks
    )
