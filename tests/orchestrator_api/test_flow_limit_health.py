"""A service's flow limits, kept in Redis by its workers, on /health and /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from orchestrator.app import HEALTH
from protocol.flow_limits import LIMITED_SERVICES_KEY, leases_key, rate_key, stats_key
from tests.api_server import Api
from workers.rate_limit import RateLimit
from workers.runtime.flow_store import FlowLimits, FlowLimitStore, Verdict


@pytest.fixture
async def store(api: Api, redis_url: str, redis_client: aioredis.Redis) -> AsyncIterator[FlowLimitStore]:
    """What a worker of the test's service with `rate_limit="10/s", max_concurrency=2` keeps in Redis."""
    store = FlowLimitStore(redis_url, api.service, FlowLimits(RateLimit(10, 1), 2))
    await store.start()
    yield store
    await store.close()
    await redis_client.delete(leases_key(api.service), rate_key(api.service), stats_key(api.service))
    await redis_client.srem(LIMITED_SERVICES_KEY, api.service)


async def test_health_and_metrics_show_the_limits_running_count_and_waits(api: Api, store: FlowLimitStore) -> None:
    first = await store.acquire("first", max_wait=60, waited=0)
    second = await store.acquire("second", max_wait=60, waited=0.25)  # waited for a lease, then a rate slot
    full = await store.acquire("third", max_wait=60, waited=0)
    assert first and second and full and full.verdict is Verdict.CONCURRENCY_FULL
    await asyncio.sleep(api.app[HEALTH]._cache_seconds)

    body = await (await api.client.get("/health")).json()
    limits = body["services"][api.service]["limits"]
    assert limits["rate_limit"] == "10/s" and limits["max_concurrency"] == 2 and limits["running"] == 2
    assert limits["waits"] == {"rate": 1, "concurrency": 1}
    assert limits["wait_seconds"]["concurrency"] == 0.25
    assert limits["wait_seconds"]["rate"] == pytest.approx(second.seconds, abs=0.001)
    assert body["services"]["query"]["limits"] is None  # no worker of it runs with limits here

    text = await (await api.client.get("/metrics")).text()
    assert f'baton_flow_limit_waits_total{{limit="rate",service="{api.service}"}} 1.0' in text
    assert f'baton_flow_limit_wait_seconds_total{{limit="concurrency",service="{api.service}"}} 0.25' in text
    assert f'baton_flow_limit_running{{service="{api.service}"}} 2.0' in text


async def test_a_service_whose_limit_stats_expired_leaves_the_list(
    api: Api, store: FlowLimitStore, redis_client: aioredis.Redis
) -> None:
    await redis_client.delete(stats_key(api.service))  # as its TTL does a day after its last worker
    await asyncio.sleep(api.app[HEALTH]._cache_seconds)
    body = await (await api.client.get("/health")).json()
    assert body["services"][api.service]["limits"] is None
    assert not await redis_client.sismember(LIMITED_SERVICES_KEY, api.service)
