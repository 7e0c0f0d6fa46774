"""GET /queues and GET /stats: what the dashboard shows of queues, workers, throughput and latency.

A tenant's key sees its own figures; the admin key every tenant's; a service token is refused.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from orchestrator.auth import Authenticator
from orchestrator.http.queue_overview import QueueOverview
from orchestrator.http.request import require_tenant_or_admin, validate_query
from orchestrator.http.schemas import StatsQuery
from orchestrator.store.job_stats import LATENCY_BOUNDS_MS, JobStats, MinuteStats, percentile

_MINUTE = "%Y-%m-%dT%H:%M:%SZ"  # as pydantic writes a UTC datetime


class OverviewRoutes:
    def __init__(self, overview: QueueOverview, stats: JobStats, authenticator: Authenticator) -> None:
        self._overview = overview
        self._stats = stats
        self._auth = authenticator

    async def queues(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant_or_admin(self._auth, request, "queues")
        report = await self._overview.report(tenant_id)
        return web.json_response(report.model_dump(mode="json"))

    async def stats(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant_or_admin(self._auth, request, "statistics")
        query = validate_query(StatsQuery, request.query)
        minutes = await self._stats.minutes(tenant_id, query.minutes)
        # Plain dicts in StatsReport's shape (the tests validate answers against it): a day is 1,440 buckets,
        # and building a model per bucket cost more than reading them from Redis.
        report = {
            "tenant_id": tenant_id,
            "minutes": query.minutes,
            "latency_bucket_bounds_ms": list(LATENCY_BOUNDS_MS),
            "buckets": [{"minute": m.at.strftime(_MINUTE), **_figures(m.counts, m.latency)} for m in minutes],
            "totals": _figures(*_summed(minutes)),
        }
        return web.json_response(report)


def _summed(minutes: list[MinuteStats]) -> tuple[dict[str, int], list[int]]:
    counts: dict[str, int] = {}
    latency = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    for minute in minutes:
        for name, value in minute.counts.items():
            counts[name] = counts.get(name, 0) + value
        latency = [a + b for a, b in zip(latency, minute.latency, strict=True)]
    return counts, latency


def _figures(counts: dict[str, int], latency: list[int]) -> dict[str, Any]:
    """StatsCounts' fields."""
    p50, p95 = percentile(latency, 0.5), percentile(latency, 0.95)
    return {
        "created": counts.get("created", 0),
        "completed": counts.get("completed", 0),
        "failed": counts.get("failed", 0),
        "timed_out": counts.get("timed_out", 0),
        "cancelled": counts.get("cancelled", 0),
        "latency_p50_ms": None if p50 is None else round(p50, 1),
        "latency_p95_ms": None if p95 is None else round(p95, 1),
    }
