"""The sweeper: a stale running job with no worker fails; a queued job whose message was lost is republished."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from orchestrator.app import METRICS
from orchestrator.settings import SweeperSettings
from orchestrator.store import keys
from protocol import ledger
from protocol.events import ATTEMPT_SEQ_STRIDE, JobStatus, status_event
from tests.api_server import Api, serve_api
from tests.polling import eventually


@pytest.fixture
async def swept(rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[Api]:
    def settings(tenants: frozenset[str]) -> SweeperSettings:
        return SweeperSettings(
            interval_seconds=0.2,
            running_stale_seconds=1.0,
            queued_stale_seconds=1.0,
            tenants=tenants,
            lock_key=f"test:sweeper:{unique}",
        )

    async with serve_api(rabbitmq_url, redis_url, redis_client, unique, sweeper=settings) as api:
        yield api


async def _create(api: Api) -> str:
    response = await api.client.post("/jobs", json={"type": api.job_type}, headers=api.headers_a)
    assert response.status == 202, await response.text()
    return str((await response.json())["job_id"])


async def test_stale_running_job_without_workers_fails(swept: Api, redis_client: aioredis.Redis) -> None:
    api = swept
    await redis_client.delete(keys.workers(api.service))  # the announced worker is gone
    job_id = await _create(api)
    [(_, envelope)] = await api.queued_envelopes()
    await api.emit(status_event(envelope, JobStatus.RUNNING, ATTEMPT_SEQ_STRIDE + 1))

    async def failed() -> bool:
        record = await (await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)).json()
        return bool(record["status"] == "failed")

    await eventually(failed)
    record = await (await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)).json()
    assert record["error"]["error_type"] == "Stuck"
    assert "no live worker" in record["error"]["error"]
    assert await redis_client.exists(ledger.cancelled_key(api.tenant_a, job_id)) == 1
    assert await api.queue_depth() == 0  # failed, not republished


async def test_queued_job_whose_message_was_lost_is_republished(swept: Api) -> None:
    api = swept  # the announced worker is live (30 s heartbeat interval)
    job_id = await _create(api)
    [(_, lost)] = await api.queued_envelopes()  # taken off the queue: the broker "lost" it

    async def republished() -> bool:
        return await api.queue_depth() > 0

    await eventually(republished)
    [(message, envelope)] = await api.queued_envelopes()
    assert (envelope.task_id, envelope.global_task_id, envelope.attempt) == (lost.task_id, job_id, 2)
    assert envelope.payload == lost.payload
    assert message.message_id == lost.task_id
    record = await (await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)).json()
    assert (record["status"], record["attempt"]) == ("queued", 2)


async def test_queued_job_behind_a_backlog_is_left_alone(swept: Api) -> None:
    api = swept
    job_id = await _create(api)
    assert await api.queue_depth() == 1  # in the tenant's lane, which the sweeper counts with the service queue
    await asyncio.sleep(2.0)  # the sweeper runs every 0.2 s with a 1 s bound: several rounds
    record = await (await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)).json()
    assert (record["status"], record["attempt"]) == ("queued", 1)
    assert await api.queue_depth() == 1


async def test_queued_job_without_a_live_worker_waits_for_one(swept: Api, redis_client: aioredis.Redis) -> None:
    """DESIGN "Routing": a job whose service has no worker running right now waits in its queue."""
    api = swept
    await redis_client.delete(keys.workers(api.service))
    job_id = await _create(api)
    await asyncio.sleep(2.0)  # the sweeper runs every 0.2 s with a 1 s bound: several rounds
    record = await (await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)).json()
    assert (record["status"], record["attempt"]) == ("queued", 1)
    assert await redis_client.exists(ledger.cancelled_key(api.tenant_a, job_id)) == 0
    assert await api.queue_depth() == 1


async def test_one_bad_job_never_ends_a_round(swept: Api, redis_client: aioredis.Redis) -> None:
    """Jobs whose stored envelope cannot be published again (recorded by an older version, or
    damaged) are failed or skipped one by one; the sweeper still reaches the healthy job after them."""
    api = swept
    unsendable, damaged, healthy = await _create(api), await _create(api), await _create(api)
    lost = {envelope.global_task_id: envelope for _, envelope in await api.queued_envelopes()}
    assert set(lost) == {unsendable, damaged, healthy}
    stored = lost[unsendable].model_dump(mode="json")
    stored["payload"] = {"n": 2**64}  # fits in JSON, not in msgpack
    await redis_client.hset(keys.job(api.tenant_a, unsendable), "envelope", json.dumps(stored))
    await redis_client.hset(keys.job(api.tenant_a, damaged), "envelope", "{not json")

    async def healthy_republished() -> bool:
        return await api.queue_depth() > 0

    await eventually(healthy_republished)
    [(_, envelope)] = await api.queued_envelopes()
    assert (envelope.global_task_id, envelope.attempt) == (healthy, 2)

    async def record(job_id: str) -> dict[str, Any]:
        return await (await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)).json()  # type: ignore[no-any-return]

    async def unsendable_failed() -> bool:
        return (await record(unsendable))["status"] == "failed"

    await eventually(unsendable_failed)
    failed = await record(unsendable)
    assert "cannot be sent again" in failed["error"]["error"] and "64-bit" in failed["error"]["error"]
    assert failed["attempt"] == 1  # refused before a new attempt was opened
    await asyncio.sleep(0.5)  # a few more rounds: the damaged job raises in each, and is left as it was
    still = await record(damaged)
    assert (still["status"], still["attempt"]) == ("queued", 1)
    assert await api.queue_depth() == 0
    errors = api.app[METRICS].jobs_swept.labels(action="error")._value.get()
    assert errors >= 2
