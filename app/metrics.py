"""Prometheus metrics: request counts and latency per route, jobs by status.

Each app gets its own registry so that several apps in one process (tests) do not
collide on metric names. Jobs by status are read from the database at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.db.models import JOB_STATUSES


class Metrics:
    """The service's metric objects, bound to one registry."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("lelp_http_requests_total", "HTTP requests.", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("lelp_http_request_duration_seconds", "HTTP request latency.", ["method", "route"],
                                 registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.jobs = Gauge("lelp_jobs", "Jobs by status.", ["status"], registry=self.registry)
        self.predict_rows = Counter("lelp_predict_inputs_total", "Inputs scored by predict.", registry=self.registry)
        self.predict_batches = Histogram("lelp_predict_batch_rows", "Rows per micro-batch.", registry=self.registry,
                                         buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        # cascades (issue 22): which model answered, the share deferred, the teacher processes' batches
        self.cascade_rows = Counter("lelp_cascade_rows_total", "Rows a cascade answered, by the model that answered.",
                                    ["served_by"], registry=self.registry)
        self.cascade_deferral = Gauge("lelp_cascade_deferral_ratio",
                                      "Share of cascade rows sent to the teacher since the start.",
                                      registry=self.registry)
        self.teacher_latency = Histogram("lelp_cascade_teacher_batch_seconds", "Seconds per teacher batch.",
                                         registry=self.registry,
                                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.teacher_batch_rows = Histogram("lelp_cascade_teacher_batch_rows", "Rows per teacher batch.",
                                            registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self._cascade_counts = [0, 0]  # student, teacher

    def observe_cascade(self, student_rows: int, teacher_rows: int) -> None:
        self.cascade_rows.labels("student").inc(student_rows)
        self.cascade_rows.labels("teacher").inc(teacher_rows)
        self._cascade_counts[0] += student_rows
        self._cascade_counts[1] += teacher_rows
        total = sum(self._cascade_counts)
        self.cascade_deferral.set(self._cascade_counts[1] / total if total else 0.0)

    def observe_teacher_batch(self, rows: int, seconds: float) -> None:
        """Called from the teacher's thread (prometheus-client's metrics are thread-safe)."""
        self.teacher_latency.observe(seconds)
        self.teacher_batch_rows.observe(rows)

    def render(self, job_counts: dict[str, int] | None) -> bytes:
        """The exposition text; ``job_counts`` None leaves the jobs gauge without samples."""
        if job_counts is None:
            self.jobs.clear()
        else:
            for status in JOB_STATUSES:
                self.jobs.labels(status).set(job_counts.get(status, 0))
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware (no body buffering) that times each request by its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics, route_of: Callable[[Scope], str]) -> None:
        self.app, self.metrics, self.route_of = app, metrics, route_of
        # labelled children by label values: ``labels()`` takes a lock and builds a key per call
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route, method = self.route_of(scope), scope["method"]
            counter = self._counters.get((method, route, str(status)))
            if counter is None:
                counter = self._counters[method, route, str(status)] = self.metrics.requests.labels(
                    method, route, str(status))
            timer = self._timers.get((method, route))
            if timer is None:
                timer = self._timers[method, route] = self.metrics.latency.labels(method, route)
            counter.inc()
            timer.observe(time.perf_counter() - start)
