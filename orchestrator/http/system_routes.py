"""Routes that need no API key: health, Prometheus metrics, the OpenAPI document, the dashboard page."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from orchestrator.errors import RegistryError
from orchestrator.http.health import HealthChecker
from orchestrator.metrics import OrchestratorMetrics


class SystemRoutes:
    def __init__(
        self,
        health: HealthChecker,
        metrics: OrchestratorMetrics,
        openapi_document: dict[str, Any],
        *,
        cache_entries: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        self._health = health
        self._metrics = metrics
        self._openapi_document = openapi_document
        self._cache_entries = cache_entries

    async def health(self, request: web.Request) -> web.Response:
        report, body = await self._health.report_json()
        return web.Response(body=body, content_type="application/json", status=200 if report.status == "ok" else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        await self._health.refresh_metrics()
        if self._cache_entries is not None:
            # One ZCOUNT; when Redis is down the gauge keeps its last value (health says Redis is down).
            with contextlib.suppress(RegistryError):
                self._metrics.cache_entries.set(await self._cache_entries())
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self._openapi_document)

    async def dashboard(self, request: web.Request) -> web.Response:
        page = resources.files("orchestrator").joinpath("static/dashboard.html").read_text(encoding="utf-8")
        return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-cache"})
