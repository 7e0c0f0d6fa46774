"""Redis killed (SIGKILL) and restarted mid-run: no accepted job lost, every job terminal within 30 s.

Runs a Redis of its own on a free port (append-only, as a production registry would be); the
shared Redis is only the probe. The orchestrator with that Redis is a deployment of its own, so it
also gets a RabbitMQ node of its own: on the shared vhost it would share baton.orchestrator.events
with every other orchestrator there (a developer's, another test's), each taking a share of the
other's events and worker heartbeats.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.e2e.harness import BatonSystem, new_tenants, wait_for_workers
from tests.faults.common import (
    BATCHED_WORKER_TARGET,
    Poster,
    drop_probe,
    fault_job,
    report,
    reset_fault_queues,
    wait_until_terminal,
)
from tests.faults.private_services import PrivateRabbitMQ, PrivateRedis

pytestmark = [pytest.mark.fault, pytest.mark.timeout(300)]

JOBS = 400
RATE = 40.0


async def test_redis_killed_and_restarted_loses_no_accepted_job(redis_url: str, redis_client: aioredis.Redis) -> None:
    broker = PrivateRabbitMQ()
    await asyncio.to_thread(broker.start)
    private = PrivateRedis()
    run = uuid.uuid4().hex[:8]
    system = BatonSystem(broker.url, private.url, new_tenants(1))
    tenant = system.tenants[0]
    try:
        private.start()
        await reset_fault_queues(broker.url)
        base_url = await system.start_orchestrator()
        system.start_worker(BATCHED_WORKER_TARGET)
        await wait_for_workers(base_url, ["faults"])
        async with aiohttp.ClientSession() as session:
            poster = Poster(session, base_url, tenant)
            posting = asyncio.create_task(poster.post_at_rate([fault_job(run, redis_url, 30)] * JOBS, RATE))
            await asyncio.sleep(3)
            private.kill()
            killed_at = time.perf_counter()
            await asyncio.sleep(3)
            private.start()
            back_at = time.perf_counter()
            await posting
            statuses = await wait_until_terminal(session, base_url, tenant, list(poster.accepted), timeout=30)
            all_terminal_after = time.perf_counter() - back_at
        lost = [job for job, status in statuses.items() if status != "completed"]
        report(
            "redis_restart",
            posted=JOBS,
            accepted=len(poster.accepted),
            refused=len(poster.refused),
            refused_statuses=sorted({r[1] for r in poster.refused}),
            slowest_refusal_s=round(poster.slowest_refusal, 2),
            redis_down_s=round(back_at - killed_at, 1),
            all_terminal_within_s=round(all_terminal_after, 1),
            lost=len(lost),
        )
        assert lost == [], f"{len(lost)} accepted jobs not completed: {[statuses[j] for j in lost[:5]]}"
        assert all_terminal_after <= 30
        assert poster.slowest_refusal <= 2.5
    finally:
        system.close()
        private.cleanup()
        await asyncio.to_thread(broker.cleanup)
        await drop_probe(redis_client, run)
