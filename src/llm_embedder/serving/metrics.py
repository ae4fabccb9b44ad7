"""Prometheus metrics of one server: requests, inputs, tokens, truncations, batches, queue time, latency, process.

Each server gets its own registry (several servers in one process, as in the tests, never share counts).
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
_TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768)
_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ServingMetrics:
    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "llm_embedder_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "llm_embedder_http_request_seconds",
            "HTTP request latency by route (all routes, errors included)",
            ["route", "method"],
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        ProcessCollector(registry=r)  # CPU seconds, resident memory, open files
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        by_task = ["task", "side"]
        self.inputs = Counter("llm_embedder_inputs", "Inputs embedded", by_task, registry=r)
        self.tokens = Counter("llm_embedder_tokens", "Tokens embedded (instruction included)", by_task, registry=r)
        self.truncated = Counter(
            "llm_embedder_truncated_inputs", "Inputs cut to the task's budget", by_task, registry=r
        )
        self.latency = Histogram(
            "llm_embedder_request_seconds", "Embedding request latency", by_task, buckets=_SECONDS_BUCKETS, registry=r
        )
        self.batch_inputs = Histogram(
            "llm_embedder_batch_inputs", "Inputs per forward pass", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "llm_embedder_batch_tokens", "Padded tokens per forward pass", buckets=_TOKEN_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "llm_embedder_batch_seconds", "Forward pass time", buckets=_SECONDS_BUCKETS, registry=r
        )
        self.queue_seconds = Histogram(
            "llm_embedder_queue_seconds",
            "Time a request waits before its first batch",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.queue_inputs = Gauge("llm_embedder_queue_inputs", "Inputs waiting for the worker", registry=r)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.http_seconds.labels(route, method).observe(seconds)

    # EngineMetrics
    def batch(self, rows: int, padded_tokens: int, seconds: float) -> None:
        self.batch_inputs.observe(rows)
        self.batch_tokens.observe(padded_tokens)
        self.batch_seconds.observe(seconds)

    def queued(self, seconds: float) -> None:
        self.queue_seconds.observe(seconds)

    def embedded(self, task: str, side: str, inputs: int, tokens: int, truncated: int, seconds: float) -> None:
        self.inputs.labels(task, side).inc(inputs)
        self.tokens.labels(task, side).inc(tokens)
        if truncated:
            self.truncated.labels(task, side).inc(truncated)
        self.latency.labels(task, side).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
