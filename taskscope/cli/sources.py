"""Where a command's snapshot comes from: the source of a PID (its agent, a read-only look, a
parent's workers, a remote host through ssh) or a recording (--from), and the one-line
NoEventLoop for a process without asyncio."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from taskscope.protocol import CompactSnapshot
from taskscope.sources import Capability, ClientError, Source
from taskscope.sources.base import stopped_process

if TYPE_CHECKING:
    from taskscope.protocol import WireSnapshot
    from taskscope.remote import RemoteClient


def open_source(
    args: argparse.Namespace, needs: Capability = Capability.NONE, one_process: bool = False
) -> Source:
    """The source every command reads args.pid through: its agent (loaded into the process
    unless --no-inject), or a read-only look with --read-only, or when the agent cannot be
    had and a read-only look can do what the command `needs` (3.14+). A Python parent of
    Python processes is read with its workers (a fleet), unless `one_process`: `detach` acts
    on the process named alone."""
    from taskscope.sources.choose import open_source as choose

    if getattr(args, "remote", None) is not None:
        return _open_remote(args)
    if not getattr(args, "read_only", False) and _has_python_children(args.pid):
        _look_past_launcher(args)
        if not one_process and (args.pid_given == args.pid or _has_python_children(args.pid)):
            return _open_fleet(args, needs)

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


def _look_past_launcher(args: argparse.Namespace) -> None:
    """A pid that is not Python but runs one Python program (`timeout`, `uv run`, a shell):
    the command looks at that program instead (args.pid becomes its pid), and says so. One
    that runs several (init, a shell with jobs) is refused, naming them: loading an agent into
    every Python process under it is never what was meant."""
    from taskscope.process_facts import process_name, programs_of_launcher

    args.pid_given = args.pid
    programs = programs_of_launcher(args.pid)
    if not programs:
        return
    name = process_name(args.pid)
    if len(programs) > 1:
        shown = ", ".join(
            f"{program.pid} ({_short(program.command)})" for program in programs[:4]
        ) + (f" and {len(programs) - 4} more" if len(programs) > 4 else "")
        raise ClientError(
            f"process {args.pid} ({name}) is not Python and runs {len(programs)} Python "
            f"programs: {shown}; pass the pid of one (`taskscope list` shows them)"
        )
    print(
        f"taskscope: process {args.pid} ({name}) is not Python; looking at the Python "
        f"program it runs, process {programs[0].pid}",
        file=sys.stderr,
    )
    args.pid = programs[0].pid


def _short(command: str, limit: int = 40) -> str:
    from taskscope.report import safe_text

    return safe_text(command, limit)


def _has_python_children(pid: int) -> bool:
    from taskscope.process_facts import has_children, python_children

    if has_children(pid) is False:  # the common case, known without psutil's walk
        return False
    return bool(python_children(pid))


def _say_problem(line: str) -> None:
    print(f"taskscope: {line}", file=sys.stderr, flush=True)


def _open_fleet(args: argparse.Namespace, needs: Capability) -> Source:
    """A parent of Python workers (uvicorn --workers, gunicorn, multiprocessing): one source
    over all of them (taskscope/fleet.py), their agents loaded in parallel; each process that
    refuses is one line on stderr. NoEventLoop when none runs asyncio; when the parent itself
    refused, and none of the others runs asyncio, a read-only look at the parent where one
    can stand in for its agent (3.14+), else an error that does not claim it has no loop."""
    from taskscope.fleet import FleetSource, NoAsyncio
    from taskscope.sources.choose import open_source as choose, read_only_can_stand_in

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
        refusal = fleet.refusals.get(args.pid)
        if refusal is None:
            raise NoEventLoop(str(error)) from None
        # The parent refused (its line is above): whether it runs asyncio is not known
        if not read_only_can_stand_in(args.pid, refusal, needs):
            raise ClientError(
                f"process {args.pid} could not be looked at (said above), and none of its "
                "Python processes runs asyncio"
            ) from None
        print(
            f"taskscope: reading process {args.pid}'s memory instead (read-only)",
            file=sys.stderr,
        )
        return choose(args.pid, timeout=args.timeout, read_only=True, needs=needs, refused=refusal)
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
    GIL, nothing of Python runs in the process, the agent included; and an agent's first look
    at a process of 100,000 tasks takes a second or two by itself."""

    def note(seconds: float) -> None:
        stopped = (
            None
            if getattr(args, "remote", None) is not None
            else stopped_process(args.pid, traced=True)
        )
        if stopped is not None:  # stopped since the command began
            print(f"taskscope: {stopped}; waiting up to {args.timeout:g} s", file=sys.stderr)
            return
        print(
            f"taskscope: process {args.pid} has not answered for {seconds:.0f} s: it keeps its "
            "agent from the GIL (a call that holds it, or a loop busy in short steps), or the "
            f"agent is still at its first look at many tasks; waiting up to {args.timeout:g} s",
            file=sys.stderr,
            flush=True,
        )

    return note


