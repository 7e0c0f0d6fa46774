"""ServiceDirectory against the real Redis: routes from heartbeats, liveness, pruning."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from orchestrator import keys
from orchestrator.directory import ServiceDirectory
from protocol.control import WorkerHeartbeat
from protocol.envelope import utc_now


@pytest.fixture
async def service(redis_client: aioredis.Redis, unique: str) -> AsyncIterator[str]:
    name = f"svc-{unique}"
    yield name
    await redis_client.hdel(keys.ROUTES, f"type-{unique}", f"other-{unique}")
    await redis_client.srem(keys.ANNOUNCED_SERVICES, name)
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
