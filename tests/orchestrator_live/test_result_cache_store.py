"""The result cache's Redis side against the real Redis: an ending job settles its in-flight marker and
entry in the same step as its status, whatever way it ends; a marker an older replica left behind heals."""

from __future__ import annotations

import redis.asyncio as aioredis

from orchestrator.models import CacheSlot, CreateStatus, JobRecord
from orchestrator.store import keys
from orchestrator.store.registry import RedisTaskRegistry
from orchestrator.store.result_cache import RedisResultCache
from protocol.events import EventType
from tests.records import event_for, make_record

SLOT = CacheSlot("llm_request", "d" * 64, ttl_seconds=60, in_flight_seconds=30)


async def created(registry: RedisTaskRegistry, tenant: str, **options: object) -> JobRecord:
    record = make_record(tenant)
    result = await registry.create(record, cache=SLOT, **options)  # type: ignore[arg-type]
    assert result.status is CreateStatus.CREATED
    return record


async def marker_holder(redis_client: aioredis.Redis, tenant: str) -> bytes | None:
    held: bytes | None = await redis_client.hget(keys.cache_in_flight(tenant, SLOT.job_type, SLOT.digest), "job_id")
    return held


async def test_identical_jobs_attach_until_the_first_completes_and_its_result_is_stored(
    registry: RedisTaskRegistry, tenant: str, redis_client: aioredis.Redis
) -> None:
    cache = RedisResultCache(redis_client)
    first = await created(registry, tenant)
    marker_ttl = await redis_client.ttl(keys.cache_in_flight(tenant, SLOT.job_type, SLOT.digest))
    assert 0 < marker_ttl <= SLOT.in_flight_seconds
    attached = await registry.create(make_record(tenant), cache=SLOT)
    assert attached.status is CreateStatus.COALESCED and attached.record.job_id == first.job_id
    assert await cache.get(tenant, SLOT.job_type, SLOT.digest) is None

    await registry.apply(event_for(first, EventType.TASK_COMPLETED, 5, result={"answer": 42}))
    entry = await cache.get(tenant, SLOT.job_type, SLOT.digest)
    assert entry is not None and entry.job_id == first.job_id and entry.result == {"answer": 42}
    assert entry.created_at == first.created_at
    assert 0 < await redis_client.ttl(keys.cache_entry(tenant, SLOT.job_type, SLOT.digest)) <= SLOT.ttl_seconds
    assert await marker_holder(redis_client, tenant) is None
    assert await cache.count() >= 1
    # A request that missed the entry before it was stored finds it in CREATE (no second run).
    late = await registry.create(make_record(tenant), cache=SLOT)
    assert late.status is CreateStatus.CACHED
    assert (late.record.job_id, late.record.status, late.record.result) == (first.job_id, "completed", {"answer": 42})
    # Another tenant's identical request finds nothing of it.
    assert await cache.get(tenant + "x", SLOT.job_type, SLOT.digest) is None
    assert await cache.clear(tenant, SLOT.job_type) == 1
    assert await cache.get(tenant, SLOT.job_type, SLOT.digest) is None


async def test_a_job_that_fails_is_cancelled_or_discarded_frees_the_marker_and_stores_nothing(
    registry: RedisTaskRegistry, tenant: str, redis_client: aioredis.Redis
) -> None:
    cache = RedisResultCache(redis_client)
    failed = await created(registry, tenant)
    await registry.apply(event_for(failed, EventType.TASK_FAILED, 5, status="failed", error="boom"))
    assert await marker_holder(redis_client, tenant) is None

    cancelled = await created(registry, tenant)
    await registry.cancel(tenant, cancelled.job_id, "changed my mind")
    assert await marker_holder(redis_client, tenant) is None

    discarded = await created(registry, tenant)
    await registry.discard(tenant, discarded.job_id)
    assert await marker_holder(redis_client, tenant) is None
    assert await cache.get(tenant, SLOT.job_type, SLOT.digest) is None


async def test_an_idempotency_key_runs_its_own_job_and_leaves_the_marker_to_its_holder(
    registry: RedisTaskRegistry, tenant: str, redis_client: aioredis.Redis
) -> None:
    holder = await created(registry, tenant)
    keyed = await created(registry, tenant, idempotency_key="k", fingerprint="f")
    assert keyed.job_id != holder.job_id
    assert await marker_holder(redis_client, tenant) == holder.job_id.encode()
    # Its result is still stored when it completes; the marker stays its holder's.
    await registry.apply(event_for(keyed, EventType.TASK_COMPLETED, 5, result="keyed"))
    entry = await RedisResultCache(redis_client).get(tenant, SLOT.job_type, SLOT.digest)
    assert entry is not None and entry.job_id == keyed.job_id
    assert await marker_holder(redis_client, tenant) == holder.job_id.encode()


async def test_a_marker_left_by_an_older_replica_heals_on_the_next_identical_request(
    registry: RedisTaskRegistry, tenant: str, redis_client: aioredis.Redis
) -> None:
    """An older replica applies the end with a script that knows no markers: status set, marker kept."""
    done = await created(registry, tenant)
    await redis_client.hset(keys.job(tenant, done.job_id), mapping={"status": "completed", "result": '"old"'})
    found = await registry.create(make_record(tenant), cache=SLOT)
    assert found.status is CreateStatus.CACHED and found.record.job_id == done.job_id
    entry = await RedisResultCache(redis_client).get(tenant, SLOT.job_type, SLOT.digest)
    assert entry is not None and entry.result == "old"
    assert await marker_holder(redis_client, tenant) is None

    await RedisResultCache(redis_client).clear(tenant, SLOT.job_type)
    failed = await created(registry, tenant)
    await redis_client.hset(keys.job(tenant, failed.job_id), "status", "failed")
    fresh = make_record(tenant)
    again = await registry.create(fresh, cache=SLOT)
    assert again.status is CreateStatus.CREATED and again.record.job_id == fresh.job_id
    assert await marker_holder(redis_client, tenant) == fresh.job_id.encode()
