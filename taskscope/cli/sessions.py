"""The commands that run over time: record, replay, run, attach (the dashboard), bridge (the
remote end of `ssh://HOST PID`) and demo."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from taskscope.cli.exits import EXIT_ERROR, EXIT_USAGE
from taskscope.cli.sources import open_source, turn_time_steps
from taskscope.sources import Capability, ClientError, SnapshotUpdate, Source


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
            f"taskscope: the flight recorder is off in process {args.pid}: start it with "
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


#: The dashboard's least interval between the reads of a read-only look (each runs a helper
#: process of the target's Python that reads its memory: tens of milliseconds of CPU).
READ_ONLY_INTERVAL = 1.0


def cmd_attach(args: argparse.Namespace) -> int:
    from taskscope.sources.readonly import ReadOnlySource
    from taskscope.ui.app import run_dashboard

    # The live agent, else (3.14+) a read-only look polled at each update, which cannot
    # cancel (the dashboard says so when asked to)
    source = open_source(args)
    if isinstance(source, ReadOnlySource):
        # Each update a read of the process's memory by a helper process: a second apart
        args.interval = max(args.interval, READ_ONLY_INTERVAL)
        try:
            source.snapshot()  # what makes a read impossible is said before the screen opens
        except BaseException:
            source.close()
            raise
    if args.time_steps:
        try:
            turn_time_steps(source, args, on=True)
        except BaseException:
            source.close()
            raise
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
