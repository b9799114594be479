"""The `taskscope` command: list, ps, tree, dump, metrics, exporter, cancel, stack, detach, run,
attach and demo.

Every error a user can meet is printed as one line on stderr with a non-zero exit status;
tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from taskscope import __version__
from taskscope.client import ClientError, live_agents
from taskscope.protocol import WireSnapshot, terminal_safe_json
from taskscope.remote import BadTarget, RemoteHost, is_remote, parse_target
from taskscope.sources import Capability, SnapshotUpdate, Source
from taskscope.words import fill_texts

if TYPE_CHECKING:
    from taskscope.model import TaskInfo, TaskModel
    from taskscope.protocol import WireSnapshot
    from taskscope.remote import RemoteClient

EXIT_ERROR = 1
EXIT_USAGE = 2
#: ps, tree and dump on a process that runs no asyncio event loop.
EXIT_NO_LOOP = 3


def _pid(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"not a process id: {text!r}")
    return int(text)


def _pid_or_host(text: str) -> int | RemoteHost:
    """A PID, or the `ssh://[user@]host[:port]` that comes before one."""
    if is_remote(text):
        try:
            return parse_target(text)
        except BadTarget as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return _pid(text)


def _split_target(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`ssh://HOST PID` becomes args.remote = HOST, args.pid = PID; a plain PID leaves
    args.remote None (everything as before)."""
    if not hasattr(args, "remote_pid"):
        return
    first, second = args.pid, args.remote_pid
    del args.remote_pid
    args.remote = None
    if isinstance(first, RemoteHost):
        if second is None:
            parser.error(f"{first} needs the process id after it: {args.command} {first} PID")
        args.remote, args.pid = first, second
    elif second is not None:
        parser.error(f"unrecognized arguments: {second}")


TASK_HELP = (
    "the task: its name (`transfer-a`, `Task-18`), its number in asyncio's default name "
    "(`18` for Task-18), or its taskscope id (`id:16`; `4243:16` on a parent of workers); "
    "see `taskscope ps`"
)


class TaskNotFound(Exception):
    """No task answers to what the user typed; str() is the line to show."""


class AmbiguousTask(Exception):
    """Several tasks answer to what the user typed; str() lists them in one line."""


def _candidates(model: TaskModel, text: str) -> list[TaskInfo]:
    """The tasks `text` may name: `id:N` is the id alone; digits N are the id N and the task
    named `Task-N` (asyncio's default name, which is what the user sees first); anything else
    is a name, matched exactly (`Task-18` never stands for id 18)."""
    tasks = model.tasks
    if ":" in text.removeprefix("id:") and text.removeprefix("id:") in tasks:
        return [tasks[text.removeprefix("id:")]]  # a worker's task on its parent: `4243:16`
    if text.startswith("id:"):
        number = text[3:]
        return [tasks[number]] if number.isascii() and number.isdigit() and number in tasks else []
    found: dict[str, TaskInfo] = {}
    if text.isascii() and text.isdigit() and len(text) <= 20:
        by_id = tasks.get(str(int(text)))
        if by_id is not None:
            found[by_id.id] = by_id
        default_name = f"Task-{int(text)}"
        for task in tasks.values():
            if task.name in (default_name, text):
                found[task.id] = task
    else:
        for task in tasks.values():
            if task.name == text:
                found[task.id] = task
    return sorted(found.values(), key=lambda task: (task.finished, task.number))


def resolve_task(model: TaskModel, text: str, pid: int, command: str) -> TaskInfo:
    """The one task `text` names in the snapshot, else TaskNotFound or AmbiguousTask."""
    from taskscope.report import safe_text

    matches = _candidates(model, text)
    if len(matches) == 1:
        return matches[0]
    shown = safe_text(text, 40)
    if not matches:
        lowered = text.lower()
        near = sorted(
            (task for task in model.tasks.values() if lowered in task.name.lower()),
            key=lambda task: (task.finished, task.number),
        )
        hint = f"; did you mean {_list_tasks(near)}?" if near else ""
        raise TaskNotFound(f"no task {shown} in process {pid}{hint} (see `taskscope ps {pid}`)")
    raise AmbiguousTask(
        f"{shown} may name {len(matches)} tasks in process {pid}: {_list_tasks(matches)}; "
        f"name one, e.g. `taskscope {command} {pid} {_id_text(matches[0].id)}`"
    )


def _id_text(task_id: str) -> str:
    """How the user names a task by id: `id:16`, or `4243:16` for a worker's task."""
    return task_id if ":" in task_id else f"id:{task_id}"


