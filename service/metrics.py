"""What `/metrics` reports, in Prometheus' text format: requests, latencies, queue depth, batch sizes."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401 - re-exported for the app
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServiceMetrics:
    """One registry per server (not the process-global one, so two apps in one test process don't clash)."""

    def __init__(self, queue_depth: Callable[[], float], waiting_to_read: Callable[[], float]):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "spanqa_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "spanqa_request_seconds", "Time to answer an HTTP request", ["method", "route"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_size = Histogram(
            "spanqa_reader_batch_questions", "Questions read together in one reader pass",
            buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.rejected = Counter(
            "spanqa_rejected", "Requests refused before any work", ["reason"], registry=self.registry
        )
        self.page_work = Counter(
            "spanqa_page_work", "Page calls (boxes, geometry, images, text) by outcome: drawn, cached, over_budget, "
            "known_over_budget, failed", ["outcome"], registry=self.registry,
        )
        depth = Gauge("spanqa_queue_depth", "Questions and searches admitted and not yet answered",
                      registry=self.registry)
        depth.set_function(queue_depth)
        waiting = Gauge("spanqa_reader_waiting", "Questions retrieved and waiting for the reader",
                        registry=self.registry)
        waiting.set_function(waiting_to_read)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)
