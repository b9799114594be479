"""`taskscope otel` against a real process and a real OTLP/HTTP receiver: what it exports,
decoded with OpenTelemetry's own protobuf messages, agrees with `taskscope dump`."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import REPO, wait_for
from tests.test_metrics import Samples, assert_agrees_with_dump, value

metrics_service_pb2 = pytest.importorskip(
    "opentelemetry.proto.collector.metrics.v1.metrics_service_pb2",
    reason="the otel extra (opentelemetry-exporter-otlp-proto-http) is not installed",
)


class Receiver(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP metrics receiver on loopback that keeps every request body."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[bytes] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/metrics"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        assert isinstance(self.server, Receiver)
        self.server.bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def decode(body: bytes) -> Samples:
    """Every gauge data point of an OTLP export, by metric name, with its attributes."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    request.ParseFromString(body)
    samples: Samples = {}
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.gauge.data_points:
                    labels = {attr.key: attr.value.string_value for attr in point.attributes}
                    number = point.as_double if point.HasField("as_double") else point.as_int
                    samples.setdefault(metric.name, []).append((labels, float(number)))
    return samples


def test_otel_exports_over_otlp_what_dump_counts(start, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    # GIVEN the service at rest (8 pending tasks, one done and one failed in the history)
    target = start("service.py").wait_ready()
    # WHEN `taskscope otel` exports its metrics to the receiver every second
    exporter = subprocess.Popen(
        [
            *(sys.executable, "-m", "taskscope", "otel", str(target.pid)),
            *("--endpoint", receiver.url, "--interval", "1"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    try:
        wait_for(
            lambda: any("taskscope_tasks" in decode(body) for body in receiver.bodies),
            60,
            "an OTLP export holding taskscope_tasks",
        )
        # THEN the export decodes with OpenTelemetry's own messages and agrees with dump
        samples = next(
            decode(body) for body in receiver.bodies if "taskscope_tasks" in decode(body)
        )
        assert value(samples, "taskscope_tasks", pid=str(target.pid), state="pending") == 8
        assert_agrees_with_dump(samples, target.pid)
    finally:
        exporter.send_signal(signal.SIGINT)
        _out, err = exporter.communicate(timeout=30)
    # AND Ctrl-C ends it as the other long-running commands end, saying only where it sent
    assert exporter.returncode == 130, err
    assert "Traceback" not in err
    assert err.splitlines()[0].startswith(f"taskscope: exporting the metrics of {target.pid}")


def test_without_the_extra_it_says_what_to_install(start) -> None:  # type: ignore[no-untyped-def]
    target = start("service.py").wait_ready()
    # An interpreter where OpenTelemetry cannot be imported, as without the extra.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'opentelemetry':\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from taskscope.cli import main\n"
        f"sys.exit(main(['otel', '{target.pid}']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "taskscope: OpenTelemetry export needs the otel extra: pip install 'taskscope[otel]'"
    ]