def _list_tasks(tasks: list[TaskInfo], limit: int = 6) -> str:
    from taskscope.report import safe_text

    items = [
        f"{_id_text(task.id)} {safe_text(task.name, 30)} ({task.coro}(), {task.state})"
        for task in tasks[:limit]
    ]
    if len(tasks) > limit:
        items.append(f"{len(tasks) - limit} more")
    return ", ".join(items)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskscope",
        description="See, understand and cancel the asyncio tasks of a running Python process.",
    )
    parser.add_argument("--version", action="version", version=f"taskscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def with_pid(
        name: str, help_text: str, pid_help: str = "process id"
    ) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        optional = pid_help != "process id"
        command.add_argument(
            "pid",
            type=_pid_or_host,
            nargs="?" if optional else None,
            metavar="[ssh://[USER@]HOST[:PORT]] PID",
            help="process id, on this host or (after ssh://HOST) on another one, reached "
            "with ssh; see --remote-command" + ("; none with --from" if optional else ""),
        )
        # The PID after an ssh:// target (argparse fills it only when there are two).
        command.add_argument(
            "remote_pid", type=_pid, nargs="?", metavar="PID", help=argparse.SUPPRESS
        )
        command.add_argument(
            "--no-inject",
            action="store_true",
            help="fail instead of loading the agent into the process",
        )
        command.add_argument(
            "--timeout", type=float, default=10.0, help="seconds to wait for the agent (default 10)"
        )
        command.add_argument(
            "--remote-command",
            default=None,
            metavar="COMMAND",
            help="with ssh://HOST: what runs taskscope there (default: "
            "$TASKSCOPE_REMOTE_COMMAND, else `python3 -m taskscope`)",
        )
        command.add_argument(
            "--ssh-option",
            action="append",
            default=[],
            metavar="OPTION",
            help="with ssh://HOST: an ssh -o option (e.g. IdentityFile=~/.ssh/k); repeatable; "
            "~/.ssh/config applies as usual",
        )
        return command

    sub.add_parser("list", help="processes with a live agent, and Python processes to attach")

    def looking(name: str, help_text: str) -> argparse.ArgumentParser:
        command = with_pid(name, help_text, "process id (none with --from)")
        _recording_options(command)
        command.add_argument(
            "--read-only",
            action="store_true",
            help="read the tasks from the process's memory, running no code in it (3.14+; "
            "also what happens when code cannot run there)",
        )
        return command

    ps = looking("ps", "a table of the process's tasks")
    ps.add_argument("-a", "--all", action="store_true", help="include finished tasks")
    tree = looking("tree", "the task tree, with what each task awaits")
    tree.add_argument("-a", "--all", action="store_true", help="include finished tasks")
    dump = looking("dump", "the full snapshot as JSON (schema 1)")
    dump.add_argument("--indent", type=int, default=None, help="pretty-print with this indent")
    metrics = sub.add_parser(
        "metrics",
        help="Prometheus metrics of processes' tasks and loops, printed once",
        description="Print Prometheus text (or OpenMetrics) counting the tasks and loops of "
        "each process, from a fresh snapshot of each.",
    )
    _metrics_options(metrics)
    metrics.add_argument(
        "--openmetrics", action="store_true", help="OpenMetrics text instead of Prometheus text"
    )
    exporter = sub.add_parser(
        "exporter",
        help="serve the metrics over HTTP for Prometheus to scrape (--port N)",
        description="Serve the metrics of `taskscope metrics` at http://HOST:PORT/metrics; "
        "each scrape takes a fresh snapshot of each process. Ctrl-C stops.",
    )
    exporter.add_argument(
        "--port", type=_port, required=True, help="TCP port to listen on (0: any free one)"
    )
    exporter.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    _metrics_options(exporter)
    otel = sub.add_parser(
        "otel",
        help="export the metrics with OpenTelemetry (the otel extra), every --interval",
        description="Export the gauges of `taskscope metrics` with OpenTelemetry every "
        "interval: over OTLP/HTTP with --endpoint URL or --otlp (the endpoint of "
        "OTEL_EXPORTER_OTLP_ENDPOINT), else printed. Needs pip install 'taskscope[otel]'.",
    )
    otel.add_argument(
        "--interval", type=float, default=10.0, help="seconds between exports (default 10)"
    )
    otel.add_argument("--endpoint", default=None, help="OTLP/HTTP metrics endpoint URL")
    otel.add_argument(
        "--otlp", action="store_true", help="export over OTLP to the environment's endpoint"
    )
    _metrics_options(otel)
    stack = with_pid("stack", "the stack of one task, with source lines")
    stack.add_argument("task", help=TASK_HELP)
    cancel = with_pid("cancel", "cancel one task (answers at once; check with `ps`)")
    cancel.add_argument("task", help=TASK_HELP)
    cancel.add_argument("-m", "--message", default=None, help="cancellation message")
    with_pid("detach", "stop the agent in a process and undo what it changed")
    record = with_pid(
        "record", "record the process's tasks to a file, to look at later with --from"
    )
    record.add_argument("-o", "--output", required=True, help="the recording file to write")
    record.add_argument(
        "--duration", type=float, default=None, help="seconds to record (default: until Ctrl-C)"
    )
    record.add_argument(
        "--interval", type=float, default=1.0, help="seconds between updates (default 1)"
    )
    record.add_argument(
        "--last",
        action="store_true",
        help="save at once what the process's flight recorder kept (the last minute or so)",
    )
    with_pid(
        "bridge",
        "internal, run by ssh for `ssh://HOST PID`: relays the agent's protocol between "
        "stdin/stdout and the agent of PID on this host",
    )
    attach = with_pid("attach", "open the live dashboard on a process")
    attach.add_argument(
        "--interval", type=float, default=0.5, help="seconds between updates (default 0.5)"
    )
    attach.add_argument(
        "--record",
        metavar="FILE",
        default=None,
        help="also write what the dashboard receives to FILE, to replay later",
    )
    replay = sub.add_parser(
        "replay",
        help="open the dashboard on a recording, to step and play through it",
        description="Open the dashboard on a recording made by `taskscope record` (or "
        "`attach --record`): [ ] step, { } jump 10 s, home/end, : go to a time, space plays.",
    )
    replay.add_argument("file", help="the recording")
    replay.add_argument(
        "--at", metavar="T", default=None, help="the moment to open at (default: the start)"
    )
    run = sub.add_parser(
        "run",
        help="run a Python program with the agent installed ([--history N] [--no-track] "
        "[--flight-recorder S])",
        description="Run `script.py [args]` or `-m module [args]` with the agent installed "
        "before its first line.",
    )
    run.add_argument("target", nargs=argparse.REMAINDER, help="script.py [args] | -m module [args]")
    sub.add_parser("demo", help="start the bundled example program and open the dashboard on it")
    return parser