def take_snapshot(args: argparse.Namespace) -> tuple[WireSnapshot, list[str] | None]:
    """A snapshot of args.pid and its command line: from the agent, or read from the process's
    memory with --read-only, or when the agent cannot be loaded there (3.14+); or from a
    recording with --from."""
    if _from_recording(args):
        if getattr(args, "time_steps", False):
            raise ClientError("--time-steps times a running process's steps, not a recording's")
        return recorded_snapshot(args)
    source = open_source(args)
    try:
        if getattr(args, "time_steps", False):
            turn_time_steps(source, args, on=True, wait=FIRST_FIGURES_WAIT)
        snapshot = source.snapshot()
        _check_loops(source, snapshot)
        return snapshot, source.identity().get("argv")
    finally:
        source.close()


def take_rows(args: argparse.Namespace) -> WireSnapshot | CompactSnapshot:
    """`take_snapshot` for `dump` (which has no --time-steps): from a live agent, the
    snapshot left in the rows its compact encoding sent (`CompactSnapshot`), which `dump`
    writes as JSON without making a record of each; from any other source, the schema-1
    snapshot."""
    if _from_recording(args):
        return take_snapshot(args)[0]
    from taskscope.sources.live import LiveSource

    source = _source_sent_ahead(args) or open_source(args)
    try:
        if not isinstance(source, LiveSource):
            snapshot = source.snapshot()
            _check_loops(source, snapshot)
            return snapshot
        taken = source.snapshot_rows()
        _check_loops(source, taken.body if isinstance(taken, CompactSnapshot) else taken)
        return taken
    finally:
        source.close()


def _source_sent_ahead(args: argparse.Namespace) -> Source | None:
    """The live source of args.pid whose first client reads the replies of the requests
    `taskscope.early` sent before the imports (None when it sent none)."""
    from taskscope import early

    local = getattr(args, "remote", None) is None and not getattr(args, "read_only", False)
    ahead = early.take(args.pid) if local else None
    if ahead is None:
        return None
    from taskscope.sources.live import LiveSource

    source = LiveSource(
        args.pid,
        timeout=args.timeout,
        on_slow=_slow_note(args),
        ahead=ahead,
        hint_starved=not args.no_inject,
    )
    source.connect()
    return source


#: How long `ps --time-steps` waits after turning the timing on, so that there are figures.
FIRST_FIGURES_WAIT = 1.0


def turn_time_steps(source: Source, args: argparse.Namespace, on: bool, wait: float = 0.0) -> None:
    """Turn the step timing of the process's agent on or off (`--time-steps`, `taskscope
    time-steps`), saying so on stderr; with `wait`, then wait that long, for figures to be
    made. ClientError (one line) when the source is not one agent, or the agent refuses."""
    from taskscope.sources.live import LiveSource
    from taskscope.words import time_steps_words

    if not isinstance(source, LiveSource):
        raise ClientError(
            "step timing is turned on in one process's agent: give the PID of one process "
            "(a worker, not its parent), without --read-only"
        )
    timed = source.command_client().time_steps(on)
    remote = getattr(args, "remote", None)
    where = args.pid if remote is None else f"{remote} {args.pid}"
    print(f"taskscope: {time_steps_words(where, timed, wait)}", file=sys.stderr, flush=True)
    if timed and wait > 0:
        time.sleep(wait)


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
            raise ClientError(
                f"`{args.command}` needs a PID (`taskscope list` shows the Python processes), "
                "or --from FILE (a recording)"
            )
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


def _check_loops(source: Source, snapshot: Mapping[str, Any]) -> None:
    """Raise NoEventLoop for a process without asyncio (`snapshot`: a schema-1 snapshot, or
    the body of one left in rows); an agent loaded only to find that is unloaded again."""
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
