"""The command line's grammar: `build_parser`, its argument types (a PID, an `ssh://` host, a
TCP port) and the option groups several commands share."""

from __future__ import annotations

import argparse

from taskscope import __version__
from taskscope.remote import BadTarget, RemoteHost, is_remote, parse_target
from taskscope.report import PS_SORTS


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
        _agent_options(command, several=False)
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
    ps.add_argument(
        "--warnings",
        action="store_true",
        help="only the tasks that have a warning, then the warnings",
    )
    ps.add_argument(
        "--sort",
        choices=PS_SORTS,
        default=None,
        help="busiest, most stepped (with --time-steps), oldest or longest waiting where "
        "it is first, or by name (default: by id)",
    )
    _time_steps_option(ps, then=", and wait a second for the busy and steps figures")
    tree = looking("tree", "the task tree, with what each task awaits")
    tree.add_argument("-a", "--all", action="store_true", help="include finished tasks")
    looking(
        "lint",
        "the process's warnings, one a line (deadlocks, leaks, spins...); exit status 4 "
        "when there is any, 0 when none",
    )
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
    time_steps = with_pid(
        "time-steps",
        "turn step timing on in a running process (busy and steps figures, stalls timed "
        "exactly; 0.5-1 µs a step), or off with --off",
    )
    time_steps.add_argument(
        "--off", action="store_true", help="turn it off: asyncio runs its steps untimed again"
    )
    attach = with_pid("attach", "open the live dashboard on a process")
    _time_steps_option(attach, stays=" after the dashboard")
    attach.add_argument(
        "--interval", type=float, default=0.5, help="seconds between updates (default 0.5)"
    )
    attach.add_argument(
        "--read-only",
        action="store_true",
        help="read the tasks from the process's memory at each update, running no code in "
        "it (3.14+; cancel needs the agent); also what happens when code cannot run there",
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
        "[--flight-recorder S] [--stall-threshold S] [--time-steps])",
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
    _agent_options(command, several=True)


def _agent_options(command: argparse.ArgumentParser, *, several: bool) -> None:
    """--no-inject and --timeout: whether and how long to wait for the agent of the process
    (of each process, when the command takes `several`)."""
    process, agent = ("a process", "an agent") if several else ("the process", "the agent")
    command.add_argument(
        "--no-inject",
        action="store_true",
        help=f"fail instead of loading the agent into {process}",
    )
    command.add_argument(
        "--timeout", type=float, default=10.0, help=f"seconds to wait for {agent} (default 10)"
    )


def _time_steps_option(command: argparse.ArgumentParser, stays: str = "", then: str = "") -> None:
    """--time-steps: turn step timing on in the process before the command does its part."""
    command.add_argument(
        "--time-steps",
        action="store_true",
        help=f"turn step timing on in the process first (it stays on{stays}){then}",
    )