def _recording_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        default=None,
        help="read a recording (`taskscope record`) instead of a live process",
    )
    command.add_argument(
        "--at",
        metavar="T",
        default=None,
        help="with --from: the moment to show: seconds or M:SS from the start, negative from "
        "the end, or HH:MM:SS (default: the last moment)",
    )


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return int(text)


def _metrics_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("pids", type=_pid, nargs="+", metavar="PID", help="process ids")
    command.add_argument(
        "--no-inject",
        action="store_true",
        help="fail instead of loading the agent into a process",
    )
    command.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for an agent (default 10)"
    )


def open_source(args: argparse.Namespace, needs: Capability = Capability.NONE) -> Source:
    """The source every command reads args.pid through: its agent (loaded into the process
    unless --no-inject), or a read-only look with --read-only, or when the agent cannot be
    had and a read-only look can do what the command `needs` (3.14+)."""
    from taskscope.sources.choose import open_source as choose

    if getattr(args, "remote", None) is not None:
        return _open_remote(args)
    if not getattr(args, "read_only", False) and _has_python_children(args.pid):
        return _open_fleet(args)

    def fall_back(error: BaseException) -> None:
        print(f"taskscope: {error}; reading its memory instead (read-only)", file=sys.stderr)

    return choose(
        args.pid,
        timeout=args.timeout,
        inject=not args.no_inject,
        read_only=getattr(args, "read_only", False),
        needs=needs,
        on_slow=_slow_note(args),
        on_read_only=fall_back,
    )


def _has_python_children(pid: int) -> bool:
    from taskscope.process_facts import python_children

    return bool(python_children(pid))


def _say_problem(line: str) -> None:
    print(f"taskscope: {line}", file=sys.stderr, flush=True)


def _open_fleet(args: argparse.Namespace) -> Source:
    """A parent of Python workers (uvicorn --workers, gunicorn, multiprocessing): one source
    over all of them (taskscope/fleet.py), their agents loaded in parallel; each process that
    refuses is one line on stderr. NoEventLoop when none runs asyncio."""
    from taskscope.fleet import FleetSource, NoAsyncio

    follow = args.command == "attach"
    fleet = FleetSource(
        args.pid,
        timeout=args.timeout,
        no_inject=args.no_inject,
        on_problem=_say_problem,
        follow=follow,
    )
    try:
        fleet.snapshot(include_finished=False)  # loads the agents; says who refused
    except NoAsyncio as error:
        fleet.close()
        raise NoEventLoop(str(error)) from None
    if follow:
        fleet.on_problem = None  # stderr is the dashboard's screen from here on
    return fleet


def remote_client(args: argparse.Namespace, batch: bool = False) -> RemoteClient:
    """A client, not yet connected, for args.pid on args.remote, through ssh."""
    from taskscope.remote import RemoteClient, SshSettings

    settings = SshSettings.from_user(args.remote_command, args.ssh_option, batch=batch)
    return RemoteClient(
        args.remote,
        args.pid,
        settings=settings,
        timeout=args.timeout,
        no_inject=args.no_inject,
        on_slow=_slow_note(args),
    )


def _open_remote(args: argparse.Namespace) -> Source:
    """The live source of args.pid on args.remote: each of its connections is ssh running
    `taskscope bridge PID` there, which loads the agent when needed, as a local look does.
    The first connects now, where ssh may still ask for a password or a host key; later ones
    (the dashboard's subscription) ask nothing (BatchMode)."""
    from taskscope.sources.live import LiveSource

    if getattr(args, "read_only", False):
        raise ClientError(
            f"--read-only reads the memory of a process on this host: for {args.remote}, run "
            f"`taskscope ps --read-only {args.pid}` there"
        )
    made: list[RemoteClient] = []

    def client() -> RemoteClient:
        made.append(remote_client(args, batch=bool(made)))
        return made[-1]

    source = LiveSource(
        args.pid, timeout=args.timeout, client_factory=client, remote=str(args.remote)
    )
    source.connect()
    return source


