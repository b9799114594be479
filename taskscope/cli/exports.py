"""The commands that export task metrics: metrics (one exposition on stdout), exporter (a
Prometheus endpoint) and otel (OpenTelemetry)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from taskscope.cli.exits import EXIT_ERROR
from taskscope.cli.sources import take_snapshot
from taskscope.sources import ClientError

if TYPE_CHECKING:
    from taskscope.protocol import WireSnapshot


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
