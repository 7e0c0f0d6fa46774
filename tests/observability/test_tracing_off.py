"""Tracing off (the default): nothing of OpenTelemetry is imported, and no message carries a traceparent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel

from plumbing.tracing import TRACEPARENT_HEADER, NoTracing, TracingUnavailable, build_tracing
from tests.api_server import serve_api
from tests.workers.helpers import Tap, envelope, publish_task, running
from workers import TaskContext, Worker

ROOT = Path(__file__).resolve().parents[2]

# Builds both services as their entrypoints do with BATON_TRACING unset, with Baton's OpenTelemetry module
# and the SDK's tracing made unimportable, then says what of tracing got loaded. (redis-py imports the
# OpenTelemetry API and metrics SDK for its own observability when they are installed: not ours to judge.)
BUILD_BOTH = """
import sys
sys.modules["plumbing.otel"] = None
sys.modules["opentelemetry.sdk.trace"] = None
from orchestrator.app import create_app
from orchestrator.settings import OrchestratorSettings
from plumbing.tracing import build_tracing
from workers.config import WorkerSettings
from workers.runtime import WorkerRuntime
from workers.services.query import worker
import orchestrator.__main__, workers.__main__

settings = OrchestratorSettings.from_env({})
create_app(settings, tracing=build_tracing(settings.tracing, "baton-orchestrator"))
worker_settings = WorkerSettings.from_env({})
WorkerRuntime(worker, worker_settings, tracing=build_tracing(worker_settings.tracing, "baton-worker-query"))
if "opentelemetry.trace" in sys.modules:
    from opentelemetry import trace
    print(type(trace.get_tracer_provider()).__name__)
else:
    print("no tracing API loaded")
"""


def test_with_tracing_off_nothing_of_opentelemetry_tracing_is_loaded_or_active() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BUILD_BOTH], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    # No provider was ever set: the API's placeholder, which makes no spans.
    assert done.stdout.strip() in {"ProxyTracerProvider", "no tracing API loaded"}


def test_off_builds_the_tracing_that_does_nothing() -> None:
    tracing = build_tracing("off", "baton-test")
    assert isinstance(tracing, NoTracing) and not tracing.enabled
    headers: dict[str, Any] = {}
    with tracing.span("anything", kind="producer", attributes={"a": 1}, parent={"traceparent": "x"}) as span:
        span.set_attributes({"b": 2})
        tracing.inject(headers)
    assert headers == {}


def test_a_missing_exporter_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="no span exporter for tracing mode 'zipkin'"):
        build_tracing("zipkin", "baton-test")  # type: ignore[arg-type]


def test_the_error_when_opentelemetry_is_missing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "plumbing.otel", None)  # importing it now raises ImportError
    with pytest.raises(TracingUnavailable, match=r"BATON_TRACING=otlp needs the OpenTelemetry packages: pip install"):
        build_tracing("otlp", "baton-test")


async def test_with_tracing_off_the_task_message_carries_no_traceparent(
    rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str
) -> None:
    async with serve_api(rabbitmq_url, redis_url, redis_client, unique) as api:
        response = await api.client.post("/jobs", json={"type": api.job_type, "payload": {}}, headers=api.headers_a)
        assert response.status == 202, await response.text()
        [(message, task)] = await api.queued_envelopes()
    assert task.tenant_id == api.tenant_a
    assert message.headers is not None and TRACEPARENT_HEADER not in message.headers


async def test_with_tracing_off_a_worker_sends_its_events_without_headers(
    rabbitmq_url: str, redis_url: str, channel: AbstractChannel, service: str
) -> None:
    worker = Worker(service)

    @worker.handler("echo")
    async def echo(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return payload

    task = envelope(service, "echo", {"a": 1})
    tap = await Tap.open(channel, f"{task.tenant_id}.{service}.*")  # its task events, no heartbeats
    async with running(worker, rabbitmq_url, redis_url=redis_url):
        await publish_task(channel, task)
        messages = [await tap.next_message() for _ in range(2)]  # running, completed
    assert [m.routing_key for m in messages] == [
        f"{task.tenant_id}.{service}.task_status_update",
        f"{task.tenant_id}.{service}.task_completed",
    ]
    assert all(not m.headers for m in messages)