def _slow_note(args: argparse.Namespace) -> Callable[[float], None]:
    """What to say when the agent has not answered for a second: while a call holds the
    GIL, nothing of Python runs in the process, the agent included."""

    def note(seconds: float) -> None:
        print(
            f"taskscope: process {args.pid} has not answered for {seconds:.0f} s: a call that "
            f"holds the GIL keeps its agent from running; waiting up to {args.timeout:g} s",
            file=sys.stderr,
            flush=True,
        )

    return note


def take_snapshot(args: argparse.Namespace) -> tuple[WireSnapshot, list[str] | None]:
    """A snapshot of args.pid and its command line: from the agent, or read from the process's
    memory with --read-only, or when the agent cannot be loaded there (3.14+); or from a
    recording with --from."""
    if _from_recording(args):
        return recorded_snapshot(args)
    source = open_source(args)
    try:
        snapshot = source.snapshot()
        _check_loops(source, snapshot)
        return snapshot, source.identity().get("argv")
    finally:
        source.close()


def _from_recording(args: argparse.Namespace) -> bool:
    """Whether the command reads a recording (--from) rather than a process; says in one line
    what is wrong with the pair of PID and --from, --at without --from."""
    from_file = getattr(args, "from_file", None)
    if from_file is not None and args.pid is not None:
        raise ClientError("give a PID or --from FILE, not both")
    if from_file is None:
        if getattr(args, "at", None) is not None:
            raise ClientError("--at needs --from FILE (a recording)")
        if args.pid is None:
            raise ClientError(f"`{args.command}` needs a PID, or --from FILE (a recording)")
        return False
    if args.read_only:
        raise ClientError("--read-only looks at a process; a recording is read from its file")
    return True


def recorded_snapshot(args: argparse.Namespace) -> tuple[WireSnapshot, list[str] | None]:
    """The snapshot of the recording args.from_file at --at (its last moment by default), and
    the recorded command line. An --at outside the recording is brought to its nearest end,
    with a note on stderr."""
    from taskscope.recording import RecordingError, open_recording, parse_at
    from taskscope.words import recording_moment

    try:
        recording = open_recording(args.from_file)
        if not recording.chunks:
            raise RecordingError(f"{args.from_file}: the recording holds no snapshot")
        at = recording.end
        if args.at is not None:
            try:
                at = parse_at(args.at, recording)
            except ValueError as error:
                raise ClientError(str(error)) from None
            if not recording.start <= at <= recording.end:
                at = min(max(at, recording.start), recording.end)
                print(
                    f"taskscope: --at {args.at} is outside the recording; showing "
                    f"{recording_moment(at, recording.start, recording.end)}",
                    file=sys.stderr,
                )
        snapshot: WireSnapshot = recording.snapshot_at(at)  # type: ignore[assignment]
    except RecordingError as error:
        raise ClientError(str(error)) from None
    argv = recording.facts.get("argv")
    return snapshot, argv if isinstance(argv, list) else None


def shown_now(args: argparse.Namespace, snapshot: WireSnapshot) -> float | None:
    """The time ages and countdowns are said at: the snapshot's for a recording, else now."""
    return float(snapshot["taken_at"]) if getattr(args, "from_file", None) else None


class NoEventLoop(Exception):
    """The process runs no asyncio event loop (and has no task to show)."""


def _check_loops(source: Source, snapshot: WireSnapshot) -> None:
    """Raise NoEventLoop for a process without asyncio; an agent loaded only to find that is
    unloaded again."""
    if snapshot["loops"] or snapshot["tasks"]:
        return
    message = f"no event loop in process {source.pid}: it runs no asyncio (yet)"
    from taskscope.remote import RemoteClient
    from taskscope.sources.live import DetachFailed, LiveSource

    if isinstance(source, LiveSource) and source.remote is not None:
        client = source.command_client()
        # The bridge loaded it there if it started after this connection began.
        if isinstance(client, RemoteClient) and client.loaded_for_us(snapshot["taken_at"]):
            client.detach()
            client.wait_hangup(source.timeout)
            message += "; the agent loaded to look was unloaded again"
    elif isinstance(source, LiveSource) and source.injected:
        try:
            source.detach()
        except DetachFailed:
            pass  # it was asked to go; the missing loop is the news
        message += "; the agent loaded to look was unloaded again"
    raise NoEventLoop(message)


def cmd_list(args: argparse.Namespace) -> int:
    from taskscope.process_facts import python_processes

    agents = set(live_agents())
    rows: list[tuple[str, str, str, str]] = []
    listed: set[int] = set()
    for proc in python_processes():
        listed.add(proc.pid)
        rows.append(
            (
                str(proc.pid),
                proc.version or "?",
                "agent" if proc.pid in agents else "-",
                proc.command,
            )
        )
    rows.extend((str(pid), "?", "agent", _command_line(pid)) for pid in sorted(agents - listed))
    if not rows:
        print("no Python processes found")
        return 0
    rows.sort(key=lambda row: (row[2] != "agent", int(row[0])))
    print(f"{'PID':>7}  {'PYTHON':7}  {'AGENT':5}  COMMAND")
    from taskscope.report import safe_text

    # A terminal gets one line per process; a pipe or file gets whole command
    # lines, since scripts grep them and the checkout path may be long.
    command_width = max(20, os.get_terminal_size().columns - 25) if sys.stdout.isatty() else 4096
    for depth, (pid_text, version, agent, command) in _as_process_tree(rows):
        shown = ("  " * (depth - 1) + "└ " if depth else "") + command
        print(f"{pid_text:>7}  {version:7}  {agent:5}  {safe_text(shown, command_width)}")
    return 0


