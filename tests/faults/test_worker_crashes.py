"""Workers SIGKILLed at random while jobs run: nothing lost, nothing completed twice."""

from __future__ import annotations

import asyncio
import random
import uuid

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.e2e.harness import BatonSystem, TerminalCollector, new_tenants, wait_for_workers
from tests.faults.common import (
    BATCHED_WORKER_TARGET,
    Poster,
    drop_probe,
    fault_job,
    probe_counts,
    report,
    reset_fault_queues,
)

pytestmark = [pytest.mark.fault, pytest.mark.timeout(300)]

JOBS = 1000
KILLS = 5
PREFETCH = 16  # the fault worker's prefetch: the most tasks one process holds unacked


async def test_five_random_worker_kills_lose_nothing(
    rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis
) -> None:
    await reset_fault_queues(rabbitmq_url)
    run = uuid.uuid4().hex[:8]
    rng = random.Random(run)
    system = BatonSystem(rabbitmq_url, redis_url, new_tenants(1))
    try:
        base_url = await system.start_orchestrator()
        worker = system.start_worker(BATCHED_WORKER_TARGET, name="fault-worker-0")
        await wait_for_workers(base_url, ["faults"])
        tenant = system.tenants[0]
        async with aiohttp.ClientSession() as session:
            collector = await TerminalCollector.connect(session, base_url, tenant)
            poster = Poster(session, base_url, tenant)
            bodies = [fault_job(run, redis_url, rng.randint(20, 120)) for _ in range(JOBS)]
            posting = asyncio.create_task(poster.post_at_rate(bodies, rate=250))
            unfinished_before = 0
            in_flight_at_kills: list[int] = []
            for kill in range(KILLS):
                await asyncio.sleep(rng.uniform(0.8, 1.6))
                worker.popen.kill()
                worker.popen.wait()
                starts, ends = await probe_counts(redis_client, run)
                unfinished = sum(starts.values()) - sum(ends.values())
                in_flight_at_kills.append(unfinished - unfinished_before)
                unfinished_before = unfinished
                worker = system.start_worker(BATCHED_WORKER_TARGET, name=f"fault-worker-{kill + 1}")
            await posting
            assert len(poster.accepted) == JOBS, f"refused: {poster.refused[:5]}"
            missing = await collector.wait_for(set(poster.accepted), timeout=120)
            await asyncio.sleep(1.0)  # room for a late duplicate terminal event
            await collector.close()
        starts, _ = await probe_counts(redis_client, run)
        terminal_counts = {job: len(events) for job, events in collector.terminal.items()}
        double_terminal = sum(1 for n in terminal_counts.values() if n > 1)
        not_completed = [job for job, events in collector.terminal.items() if events[0][1]["event"] != "task_completed"]
        reruns = sum(starts.values()) - len(starts)
        report(
            "worker_sigkill",
            jobs=JOBS,
            kills=KILLS,
            lost=len(missing),
            double_completed=double_terminal,
            not_completed=len(not_completed),
            handler_reruns=reruns,
            handlers_in_flight_at_kills=sum(in_flight_at_kills),
            unacked_bound=KILLS * PREFETCH,
        )
        assert missing == set()
        assert double_terminal == 0
        assert not_completed == []
        # A handler runs again only for a task its worker held unacked when it died.
        assert reruns <= KILLS * PREFETCH
    finally:
        system.close()
        await system.forget_lanes()  # its tenant's lanes of the services it used
        await drop_probe(redis_client, run)
