"""The error and request-context (metrics) middlewares, auth and body reading, on a small app without services."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from orchestrator.auth import Authenticator
from orchestrator.errors import (
    BrokerUnavailable,
    IdempotencyConflict,
    JobNotFound,
    PublishFailed,
    RegistryUnavailable,
    UnknownJobType,
)
from orchestrator.http.errors import error_middleware
from orchestrator.http.request import MAX_BODY_BYTES, read_json, require_tenant, validate
from orchestrator.http.request_context import request_context_middleware
from orchestrator.http.schemas import JobCreateRequest
from orchestrator.metrics import OrchestratorMetrics
from plumbing.tracing import NoTracing

KEY = "key-a"
AUTH = {"Authorization": f"Bearer {KEY}"}


AUTHENTICATOR = Authenticator({KEY: "tenant-a"}, admin_key="admin", service_tokens={"svc": "query"})
METRICS = web.AppKey("test_metrics", OrchestratorMetrics)


async def echo(request: web.Request) -> web.Response:
    tenant = require_tenant(AUTHENTICATOR, request)
    body = validate(JobCreateRequest, await read_json(request))
    return web.json_response({"tenant": tenant, "type": body.type})


def raiser(exc: Exception):  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.Response:
        raise exc

    return handler


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    metrics = OrchestratorMetrics()
    app = web.Application(middlewares=[request_context_middleware(NoTracing(), metrics), error_middleware])
    app[METRICS] = metrics
    app.router.add_post("/echo", echo)
    app.router.add_get("/boom", raiser(RuntimeError("secret internals")))
    app.router.add_get("/broker", raiser(BrokerUnavailable("down")))
    app.router.add_get("/publish", raiser(PublishFailed("nacked", "refused")))
    app.router.add_get("/redis", raiser(RegistryUnavailable("down")))
    app.router.add_get("/missing", raiser(JobNotFound("j1")))
    app.router.add_get("/conflict", raiser(IdempotencyConflict("k", "j1")))
    app.router.add_get("/unknown", raiser(UnknownJobType("x", {"llm_request": "query"})))
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_valid_request(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.post("/echo", json={"type": "llm_request"}, headers=AUTH)
    assert response.status == 200
    assert await response.json() == {"tenant": "tenant-a", "type": "llm_request"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}])
async def test_missing_or_invalid_key_is_401_json(
    client: TestClient[web.Request, web.Application], headers: dict[str, str]
) -> None:
    response = await client.post("/echo", json={"type": "t"}, headers=headers)
    assert response.status == 401
    assert (await response.json())["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("token", ["admin", "svc"])
async def test_keys_without_tenant_are_403(client: TestClient[web.Request, web.Application], token: str) -> None:
    response = await client.post("/echo", json={"type": "t"}, headers={"Authorization": f"Bearer {token}"})
    assert response.status == 403


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, NaN]", b"\xff\xfe"])
async def test_malformed_json_is_400(client: TestClient[web.Request, web.Application], body: bytes) -> None:
    response = await client.post("/echo", data=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_json"


async def test_oversized_body_is_413_declared_or_chunked(client: TestClient[web.Request, web.Application]) -> None:
    big = b'{"type": "t", "payload": {"x": "' + b"a" * MAX_BODY_BYTES + b'"}}'
    response = await client.post("/echo", data=io.BytesIO(big), headers=AUTH)
    assert response.status == 413
    assert (await response.json())["error"] == "body_too_large"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 100_000

    response = await client.post("/echo", data=chunks(), headers=AUTH)
    assert response.status == 413


async def test_schema_errors_are_422_with_details(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.post("/echo", json={"type": "t", "priority": "urgent", "extra": 1}, headers=AUTH)
    assert response.status == 422
    body = await response.json()
    assert body["error"] == "validation_error"
    assert {tuple(item["loc"]) for item in body["detail"]} == {("priority",), ("extra",)}
    response = await client.post("/echo", json=[1, 2], headers=AUTH)
    assert response.status == 422


async def test_aiohttp_errors_are_json(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/nowhere")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"
    response = await client.get("/echo")
    assert response.status == 405
    assert (await response.json())["error"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


async def test_unexpected_errors_are_500_without_internals(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/boom")
    assert response.status == 500
    body = await response.json()
    assert body == {"error": "internal_error", "detail": "unexpected server error"}


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/broker", 503, "broker_unavailable"),
        ("/publish", 503, "publish_failed"),
        ("/redis", 503, "registry_unavailable"),
        ("/missing", 404, "job_not_found"),
        ("/conflict", 409, "idempotency_conflict"),
        ("/unknown", 422, "unknown_job_type"),
    ],
)
async def test_domain_errors(
    client: TestClient[web.Request, web.Application], path: str, status: int, error: str
) -> None:
    response = await client.get(path)
    assert response.status == status
    body = await response.json()
    assert body["error"] == error
    assert body["detail"]
    if status == 503:
        assert int(response.headers["Retry-After"]) > 0
    if error == "unknown_job_type":
        assert body["known_types"] == {"llm_request": "query"}


async def test_requests_are_counted_per_route(client: TestClient[web.Request, web.Application]) -> None:
    await client.post("/echo", json={"type": "t"}, headers=AUTH)
    await client.get("/nowhere")
    text = client.app[METRICS].render().decode()
    assert 'baton_http_requests_total{method="POST",route="/echo",status="200"} 1.0' in text
    assert 'baton_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    # Series looked up once are counted on: a repeat adds to the same ones, a new status makes its own.
    await client.post("/echo", json={"type": "t"}, headers=AUTH)
    await client.post("/echo", json={"type": "t"})
    text = client.app[METRICS].render().decode()
    assert 'baton_http_requests_total{method="POST",route="/echo",status="200"} 2.0' in text
    assert 'baton_http_requests_total{method="POST",route="/echo",status="401"} 1.0' in text
    assert 'baton_http_request_duration_seconds_count{route="/echo"} 3.0' in text
