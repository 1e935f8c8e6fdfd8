"""Prometheus metrics: HTTP by route (this process), and jobs by method, queue depth and
caches (from the job store, which every worker process adds to)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from jobs.store import DURATION_BUCKETS

if TYPE_CHECKING:
    from service.state import ServiceState

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "lantern_http_requests_total", "HTTP requests", ["route", "status"], registry=REGISTRY
)
LATENCY = Histogram(
    "lantern_http_request_seconds", "HTTP request latency", ["route"], registry=REGISTRY
)
JOBS_SUBMITTED = Counter(
    "lantern_jobs_submitted_total",
    "Explanation requests accepted; deduplicated=true is a result-cache hit",
    ["method", "deduplicated"],
    registry=REGISTRY,
)


class StoreCollector(Collector):
    """Reads the job counters from the store at scrape time."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        jobs = self.state.rt.jobs
        raw = jobs.job_metrics()
        finished = CounterMetricFamily(
            "lantern_jobs_finished",
            "Jobs finished, by method and state",
            labels=["method", "state"],
        )
        passes = CounterMetricFamily(
            "lantern_job_model_calls", "Forward passes used by succeeded jobs", labels=["method"]
        )
        duration = HistogramMetricFamily(
            "lantern_job_duration_seconds", "Compute time of succeeded jobs", labels=["method"]
        )
        methods: set[str] = set()
        for key, value in raw.items():
            parts = key.split("|")
            if len(parts) == 3 and parts[2] == "count":
                finished.add_metric([parts[0], parts[1]], float(value))
            if len(parts) == 2 and parts[1] == "passes_sum":
                passes.add_metric([parts[0]], float(value))
            methods.add(parts[0])
        for method in sorted(methods):
            count = float(raw.get(f"{method}|succeeded|count", "0"))
            if not count:
                continue
            buckets = [
                (str(le), float(raw.get(f"{method}|le|{le}", "0"))) for le in DURATION_BUCKETS
            ]
            buckets.append(("+Inf", count))
            duration.add_metric(
                [method], buckets, sum_value=float(raw.get(f"{method}|ms_sum", "0")) / 1000.0
            )
        yield finished
        yield passes
        yield duration
        queue = GaugeMetricFamily("lantern_queue_depth", "Tasks waiting in the broker queue")
        queue.add_metric([], float(jobs.queue_length(self.state.rt.settings.queue)))
        yield queue
        cache = CounterMetricFamily(
            "lantern_session_cache",
            "ONNX Runtime session cache of the API process",
            labels=["event"],
        )
        cache.add_metric(["hit"], float(self.state.rt.sessions.hits))
        cache.add_metric(["miss"], float(self.state.rt.sessions.misses))
        yield cache


def render_metrics(state: ServiceState) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    registry.register(StoreCollector(state))
    return generate_latest(REGISTRY) + generate_latest(registry), CONTENT_TYPE_LATEST
