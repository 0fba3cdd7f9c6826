"""Prometheus metrics: requests by route template and status, upload results, and renders on request.

One registry per application, so several apps (tests) never collide on
metric names; `/metrics` renders it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mediahub_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "mediahub_http_request_duration_seconds", "HTTP request duration", ["method", "route"],
            registry=self.registry,
        )
        self.uploads = Counter(
            "mediahub_uploads_total", "Uploaded files by result (ok or the error code)", ["result"],
            registry=self.registry,
        )


    def count_renders(self, renders: Callable[[], int]) -> None:
        """`mediahub_renders_total`: what `renders` says at each scrape (the delivery service counts them)."""
        self.registry.register(_RendersCollector(renders))


class _RendersCollector(Collector):
    def __init__(self, renders: Callable[[], int]) -> None:
        self.renders = renders

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("mediahub_renders", "Renditions rendered on request by this process",
                                  value=self.renders())


class MetricsMiddleware:
    """Counts every HTTP request under its route template (`/v1/media/{media_id}`), never the raw path,
    so ids do not explode the label set."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client sees if the app dies before answering
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
