"""The link between orchestrator and broker black-holed for 30 s: POST fails fast, nothing lost after."""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import urlsplit

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.e2e.harness import BatonSystem, new_tenants, wait_for_workers
from tests.faults.common import (
    WORKER_TARGET,
    Poster,
    drop_probe,
    fault_job,
    report,
    reset_fault_queues,
    wait_until_terminal,
)
from tests.services import relocated_url
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.fault, pytest.mark.timeout(300)]

BLACKHOLE_SECONDS = 30.0


async def test_blackholed_broker_link_fails_fast_and_loses_nothing(
    rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis
) -> None:
    await reset_fault_queues(rabbitmq_url)
    target = urlsplit(rabbitmq_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.start()
    proxied_url = relocated_url(rabbitmq_url, proxy.port)
    run = uuid.uuid4().hex[:8]
    system = BatonSystem(rabbitmq_url, redis_url, new_tenants(1))
    tenant = system.tenants[0]
    try:
        base_url = await system.start_orchestrator(RABBITMQ_URL=proxied_url)
        system.start_worker(WORKER_TARGET)  # straight to the broker
        await wait_for_workers(base_url, ["faults"])
        async with aiohttp.ClientSession() as session:
            before = Poster(session, base_url, tenant)
            await before.post_at_rate([fault_job(run, redis_url, 10)] * 100, rate=50)
            proxy.blackhole()
            during = Poster(session, base_url, tenant)
            t0 = time.perf_counter()
            await during.post_at_rate([fault_job(run, redis_url, 10)] * int(BLACKHOLE_SECONDS * 4), rate=4)
            await asyncio.sleep(max(0.0, BLACKHOLE_SECONDS - (time.perf_counter() - t0)))
            proxy.heal()
            healed_at = time.perf_counter()
            after = Poster(session, base_url, tenant)
            deadline = time.monotonic() + 30
            while len(after.accepted) < 100 and time.monotonic() < deadline:
                await after.post(fault_job(run, redis_url, 10))
            accepted_again_after = min(after.accepted.values(), default=float("nan")) - healed_at
            accepted = [*before.accepted, *during.accepted, *after.accepted]
            statuses = await wait_until_terminal(session, base_url, tenant, accepted, timeout=60)
        lost = [job for job, status in statuses.items() if status != "completed"]
        slowest_during = max((r[2] for r in during.refused), default=0.0)
        report(
            "broker_link_blackhole",
            blackhole_s=BLACKHOLE_SECONDS,
            posted_during=len(during.accepted) + len(during.refused),
            refused_during=len(during.refused),
            accepted_during=len(during.accepted),
            slowest_post_during_s=round(slowest_during, 2),
            accepted_again_after_heal_s=round(accepted_again_after, 2),
            accepted_total=len(accepted),
            lost=len(lost),
        )
        assert lost == []
        assert slowest_during <= 2.0
        assert len(after.accepted) == 100
    finally:
        system.close()
        await system.forget_lanes()  # its tenant's lanes of the services it used
        await proxy.close()
        await drop_probe(redis_client, run)
