"""Routes that need no API key: health, Prometheus metrics, the OpenAPI document, the dashboard page and its
static files (the JS client among them)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from orchestrator.errors import RegistryError
from orchestrator.http.errors import ApiError
from orchestrator.http.health import HealthChecker
from orchestrator.http.static_files import StaticFiles
from orchestrator.metrics import OrchestratorMetrics


class SystemRoutes:
    def __init__(
        self,
        health: HealthChecker,
        metrics: OrchestratorMetrics,
        openapi_document: Callable[[], dict[str, Any]],
        *,
        cache_entries: Callable[[], Awaitable[int]] | None = None,
        static_files: StaticFiles | None = None,
    ) -> None:
        self._health = health
        self._metrics = metrics
        # Built on the first GET /openapi.json, not at start: it takes 0.2-0.4 s of CPU that most
        # orchestrators (and every test's) never need.
        self._build_openapi = openapi_document
        self._openapi_document: dict[str, Any] | None = None
        self._cache_entries = cache_entries
        self._static_files = static_files if static_files is not None else StaticFiles.packaged()

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
        if self._openapi_document is None:
            self._openapi_document = self._build_openapi()
        return web.json_response(self._openapi_document)

    async def dashboard(self, request: web.Request) -> web.Response:
        page = resources.files("orchestrator").joinpath("static/dashboard.html").read_text(encoding="utf-8")
        return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = self._static_files.get(name)
        if found is None:
            raise ApiError(404, "static_file_not_found", f"no static file {name!r}")
        headers = {"ETag": found.etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if found.etag in _etags(request.headers.get("If-None-Match", "")):
            return web.Response(status=304, headers=headers)
        return web.Response(body=found.body, headers={**headers, "Content-Type": found.content_type})


def _etags(header: str) -> set[str]:
    """The entity tags of an If-None-Match header (weak ones compare as strong: the bytes are what we hash)."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}
