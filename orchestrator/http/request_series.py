"""The HTTP request metrics' series, each looked up once: prometheus_client's `labels()` checks and
sorts its arguments and takes a lock on every call (about 10 µs a request for the two series)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from orchestrator.metrics import OrchestratorMetrics


class RequestSeries:
    def __init__(self, metrics: OrchestratorMetrics) -> None:
        self._metrics = metrics
        # As many entries as prometheus_client keeps series: routes are patterns, statuses few.
        self._counts: dict[tuple[str, str, int], Counter] = {}
        self._durations: dict[str, Histogram] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request and its time, by route pattern (and method and status for the count)."""
        count = self._counts.get((route, method, status))
        if count is None:
            count = self._metrics.http_requests.labels(route=route, method=method, status=str(status))
            self._counts[(route, method, status)] = count
        duration = self._durations.get(route)
        if duration is None:
            duration = self._durations[route] = self._metrics.http_duration.labels(route=route)
        count.inc()
        duration.observe(seconds)
