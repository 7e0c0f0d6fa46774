"""ServiceDirectory against the real Redis: routes from heartbeats, liveness, pruning."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from orchestrator.store import keys
from orchestrator.store.directory import DEFAULT_SERVICE_TTL_SECONDS, MAX_HEARTBEAT_INTERVAL_SECONDS, ServiceDirectory
from protocol.control import WorkerHeartbeat
from protocol.envelope import utc_now


@pytest.fixture
async def service(redis_client: aioredis.Redis, unique: str) -> AsyncIterator[str]:
    name = f"svc-{unique}"
    yield name
    await redis_client.hdel(keys.ROUTES, f"type-{unique}", f"other-{unique}")
    await redis_client.srem(keys.ANNOUNCED_SERVICES, name)
    await redis_client.zrem(keys.SERVICES_SEEN, name)
    await redis_client.delete(keys.workers(name))


def heartbeat(
    service: str, worker_id: str, job_types: list[str], *, interval: float = 5, stopping: bool = False
) -> WorkerHeartbeat:
    return WorkerHeartbeat(
        worker_id=worker_id,
        service=service,
        job_types=job_types,
        concurrency=4,
        in_flight=0,
        hostname="test",
        pid=1,
        started_at=utc_now(),
        interval_seconds=interval,
        stopping=stopping,
    )


async def test_builtin_types_are_known_before_any_heartbeat(redis_client: aioredis.Redis) -> None:
    directory = ServiceDirectory(redis_client)
    assert await directory.service_for("llm_request") == "query"
    assert {"query", "embedding", "ingestion", "agent"} <= set(await directory.services())
    assert (await directory.known_job_types())["document_processing"] == "ingestion"


async def test_announced_types_route_on_every_replica(redis_client: aioredis.Redis, service: str, unique: str) -> None:
    here, there = ServiceDirectory(redis_client), ServiceDirectory(redis_client, cache_seconds=60)
    assert await there.service_for(f"type-{unique}") is None  # fills the other replica's cache
    await here.record_heartbeat(heartbeat(service, "w1", [f"type-{unique}", "llm_request"]))
    assert await here.service_for(f"type-{unique}") == service
    assert await there.service_for(f"type-{unique}") == service  # a cache miss is re-read
    assert await here.service_for("llm_request") == "query"  # built-ins cannot be taken over
    assert service in await here.services()
    assert (await here.known_job_types())[f"type-{unique}"] == service


async def test_live_workers_excludes_stopping_and_stale(redis_client: aioredis.Redis, service: str) -> None:
    directory = ServiceDirectory(redis_client, heartbeat_grace_intervals=3)
    await directory.record_heartbeat(heartbeat(service, "steady", [], interval=30))
    await directory.record_heartbeat(heartbeat(service, "fading", [], interval=0.05))
    await directory.record_heartbeat(heartbeat(service, "leaving", [], interval=30))
    assert [hb.worker_id for hb in await directory.live_workers(service)] == ["fading", "leaving", "steady"]

    await directory.record_heartbeat(heartbeat(service, "leaving", [], interval=30, stopping=True))
    await asyncio.sleep(0.3)
    assert [hb.worker_id for hb in await directory.live_workers(service)] == ["steady"]
    assert await redis_client.hkeys(keys.workers(service)) == [b"steady"]  # the stale one is pruned


def days_ago(days: float) -> float:
    return time.time() - days * 24 * 3600


async def test_a_service_unheard_of_for_its_ttl_is_forgotten_with_its_routes(
    redis_client: aioredis.Redis, service: str, unique: str
) -> None:
    """Forged heartbeats of made-up services (anything that publishes on baton.events can send one)
    must not leave services and job types behind forever."""
    fresh = f"{service}-fresh"
    try:
        then = ServiceDirectory(redis_client, clock=lambda: days_ago(DEFAULT_SERVICE_TTL_SECONDS / 86400 + 1))
        assert await then.record_heartbeat(heartbeat(service, "w1", [f"type-{unique}"]))
        now = ServiceDirectory(redis_client, expire_interval_seconds=0)
        assert await now.record_heartbeat(heartbeat(fresh, "w2", [f"other-{unique}"]))

        services = await now.services()  # looks for services to forget first
        assert service not in services and fresh in services
        assert await now.service_for(f"type-{unique}") is None
        assert await now.service_for(f"other-{unique}") == fresh
        assert not await redis_client.exists(keys.workers(service))
        assert await now.service_for("llm_request") == "query"  # built-ins are never forgotten
        assert {"query", "embedding", "ingestion", "agent"} <= set(services)
    finally:
        await redis_client.hdel(keys.ROUTES, f"other-{unique}")
        await redis_client.srem(keys.ANNOUNCED_SERVICES, fresh)
        await redis_client.zrem(keys.SERVICES_SEEN, fresh)
        await redis_client.delete(keys.workers(fresh))


async def test_announcements_are_bounded(
    redis_client: aioredis.Redis, service: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    full = ServiceDirectory(redis_client, max_services=0)  # as full as can be, whatever is in Redis
    with caplog.at_level(logging.WARNING, logger="orchestrator.store.directory"):
        for i in range(50):
            assert not await full.record_heartbeat(heartbeat(f"{service}-{i}", "w1", [f"type-{unique}"]))
    assert len(caplog.records) == 1  # a flood of refused heartbeats is not a flood of warnings
    assert not await full.record_heartbeat(heartbeat(service, "w1", [f"type-{unique}"]))
    assert service not in await full.services()
    assert await full.service_for(f"type-{unique}") is None
    assert not await redis_client.exists(keys.workers(service))
    # A built-in service is always taken.
    assert await full.record_heartbeat(heartbeat("query", f"gone-{unique}", [], stopping=True))

    open_ = ServiceDirectory(redis_client, max_workers=2)
    assert await open_.record_heartbeat(heartbeat(service, "w1", [f"type-{unique}"]))
    assert await open_.record_heartbeat(heartbeat(service, "w2", []))
    assert not await open_.record_heartbeat(heartbeat(service, "w3", []))
    assert await open_.record_heartbeat(heartbeat(service, "w1", []))  # a known worker keeps beating
    assert [hb.worker_id for hb in await open_.live_workers(service)] == ["w1", "w2"]

    no_new_types = ServiceDirectory(redis_client, max_job_types=0)
    assert await no_new_types.record_heartbeat(heartbeat(service, "w1", [f"type-{unique}", f"other-{unique}"]))
    assert await no_new_types.service_for(f"type-{unique}") == service  # already routed: kept
    assert await no_new_types.service_for(f"other-{unique}") is None


async def test_a_claimed_heartbeat_interval_is_capped(redis_client: aioredis.Redis, service: str) -> None:
    """A heartbeat claiming a huge interval must not keep its worker live for days."""
    then = ServiceDirectory(redis_client, clock=lambda: time.time() - 4 * MAX_HEARTBEAT_INTERVAL_SECONDS)
    assert await then.record_heartbeat(heartbeat(service, "sleepy", [], interval=1e9))
    assert await ServiceDirectory(redis_client).live_workers(service) == []


async def test_cache_defaults_follow_the_announcing_service(
    redis_client: aioredis.Redis, service: str, unique: str
) -> None:
    here, there = ServiceDirectory(redis_client), ServiceDirectory(redis_client, cache_seconds=0)
    assert await here.cache_ttl_for("embedding_request") == 3600  # built-in: a pure function of the payload
    assert await here.cache_ttl_for("llm_request") is None
    typed = heartbeat(service, "w1", [f"type-{unique}", f"other-{unique}", "llm_request"])
    try:
        await here.record_heartbeat(typed.model_copy(update={"cache_ttls": {f"type-{unique}": 90, "llm_request": 5}}))
        assert await there.cache_ttl_for(f"type-{unique}") == 90
        assert await there.cache_ttl_for(f"other-{unique}") is None
        assert await there.cache_ttl_for("llm_request") is None  # built-ins keep their own default
        # The default goes with the route: the service that announced the type last serves it, with its TTL.
        taker = heartbeat(f"{service}-x", "w2", [f"type-{unique}"])
        await here.record_heartbeat(taker.model_copy(update={"cache_ttls": {f"type-{unique}": 5}}))
        assert await there.service_for(f"type-{unique}") == f"{service}-x"
        assert await there.cache_ttl_for(f"type-{unique}") == 5
        # A redeployed worker without the declaration turns the default off.
        await here.record_heartbeat(typed)
        assert await here.cache_ttl_for(f"type-{unique}") is None
    finally:
        await redis_client.hdel(keys.CACHE_DEFAULTS, f"type-{unique}", f"other-{unique}")
        await redis_client.srem(keys.ANNOUNCED_SERVICES, f"{service}-x")
        await redis_client.zrem(keys.SERVICES_SEEN, f"{service}-x")
        await redis_client.delete(keys.workers(f"{service}-x"))


class CountingRedis(aioredis.Redis):
    """The real client, counting the pipelines made on it (the directory reads its routes in one)."""

    pipelines = 0

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        self.pipelines += 1
        return super().pipeline(transaction, shard_hint)


async def test_lookups_that_find_the_routes_stale_together_share_one_read(
    redis_url: str, redis_client: aioredis.Redis, service: str, unique: str
) -> None:
    await ServiceDirectory(redis_client).record_heartbeat(heartbeat(service, "w1", [f"type-{unique}"]))
    counting = CountingRedis.from_pool(aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=8))
    try:
        directory = ServiceDirectory(counting, cache_seconds=0.2, expire_interval_seconds=3600)
        await directory.services()  # expiry done: only the routes' reads are left to count
        await asyncio.sleep(0.3)  # the copy is stale
        counting.pipelines = 0
        found = await asyncio.gather(
            *(directory.service_for(f"type-{unique}") for _ in range(40)),
            *(directory.cache_ttl_for(f"type-{unique}") for _ in range(40)),
        )
        assert found == [service] * 40 + [None] * 40
        assert counting.pipelines == 1
        # A heartbeat that changes the routes here is seen by the next lookup, not answered from the copy.
        await directory.record_heartbeat(heartbeat(f"{service}-b", "w2", [f"other-{unique}"]))
        assert (await directory.known_job_types())[f"other-{unique}"] == f"{service}-b"
    finally:
        await counting.aclose()
        await redis_client.srem(keys.ANNOUNCED_SERVICES, f"{service}-b")
        await redis_client.zrem(keys.SERVICES_SEEN, f"{service}-b")
        await redis_client.delete(keys.workers(f"{service}-b"))
