"""Prometheus metrics of the API process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

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
    "Explanation jobs accepted",
    ["method", "deduplicated"],
    registry=REGISTRY,
)
SESSION_CACHE = Gauge(
    "lantern_session_cache_events",
    "ORT session cache hits and misses in this process",
    ["event"],
    registry=REGISTRY,
)


def render_metrics(state: ServiceState) -> tuple[bytes, str]:
    SESSION_CACHE.labels("hit").set(state.rt.sessions.hits)
    SESSION_CACHE.labels("miss").set(state.rt.sessions.misses)
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
