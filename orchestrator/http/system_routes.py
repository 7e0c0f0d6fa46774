"""Routes that need no API key: health, Prometheus metrics, the OpenAPI document, the dashboard page."""

from __future__ import annotations

from importlib import resources

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from orchestrator.http.openapi import build_openapi
from orchestrator.http.state import HEALTH, METRICS

OPENAPI = web.AppKey("baton_openapi", dict)


async def health(request: web.Request) -> web.Response:
    report, body = await request.app[HEALTH].report_json()
    return web.Response(body=body, content_type="application/json", status=200 if report.status == "ok" else 503)


async def metrics(request: web.Request) -> web.Response:
    await request.app[HEALTH].refresh_metrics()
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


async def dashboard(request: web.Request) -> web.Response:
    page = resources.files("orchestrator").joinpath("static/dashboard.html").read_text(encoding="utf-8")
    return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-cache"})


def add_system_routes(app: web.Application) -> None:
    app[OPENAPI] = build_openapi()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/", dashboard)
