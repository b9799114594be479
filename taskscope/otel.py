"""OpenTelemetry metrics of live processes' tasks (the `otel` extra: opentelemetry-sdk).

The same numbers as `taskscope metrics`, counted by the same code (`metrics.snapshot_metrics`),
handed to OpenTelemetry as observable gauges: each collection takes one fresh snapshot of every
process and reports every gauge from it. `taskscope otel PID...` exports them every interval,
to an OTLP/HTTP endpoint when one is given (`--endpoint`, or the standard
OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_METRICS_ENDPOINT), else to the terminal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from taskscope.metrics import SnapshotCollector, snapshot_metrics

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation

#: What a user without the extra is told, in one line.
MISSING_EXTRA = "OpenTelemetry export needs the otel extra: pip install 'taskscope[otel]'"

#: One collection asks every gauge in turn; they share the snapshots taken for the first.
_SHARED_FOR = 1.0


class OtelUnavailable(Exception):
    """The opentelemetry-sdk package is not installed; str() is the line to show."""


class SnapshotGauges:
    """Observable gauges for `collector`'s processes on `meter`, one per metric of
    `taskscope metrics` (same names, same attributes)."""

    def __init__(self, meter: Meter, collector: SnapshotCollector) -> None:
        self.collector = collector
        self._lock = threading.Lock()
        self._taken_at = 0.0
        self._samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        # Describe every metric from an empty look, so the gauges exist before any process
        # is read (a family's name and help do not depend on the numbers).
        for family in snapshot_metrics({}):
            meter.create_observable_gauge(
                family.name,
                callbacks=[self._callback(family.name)],
                description=family.documentation,
                unit="s" if family.name.endswith("_seconds") else "1",
            )

    def _callback(self, name: str) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            from opentelemetry.metrics import Observation

            return [Observation(value, labels) for labels, value in self._current(name)]

        return observe

    def _current(self, name: str) -> list[tuple[dict[str, str], float]]:
        with self._lock:
            now = time.monotonic()
            if now - self._taken_at > _SHARED_FOR:
                samples: dict[str, list[tuple[dict[str, str], float]]] = {}
                for family in snapshot_metrics(self.collector.snapshots()):
                    samples[family.name] = [
                        (dict(sample.labels), float(sample.value)) for sample in family.samples
                    ]
                self._samples = samples
                self._taken_at = time.monotonic()
            return self._samples.get(name, [])


def meter_provider(
    collector: SnapshotCollector,
    *,
    interval: float,
    endpoint: str | None,
    stream: Any = None,
) -> Any:
    """A MeterProvider exporting `collector`'s gauges every `interval` seconds: over OTLP/HTTP
    to `endpoint` (or the endpoint of the standard environment variables), else as text to
    `stream`. Raises OtelUnavailable without the SDK."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (
            ConsoleMetricExporter,
            MetricExporter,
            PeriodicExportingMetricReader,
        )
        from opentelemetry.sdk.resources import Resource
    except ImportError:
        raise OtelUnavailable(MISSING_EXTRA) from None
    exporter: MetricExporter
    if endpoint is not None:
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
        except ImportError:
            raise OtelUnavailable(MISSING_EXTRA + " (OTLP needs its HTTP exporter)") from None
        exporter = OTLPMetricExporter(endpoint=endpoint or None)
    else:
        exporter = (
            ConsoleMetricExporter(out=stream) if stream is not None else ConsoleMetricExporter()
        )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval * 1000)
    resource = Resource.create({"service.name": "taskscope"})
    provider = MeterProvider(metric_readers=[reader], resource=resource)
    SnapshotGauges(provider.get_meter("taskscope"), collector)
    return provider