def _as_process_tree(
    rows: list[tuple[str, str, str, str]],
) -> list[tuple[int, tuple[str, str, str, str]]]:
    """The rows in their order, each listed process's Python children right under it
    (indented by depth: worker processes under their uvicorn, gunicorn or multiprocessing
    parent)."""
    from taskscope.process_facts import parent_pid

    by_pid = {int(row[0]): row for row in rows}
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for row in rows:
        pid = int(row[0])
        parent = parent_pid(pid)
        if parent in by_pid and parent != pid:
            children.setdefault(parent, []).append(pid)
        else:
            roots.append(pid)
    ordered: list[tuple[int, tuple[str, str, str, str]]] = []
    seen: set[int] = set()

    def visit(pid: int, depth: int) -> None:
        if pid in seen:
            return
        seen.add(pid)
        ordered.append((depth, by_pid[pid]))
        for child in sorted(children.get(pid, [])):
            visit(child, depth + 1)

    for pid in roots:
        visit(pid, 0)
    for pid in by_pid:  # a loop of parents (cannot happen, but never drop a process)
        visit(pid, 0)
    return ordered


def _command_line(pid: int) -> str:
    from taskscope.process_facts import command_line

    argv = command_line(pid)
    return "?" if argv is None else " ".join(argv).strip()


def cmd_ps(args: argparse.Namespace) -> int:
    from taskscope.model import TaskModel
    from taskscope.report import blocked_lines, header, ps_table, read_only_lines

    snapshot, argv = take_snapshot(args)
    model = TaskModel.from_snapshot(snapshot)
    print(header(model, argv))
    for line in read_only_lines(snapshot):
        print(line)
    for line in blocked_lines(model):
        print(line)
    print(ps_table(model, include_finished=args.all, now=shown_now(args, snapshot)))
    return 0


def cmd_tree(args: argparse.Namespace) -> int:
    from taskscope.model import TaskModel
    from taskscope.report import read_only_lines, tree_text

    snapshot, argv = take_snapshot(args)
    model = TaskModel.from_snapshot(snapshot)
    width = os.get_terminal_size().columns if sys.stdout.isatty() else 120
    text = tree_text(
        model,
        argv,
        include_finished=args.all,
        now=shown_now(args, snapshot),
        width=width,
        notes=read_only_lines(snapshot),
    )
    print(text)
    return 0


def cmd_dump(args: argparse.Namespace) -> int:
    snapshot, _argv = take_snapshot(args)
    if "read_only" in snapshot or args.from_file:
        # The client gave the agent's snapshots their words; a recording's are made again
        # for the moment shown (a task left an await cycle since its record was written)
        fill_texts(snapshot, "tasks")
    # One string, not json.dump: dump streams through json's pure-Python encoder, which
    # takes seconds for 100,000 tasks where the C encoder of dumps takes a fraction of one.
    # Control, bidi and zero-width characters of task names escaped: the same JSON, inert
    # in a terminal.
    text = json.dumps(snapshot, indent=args.indent, ensure_ascii=False)
    sys.stdout.write(terminal_safe_json(text) + "\n")
    return 0


def _snapshot_taker(args: argparse.Namespace) -> Callable[[int], WireSnapshot]:
    """Takes a snapshot of one pid as `ps` does, with the options of `args`."""

    def take(pid: int) -> WireSnapshot:
        one = argparse.Namespace(
            pid=pid, timeout=args.timeout, no_inject=args.no_inject, read_only=False
        )  # read-only only as the fallback, as `ps` does
        return take_snapshot(one)[0]

    return take


def _failure_reporter(once: bool) -> Callable[[int, BaseException], None]:
    """Says on stderr, in one line, why a pid could not be read; with `once`, says it again
    only when the reason changes (an exporter is scraped every few seconds)."""
    said: dict[int, str] = {}

    def report(pid: int, error: BaseException) -> None:
        text = str(error) or type(error).__name__
        if once and said.get(pid) == text:
            return
        said[pid] = text
        about = "" if f"process {pid}" in text else f"process {pid}: "
        print(f"taskscope: {about}{text}", file=sys.stderr, flush=True)

    return report


def cmd_metrics(args: argparse.Namespace) -> int:
    from taskscope.metrics import SnapshotCollector, exposition, registry_for

    failed: list[int] = []
    report = _failure_reporter(once=False)

    def on_failure(pid: int, error: BaseException) -> None:
        failed.append(pid)
        report(pid, error)

    collector = SnapshotCollector(args.pids, _snapshot_taker(args), on_failure)
    sys.stdout.write(exposition(registry_for([collector]), openmetrics=args.openmetrics))
    return EXIT_ERROR if failed else 0


