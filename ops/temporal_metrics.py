"""The Temporal SDK's own metrics (workflow task latency, activity execution latency, polls, slots…) in
prometheus-client's registry, so a worker serves them and ours on one port.

The SDK's core can serve Prometheus itself (`PrometheusConfig`), but on a port of its own: two scrape targets
per worker, and two ports to keep free. Instead its runtime records into a `MetricBuffer`, which a thread drains
every second into running totals here; a scrape reads the totals. Drained that often, the buffer (100k updates,
a few hundred jobs' worth each second) does not overflow between scrapes, however rare they are.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    BufferedMetricUpdate,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)

BUFFER_SIZE = 100_000
DRAIN_EVERY_S = 1.0
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds: the SDK's latencies run from a sub-millisecond workflow task to a minute-long activity."""

_Labels = tuple[tuple[str, str | int | float | bool], ...]


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    count: int = 0
    sum: float = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                self.buckets[i] += 1
                break


@dataclass
class _Family:
    kind: int
    description: str
    unit: str
    series: dict[_Labels, float | _Histogram] = field(default_factory=dict)


class TemporalSdkCollector(Collector):
    """Totals of the SDK's buffered updates: counters summed, gauges the last value, histograms bucketed."""

    def __init__(self, buffer: MetricBuffer) -> None:
        self._buffer = buffer
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}
        self._sorted: dict[_Labels, _Labels] = {}

    def drain(self) -> None:
        with self._lock:
            self._add(self._buffer.retrieve_updates())

    def _add(self, updates: Sequence[BufferedMetricUpdate]) -> None:
        for update in updates:
            metric = update.metric
            family = self._families.get(metric.name)
            if family is None:
                family = _Family(metric.kind, metric.description or metric.name, metric.unit or "")
                self._families[metric.name] = family
            raw = tuple(update.attributes.items())
            labels = self._sorted.get(raw)
            if labels is None:  # once per series and attribute order: sorting every update doubled the drain
                labels = self._sorted[raw] = tuple(sorted(raw))
            if family.kind == BUFFERED_METRIC_KIND_COUNTER:
                family.series[labels] = float(family.series.get(labels, 0.0)) + update.value  # type: ignore[arg-type]
            elif family.kind == BUFFERED_METRIC_KIND_GAUGE:
                family.series[labels] = float(update.value)
            else:
                histogram = family.series.setdefault(labels, _Histogram())
                assert isinstance(histogram, _Histogram)
                histogram.observe(float(update.value))

    def collect(self) -> Iterable[Metric]:
        self.drain()  # a scrape sees everything recorded up to now
        with self._lock:
            return list(self._metrics())

    def _metrics(self) -> Iterator[Metric]:
        for name, family in sorted(self._families.items()):
            label_names = sorted({key for labels in family.series for key, _ in labels})
            if family.kind == BUFFERED_METRIC_KIND_COUNTER:
                counter = CounterMetricFamily(name, family.description, labels=label_names)
                for labels, value in family.series.items():
                    counter.add_metric(_values(labels, label_names), float(value))  # type: ignore[arg-type]
                yield counter
            elif family.kind == BUFFERED_METRIC_KIND_GAUGE:
                gauge = GaugeMetricFamily(name, family.description, labels=label_names)
                for labels, value in family.series.items():
                    gauge.add_metric(_values(labels, label_names), float(value))  # type: ignore[arg-type]
                yield gauge
            else:
                # Durations arrive in seconds (`MetricBufferDurationFormat.SECONDS`): named so, as Prometheus asks.
                seconds = family.unit in ("duration", "s", "seconds") and not name.endswith("_seconds")
                histogram = HistogramMetricFamily(
                    f"{name}_seconds" if seconds else name, family.description, labels=label_names
                )
                for labels, value in family.series.items():
                    assert isinstance(value, _Histogram)
                    cumulative, running = [], 0
                    for bound, n in zip(BUCKETS, value.buckets, strict=True):
                        running += n
                        cumulative.append((str(bound), float(running)))
                    cumulative.append(("+Inf", float(value.count)))
                    histogram.add_metric(_values(labels, label_names), cumulative, value.sum)
                yield histogram


def _values(labels: _Labels, names: list[str]) -> list[str]:
    given = dict(labels)
    return [str(given.get(name, "")) for name in names]


class _Drainer(threading.Thread):
    def __init__(self, collector: TemporalSdkCollector) -> None:
        super().__init__(name="temporal-metrics-drain", daemon=True)
        self._collector = collector

    def run(self) -> None:
        stopped = threading.Event()  # never set: the thread lives as long as the process, like the runtime
        while not stopped.wait(DRAIN_EVERY_S):
            self._collector.drain()


@functools.cache
def metrics_runtime() -> Runtime:
    """The process's SDK runtime with its metrics in the default registry: made once, on first use (a runtime
    is a process's, and its collector can be registered only once)."""
    buffer = MetricBuffer(BUFFER_SIZE, MetricBufferDurationFormat.SECONDS)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    collector = TemporalSdkCollector(buffer)
    REGISTRY.register(collector)
    _Drainer(collector).start()
    return runtime
