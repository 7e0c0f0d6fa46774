"""A real worker whose handler calls a fake upstream through ctx.http: a 429 is waited out instead of
failing the task, and with the upstream down its breaker opens and shows on the orchestrator's /health
and /metrics (the worker's heartbeat and breaker report are taken off the events exchange and recorded
by this test's orchestrator, whichever replica on the shared queue consumes them first)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel

from orchestrator.app import LIVE
from orchestrator.store import keys
from protocol.codec import CodecSet
from protocol.control import BREAKERS_KIND, CircuitBreakerReport, WorkerHeartbeat
from protocol.events import EventType
from protocol.topology import declare_exchanges, system_routing_key
from tests.api_server import Api
from tests.workers.helpers import Tap, envelope, publish_task, running
from tests.workers.upstream import Answer, serve_upstream
from workers import RetryPolicy, TaskContext, Worker

CODECS = CodecSet()
DOWN = "http://127.0.0.1:9"  # the discard port: nothing listens


@pytest.fixture
async def channel(api: Api, redis_client: aioredis.Redis) -> AsyncIterator[AbstractChannel]:
    channel = await api.amqp.channel()
    await declare_exchanges(channel)
    yield channel
    await channel.close()
    await redis_client.delete(keys.breakers(api.service))


def calling_worker(api: Api) -> Worker:
    worker = Worker(api.service, retry=RetryPolicy(max_retries=0))

    @worker.handler(api.job_type)
    async def call(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        response = await ctx.http.get(payload["url"])
        return response.raise_for_status().json()

    return worker


async def test_a_429_is_waited_out_and_the_task_completes(
    api: Api, channel: AbstractChannel, rabbitmq_url: str
) -> None:
    tap = await Tap.open(channel, f"*.{api.service}.*")
    async with (
        serve_upstream(Answer(429, {"Retry-After": "1"}), Answer(200, body={"answer": 42})) as upstream,
        running(calling_worker(api), rabbitmq_url, http_retries=2),
    ):
        task = envelope(api.service, api.job_type, {"url": f"{upstream.url}/v1"}, tenant_id=api.tenant_a)
        await publish_task(channel, task)
        events = await tap.task_events(task.task_id, within=15)
    assert events[-1].event is EventType.TASK_COMPLETED and events[-1].data["result"] == {"answer": 42}
    assert len(upstream.arrivals) == 2 and upstream.arrivals[1] - upstream.arrivals[0] >= 1.0


async def test_with_the_upstream_down_the_open_breaker_shows_on_health_and_metrics(
    api: Api, channel: AbstractChannel, rabbitmq_url: str
) -> None:
    tap = await Tap.open(channel, f"_system.{api.service}.*")
    events = await Tap.open(channel, f"*.{api.service}.*")
    async with running(
        calling_worker(api),
        rabbitmq_url,
        http_retries=0,
        breaker_failure_threshold=2,
        breaker_cooldown_seconds=300,
        heartbeat_seconds=0.3,
    ):
        for _ in range(3):
            task = envelope(api.service, api.job_type, {"url": f"{DOWN}/v1"}, tenant_id=api.tenant_a)
            await publish_task(channel, task)
            failed = (await events.task_events(task.task_id, within=15))[-1]
            assert failed.event is EventType.TASK_FAILED
        assert failed.data["error_type"] == "CircuitOpenError" and DOWN in failed.data["error"]

        heartbeat, report = None, None
        while heartbeat is None or report is None or report.breakers[0].state != "open":
            message = await tap.next_message(within=5)
            if (message.routing_key or "").endswith("." + BREAKERS_KIND):
                assert message.routing_key == system_routing_key(api.service, BREAKERS_KIND)
                report = CODECS.decode(CircuitBreakerReport, message.body, message.content_type)
            else:
                heartbeat = CODECS.decode(WorkerHeartbeat, message.body, message.content_type)
        directory = api.app[LIVE].directory
        await directory.record_heartbeat(heartbeat)
        assert await directory.record_breakers(report)

        health = await (await api.client.get("/health")).json()
        breakers = health["services"][api.service]["circuit_breakers"]
        assert [(b["target"], b["state"], b["failures"], b["workers"]) for b in breakers] == [(DOWN, "open", 2, 1)]
        assert breakers[0]["opened_at"] is not None
        metrics = await (await api.client.get("/metrics")).text()
        labels = f'service="{api.service}",target="{DOWN}"'
        assert f"baton_circuit_breaker_state{{{labels}}} 2.0" in metrics
        assert f"baton_circuit_breaker_openings{{{labels}}} 1.0" in metrics
