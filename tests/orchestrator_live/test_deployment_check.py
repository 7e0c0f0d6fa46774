"""Two deployments on one vhost: every orchestrator notices the other's consumer on its events queue.

The apps consume an events queue of the test's own (bound like baton.orchestrator.events) and register
in replica sets of their own, so the test never meets a real deployment running on the machine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aio_pika
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from orchestrator.app import create_app
from orchestrator.broker.deployment_check import DeploymentCheck, DeploymentSettings
from orchestrator.broker.queue_inspector import QueueStats
from orchestrator.settings import OrchestratorSettings, SweeperSettings
from tests.polling import describe, poll

PERIOD = 0.2


@asynccontextmanager
async def orchestrator(
    rabbitmq_url: str, redis_url: str, deployment: DeploymentSettings, lock_key: str
) -> AsyncIterator[TestClient]:
    app = create_app(
        OrchestratorSettings(rabbitmq_url=rabbitmq_url, redis_url=redis_url, api_keys={}),
        sweeper=SweeperSettings(tenants=frozenset(), lock_key=lock_key),
        deployment=deployment,
    )
    server = TestServer(app)
    try:
        await server.start_server()
    except BaseException:
        await server.close()
        raise
    async with TestClient(server) as client:
        yield client


async def health(client: TestClient) -> dict[str, Any]:
    response = await client.get("/health")
    body: dict[str, Any] = await response.json()
    return body


async def wait_for(client: TestClient, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    return await poll(lambda: health(client), done, within=15.0, every=0.1, what=f"/health where {describe(done)}")


def shared(report: dict[str, Any]) -> bool:
    return bool(report["deployment"]["shared_events_queue"])


async def test_each_deployment_flags_the_other_on_its_events_queue(
    rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue = f"test.orchestrator.events.{unique}"
    deployment_a = DeploymentSettings(queue, f"test:replicas:{unique}:a", period_seconds=PERIOD)
    deployment_b = DeploymentSettings(queue, f"test:replicas:{unique}:b", period_seconds=PERIOD)
    locks = [f"test:sweeper:{unique}:{n}" for n in range(3)]
    try:
        with caplog.at_level(logging.ERROR, logger="orchestrator.broker.deployment_check"):
            async with AsyncExitStack() as stack:
                # Two replicas of deployment A (one replica set): the queue's two consumers are theirs.
                a1 = await stack.enter_async_context(orchestrator(rabbitmq_url, redis_url, deployment_a, locks[0]))
                a2 = await stack.enter_async_context(orchestrator(rabbitmq_url, redis_url, deployment_a, locks[1]))
                for replica in (a1, a2):
                    await wait_for(replica, lambda r: r["deployment"]["consumers"] == 2)
                await asyncio.sleep(10 * PERIOD)
                for replica in (a1, a2):
                    report = await health(replica)
                    assert report["deployment"] == {
                        "shared_events_queue": False,
                        "reason": None,
                        "consumers": 2,
                        "replicas": 2,
                    }
                assert caplog.records == []

                # Deployment B on the same vhost consumes the same queue: all three notice.
                async with orchestrator(rabbitmq_url, redis_url, deployment_b, locks[2]) as b:
                    reports = [await wait_for(client, shared) for client in (a1, a2, b)]
                    for report in reports[:2]:
                        assert report["status"] == "ok"  # a warning, not an outage: the replicas keep serving
                        assert report["deployment"]["consumers"] == 3
                        assert report["deployment"]["replicas"] == 2
                        assert f"queue {queue} has 3 consumers" in report["deployment"]["reason"]
                        assert "one deployment per vhost" in report["deployment"]["reason"]
                    assert (reports[2]["deployment"]["consumers"], reports[2]["deployment"]["replicas"]) == (3, 1)
                    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
                    assert len(errors) == 3 and all("another deployment" in e for e in errors), errors

                # B is gone: A is alone again.
                for replica in (a1, a2):
                    report = await wait_for(replica, lambda r: not shared(r))
                    assert report["deployment"]["consumers"] == 2
    finally:
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(queue)
        await redis_client.delete(deployment_a.replicas_key, deployment_b.replicas_key, *locks)


async def test_an_extra_consumer_seen_once_is_not_flagged(redis_client: aioredis.Redis, unique: str) -> None:
    """A replica that has just started consumes before it registers; it must not raise a false alarm."""
    consumers = {"n": 2}
    queue = f"test.orchestrator.events.{unique}"

    async def queue_stats(queues: Sequence[str]) -> dict[str, QueueStats | None]:
        return {queue: QueueStats(messages=0, consumers=consumers["n"])}

    settings = DeploymentSettings(queue, f"test:replicas:{unique}", period_seconds=60)
    check = DeploymentCheck(redis_client, queue_stats, settings)
    try:
        await check.check()  # this replica registers: 1 replica, 2 consumers
        assert not check.health.shared_events_queue
        consumers["n"] = 1  # the newcomer registered / went away
        await check.check()
        consumers["n"] = 2
        await check.check()
        assert not check.health.shared_events_queue
        await check.check()  # twice in a row: not a newcomer
        assert check.health.shared_events_queue
        assert (check.health.consumers, check.health.replicas) == (2, 1)
        assert await redis_client.zcard(settings.replicas_key) == 1
        assert 0 < await redis_client.pttl(settings.replicas_key) <= settings.ttl_seconds * 1000
    finally:
        await redis_client.delete(settings.replicas_key)
