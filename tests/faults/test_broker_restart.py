"""RabbitMQ killed (SIGKILL) and restarted mid-run: no accepted job lost, clients back within 5 s.

Runs a RabbitMQ node of its own on a free port; the shared broker is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

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
from tests.faults.private_services import PrivateRabbitMQ
from tests.polling import NotReached, eventually

pytestmark = [pytest.mark.fault, pytest.mark.timeout(420)]

RATE = 40.0
RECOVERY_WINDOW_SECONDS = 20.0


async def keep_posting(poster: Poster, body: dict[str, Any], rate: float, stop: asyncio.Event) -> None:
    """POSTs `rate` jobs a second, each on its own, until told to stop."""
    tasks = []
    while not stop.is_set():
        tasks.append(asyncio.create_task(poster.post(body)))
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*tasks)


async def test_rabbitmq_killed_and_restarted_loses_no_accepted_job(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    broker = PrivateRabbitMQ()
    await asyncio.to_thread(broker.start)
    run = uuid.uuid4().hex[:8]
    system = BatonSystem(broker.url, redis_url, new_tenants(1))
    tenant = system.tenants[0]
    try:
        await reset_fault_queues(broker.url)
        base_url = await system.start_orchestrator()
        system.start_worker(WORKER_TARGET)
        await wait_for_workers(base_url, ["faults"])
        async with aiohttp.ClientSession() as session:
            poster = Poster(session, base_url, tenant)
            stop = asyncio.Event()
            posting = asyncio.create_task(keep_posting(poster, fault_job(run, redis_url, 30), RATE, stop))
            await asyncio.sleep(3)
            await asyncio.to_thread(broker.kill)
            killed_at = time.perf_counter()
            await asyncio.sleep(2)
            await asyncio.to_thread(broker.start)
            back_at = time.perf_counter()
            with contextlib.suppress(NotReached):  # how long it took is the figure reported below
                await eventually(
                    lambda: any(t >= back_at for t in poster.accepted.values()),
                    within=RECOVERY_WINDOW_SECONDS,
                    every=0.1,
                )
            await asyncio.sleep(2)  # a little steady traffic after recovery
            stop.set()
            await posting
            first_accept_after = min((t for t in poster.accepted.values() if t >= back_at), default=None)
            statuses = await wait_until_terminal(session, base_url, tenant, list(poster.accepted), timeout=90)
        lost = [job for job, status in statuses.items() if status != "completed"]
        refused_during = [r for r in poster.refused if killed_at <= r[0]]
        reconnect = None if first_accept_after is None else first_accept_after - back_at
        report(
            "rabbitmq_restart",
            posted=len(poster.accepted) + len(poster.refused),
            accepted=len(poster.accepted),
            refused=len(poster.refused),
            refused_statuses=sorted({r[1] for r in poster.refused}),
            slowest_refusal_s=round(poster.slowest_refusal, 2),
            broker_down_s=round(back_at - killed_at, 1),
            post_accepted_again_after_s=None if reconnect is None else round(reconnect, 2),
            lost=len(lost),
        )
        assert lost == [], f"{len(lost)} accepted jobs not completed: {[statuses[j] for j in lost[:5]]}"
        assert refused_during, "the outage was not noticed"
        assert reconnect is not None and reconnect <= 5.0
        assert poster.slowest_refusal <= 2.5
    finally:
        system.close()
        await system.forget_lanes()  # listed in the shared Redis, held by the private broker
        await asyncio.to_thread(broker.cleanup)
        await drop_probe(redis_client, run)