def cmd_exporter(args: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from taskscope.metrics import SnapshotCollector, registry_for

    collector = SnapshotCollector(args.pids, _snapshot_taker(args), _failure_reporter(once=True))
    try:
        server, thread = start_http_server(
            args.port, addr=args.host, registry=registry_for([collector])
        )
    except OSError as error:
        print(
            f"taskscope: cannot listen on {args.host}:{args.port}: {error.strerror or error}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    host, port = args.host, server.server_address[1]
    pids = " ".join(str(pid) for pid in collector.pids)
    print(
        f"serving the metrics of {pids} at http://{host}:{port}/metrics; Ctrl-C stops",
        flush=True,
    )
    try:
        while thread.is_alive():
            thread.join(3600)
    finally:
        server.shutdown()
        server.server_close()
    return 0


def cmd_otel(args: argparse.Namespace) -> int:
    from taskscope.metrics import SnapshotCollector
    from taskscope.otel import OtelUnavailable, meter_provider

    if not 1 <= args.interval <= 3600:
        raise ClientError("--interval is in seconds, from 1 to 3600")
    endpoint = args.endpoint if args.endpoint is not None else ("" if args.otlp else None)
    collector = SnapshotCollector(args.pids, _snapshot_taker(args), _failure_reporter(once=True))
    try:
        provider = meter_provider(collector, interval=args.interval, endpoint=endpoint)
    except OtelUnavailable as error:
        print(f"taskscope: {error}", file=sys.stderr)
        return EXIT_ERROR
    where = (
        "the terminal" if endpoint is None else (endpoint or "the OTLP endpoint of the environment")
    )
    pids = " ".join(str(pid) for pid in collector.pids)
    print(
        f"taskscope: exporting the metrics of {pids} to {where} every {args.interval:g} s; "
        f"Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    finally:
        provider.shutdown()


def _resolve(source: Source, args: argparse.Namespace) -> TaskInfo:
    from taskscope.model import TaskModel

    model = TaskModel.from_snapshot(source.snapshot(include_finished=True))
    return resolve_task(model, args.task, args.pid, args.command)


def cmd_stack(args: argparse.Namespace) -> int:
    from taskscope.report import safe_text

    source = open_source(args, needs=Capability.STACK_SOURCE)
    try:
        task = _resolve(source, args)
        reply = source.stack(task.id)
    finally:
        source.close()
    title = f"task {task.id} {safe_text(task.name)} ({safe_text(task.coro)}())"
    if not reply.get("found"):
        print(f"taskscope: {title} has gone from process {args.pid}", file=sys.stderr)
        return EXIT_ERROR
    record = reply.get("record")
    if record is not None:
        outcome = record.get("exception") or record.get("result") or ""
        print(f"{title} finished: {record['state']} {safe_text(outcome)}".rstrip())
        return 0
    print(f"{title}, {task.state}, stack outermost first:")
    for frame in reply["stack"]:
        print(f"  {safe_text(frame['function'])}  {safe_text(frame['file'])}:{frame['line']}")
        line = frame.get("source")
        if line:
            print(f"      {safe_text(line)}")
    if reply.get("created_from"):
        print("created from:")
        for frame in reply["created_from"]:
            print(f"  {safe_text(frame['function'])}  {safe_text(frame['file'])}:{frame['line']}")
    return 0


CANCEL_TEXT = {
    "requested": "cancel requested for {task}; `taskscope ps {pid}` shows the outcome",
    "already_finished": "{task} had already finished",
    "no_such_task": "{task} has gone from process {pid} (see `taskscope ps {pid}`)",
    "queued": "the loop of {task} is blocked: the cancel is delivered when it runs "
    "again; `taskscope ps {pid}` shows the outcome",
    "failed": "could not cancel {task}: {error}",
}


def cmd_cancel(args: argparse.Namespace) -> int:
    from taskscope.report import safe_text

    source = open_source(args, needs=Capability.CANCEL)
    try:
        task = _resolve(source, args)
        result = source.cancel(task.id, args.message)
    finally:
        source.close()
    outcome = result.outcome
    error = result.error or "the agent did not say why"
    title = f"task {task.id} {safe_text(task.name)} ({safe_text(task.coro)}())"
    # On another host, the `ps` to run names it: `taskscope ps ssh://HOST PID`.
    where = args.pid if args.remote is None else f"{args.remote} {args.pid}"
    text = CANCEL_TEXT.get(outcome, outcome).format(task=title, pid=where, error=error)
    if outcome in ("no_such_task", "failed"):
        print(f"taskscope: {text}", file=sys.stderr)
        return EXIT_ERROR
    print(text)
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    args.no_inject = True  # no agent: NoAgent says so, nothing is loaded to be unloaded
    if args.remote is not None:
        return _detach_remote(args)
    source = open_source(args, needs=Capability.DETACH)
    try:
        source.detach()  # ClientError when its socket stays: "... did not stop"
    finally:
        source.close()
    print(f"agent stopped in process {args.pid}: its hooks are undone and its socket is gone")
    return 0


def _detach_remote(args: argparse.Namespace) -> int:
    """Detach over ssh: the agent hangs up after answering, which ends the bridge and ssh."""
    client = remote_client(args)
    with client:
        client.detach()
        if not client.wait_hangup(args.timeout):
            print(
                f"taskscope: the agent of process {args.pid} on {args.remote} did not stop",
                file=sys.stderr,
            )
            return EXIT_ERROR
    print(f"agent stopped in process {args.pid} on {args.remote}: its hooks are undone")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from taskscope.client import AgentGone
    from taskscope.recording import RecordingWriter

    if args.last:
        if args.duration is not None:
            raise ClientError("--last saves what was kept already: it takes no --duration")
        return _record_last(args)
    if not 0.05 <= args.interval <= 60:
        raise ClientError("--interval is in seconds, from 0.05 to 60")
    if args.duration is not None and args.duration <= 0:
        raise ClientError("--duration is in seconds, more than 0")
    source = open_source(args, needs=Capability.PUSH)
    with contextlib.closing(source):
        identity = source.identity()
        facts: dict[str, object] = {
            key: identity.get(key) for key in ("pid", "python", "argv", "executable")
        }
        facts["started_at"] = identity.get("started_at")
        facts["interval"] = args.interval
        try:
            writer = RecordingWriter.create(args.output, facts)
        except OSError as error:
            raise ClientError(f"cannot write {args.output}: {error.strerror or error}") from None
        until = f"for {args.duration:g} s" if args.duration else "until Ctrl-C"
        print(
            f"taskscope: recording process {args.pid} to {args.output} every "
            f"{args.interval:g} s, {until}",
            file=sys.stderr,
            flush=True,
        )
        deadline = time.monotonic() + args.duration if args.duration else None
        why = ""
        first = last = 0.0
        try:
            for update in source.subscribe(args.interval):
                if isinstance(update, SnapshotUpdate):
                    writer.add_snapshot(update.snapshot)
                    last = float(update.snapshot["taken_at"])
                else:
                    writer.add_delta(update.delta)
                    last = float(update.delta["taken_at"])
                first = first or last
                if deadline is not None and time.monotonic() >= deadline:
                    break
        except KeyboardInterrupt:
            pass
        except AgentGone:
            why = f"process {args.pid} ended; "
        except OSError as error:
            # The disk is full, or the file went: what was written before stays readable.
            writer_error = error.strerror or str(error)
            print(
                f"taskscope: writing {args.output} failed ({writer_error}); the recording "
                f"stops there and reads up to its last whole update",
                file=sys.stderr,
            )
            return EXIT_ERROR
        finally:
            try:
                writer.close()
            except OSError:
                pass
    size = os.path.getsize(args.output)
    print(
        f"taskscope: {why}recorded {writer.messages} updates over {last - first:.0f} s to "
        f"{args.output} ({_size_text(size)}); look with `taskscope tree --from "
        f"{args.output}`",
        file=sys.stderr,
    )
    return 0


def _record_last(args: argparse.Namespace) -> int:
    """`record PID --last`: the flight recorder's base and deltas, written as a recording."""
    from taskscope.recording import RecordingWriter
    from taskscope.sources.live import LiveSource

    source = open_source(args, needs=Capability.PUSH)
    with contextlib.closing(source):
        if not isinstance(source, LiveSource):  # a read-only look has no flight recorder
            raise ClientError(f"process {args.pid} has no agent to ask for its flight recording")
        identity = source.identity()
        held = source.command_client().flight()
    if held is None:
        print(
            f"taskscope: the flight recorder is off in {args.pid}: start it with "
            f"TASKSCOPE_FLIGHT_RECORDER=60 or taskscope.install(flight_recorder=60)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    facts: dict[str, object] = {
        key: identity.get(key) for key in ("pid", "python", "argv", "executable")
    }
    facts["started_at"] = identity.get("started_at")
    facts["flight_window"] = held["window"]
    try:
        writer = RecordingWriter.create(args.output, facts)
        try:
            writer.add_snapshot(held["base"])
            for delta in held["deltas"]:
                writer.add_delta(delta)
        finally:
            writer.close()
    except OSError as error:
        raise ClientError(f"cannot write {args.output}: {error.strerror or error}") from None
    deltas = held["deltas"]
    span = (deltas[-1]["taken_at"] - held["base"]["taken_at"]) if deltas else 0.0
    size = os.path.getsize(args.output)
    print(
        f"taskscope: saved the last {span:.0f} s of process {args.pid} ({len(deltas) + 1} "
        f"updates) to {args.output} ({_size_text(size)}); look with `taskscope tree --from "
        f"{args.output}`",
        file=sys.stderr,
    )
    return 0


def _size_text(size: int) -> str:
    if size >= 1e6:
        return f"{size / 1e6:.1f} MB"
    return f"{size / 1e3:.0f} kB" if size >= 1e3 else f"{size} bytes"


def cmd_run(args: argparse.Namespace) -> int:
    target = list(args.target)
    if target and target[0] == "--":
        target = target[1:]
    if not target:
        print(
            "taskscope: run needs a script or -m module, e.g. `taskscope run app.py`",
            file=sys.stderr,
        )
        return EXIT_USAGE
    # The launcher checks the options and the script, and says what is wrong in one line.
    # A fresh interpreter that loaded nothing of the CLI (no textual, no psutil); same pid.
    os.execv(sys.executable, [sys.executable, "-m", "taskscope.agent.launch", *target])
    return 0  # pragma: no cover


def cmd_attach(args: argparse.Namespace) -> int:
    from taskscope.ui.app import run_dashboard

    # The dashboard follows pushed updates and cancels: the live agent only, no fallback.
    source = open_source(args, needs=Capability.PUSH | Capability.CANCEL)
    if args.record is not None:
        source = _recorded_while_watched(source, args)
    result = run_dashboard(source, interval=args.interval)
    if args.record is not None:
        print(f"taskscope: recorded to {args.record}; replay it with `taskscope replay "
              f"{args.record}`", file=sys.stderr)  # fmt: skip
    return result


def _recorded_while_watched(source: Source, args: argparse.Namespace) -> Source:
    """`attach --record FILE`: the dashboard's own subscription, also written to FILE."""
    from taskscope.recording import RecordingWriter
    from taskscope.sources.recording import RecordingTap, recording_facts

    try:
        writer = RecordingWriter.create(args.record, recording_facts(source, args.interval))
    except OSError as error:
        source.close()
        raise ClientError(f"cannot write {args.record}: {error.strerror or error}") from None
    return RecordingTap(source, writer)


def cmd_bridge(args: argparse.Namespace) -> int:
    """The remote end of `ssh://HOST PID`: connect to the agent of args.pid here (loading it
    when needed, as `ps` does), then relay bytes between stdin/stdout and its socket until
    either side closes. Nothing else reaches stdout: the protocol's stream is the only thing
    there; errors go to stderr as one line."""
    from taskscope.process_facts import process_alive
    from taskscope.remote import relay

    if args.remote is not None:
        raise ClientError("bridge runs on the host of the process: give it a plain PID")
    # The stream keeps private copies of stdin and stdout; the process's own fds 0 and 1
    # become /dev/null and stderr, so nothing printed (here, or by a debugger loading the
    # agent) can mix into the protocol.
    incoming, outgoing = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    args.read_only = False
    from taskscope.client import AgentClient

    source = open_source(args, needs=Capability.PUSH)  # the live agent, loaded if needed
    try:
        path = source.path  # type: ignore[attr-defined]
    finally:
        source.close()
    raw = AgentClient(
        args.pid, timeout=args.timeout, socket_dir=os.path.dirname(path)
    ).open_socket()
    try:
        relay(raw, incoming, outgoing)
    except OSError as error:
        raise ClientError(f"relaying for process {args.pid} failed: {error.strerror}") from None
    finally:
        raw.close()
    if not process_alive(args.pid):  # gone, or a zombie waiting for its parent
        raise ClientError(f"process {args.pid} exited")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from taskscope.recording import RecordingError, open_recording, parse_at
    from taskscope.sources.recording import RecordingSource

    try:
        recording = open_recording(args.file)
        at = recording.start if recording.chunks else None
        if args.at is not None and recording.chunks:
            try:
                at = parse_at(args.at, recording)
            except ValueError as error:
                raise ClientError(str(error)) from None
        source = RecordingSource(recording, at=at)
    except RecordingError as error:
        raise ClientError(str(error)) from None
    from taskscope.ui.replay import run_replay

    return run_replay(source)


def cmd_demo(args: argparse.Namespace) -> int:
    from taskscope.demo import run_demo

    return run_demo()


COMMANDS = {
    "list": cmd_list,
    "ps": cmd_ps,
    "tree": cmd_tree,
    "dump": cmd_dump,
    "metrics": cmd_metrics,
    "exporter": cmd_exporter,
    "stack": cmd_stack,
    "cancel": cmd_cancel,
    "run": cmd_run,
    "detach": cmd_detach,
    "otel": cmd_otel,
    "record": cmd_record,
    "attach": cmd_attach,
    "bridge": cmd_bridge,
    "replay": cmd_replay,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["run"]:
        # Everything after `run` belongs to the program, `-m` included.
        args = argparse.Namespace(command="run", target=arguments[1:])
    else:
        args = parser.parse_args(arguments)
        _split_target(parser, args)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except ClientError as error:
        print(f"taskscope: {error}", file=sys.stderr)
        return EXIT_ERROR
    except TaskNotFound as error:
        print(f"taskscope: {error}", file=sys.stderr)
        return EXIT_ERROR
    except NoEventLoop as error:
        print(f"taskscope: {error}", file=sys.stderr)
        return EXIT_NO_LOOP
    except AmbiguousTask as error:
        print(f"taskscope: {error}", file=sys.stderr)
        return EXIT_USAGE
    except _attach_errors() as error:
        print(f"taskscope: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _attach_errors() -> tuple[type[BaseException], ...]:
    try:
        from taskscope.attach.errors import InjectionError
    except ImportError:
        return ()
    return (InjectionError,)


def entry() -> None:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
