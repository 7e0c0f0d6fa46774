"""End-to-end throughput and latency of the real processes: POST /jobs -> worker -> WebSocket terminal event.

    .venv/bin/python -m tests.bench.e2e [--jobs 2000] [--rate 100] [--latency-jobs 1000]

Starts one orchestrator and one worker process (`python -m workers tests.bench.noop_worker:worker`)
on the local RabbitMQ and Redis (RABBITMQ_URL / REDIS_URL), prints a table, stops them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import aiohttp

from tests.e2e.harness import BatonSystem, Tenant, TerminalCollector, new_tenants, percentile, wait_for_workers
from tests.services import LOCAL_RABBITMQ_URL, LOCAL_REDIS_URL


async def post(session: aiohttp.ClientSession, base_url: str, tenant: Tenant, i: int) -> tuple[str, float]:
    t0 = time.perf_counter()
    body: dict[str, Any] = {"type": "bench_noop", "payload": {"n": i}}
    async with session.post(f"{base_url}/jobs", json=body, headers=tenant.headers) as response:
        if response.status != 202:
            raise RuntimeError(f"POST /jobs answered {response.status}: {await response.text()}")
        return (await response.json())["job_id"], t0


async def full_speed(session: aiohttp.ClientSession, base_url: str, tenant: Tenant, jobs: int) -> dict[str, float]:
    collector = await TerminalCollector.connect(session, base_url, tenant)
    limit = asyncio.Semaphore(64)

    async def one(i: int) -> tuple[str, float]:
        async with limit:
            return await post(session, base_url, tenant, i)

    t0 = time.perf_counter()
    started = dict(await asyncio.gather(*(one(i) for i in range(jobs))))
    posted = time.perf_counter() - t0
    missing = await collector.wait_for(set(started), timeout=300)
    done = max(collector.terminal[j][0][0] for j in started if j in collector.terminal) - t0
    await collector.close()
    return {"jobs": jobs, "lost": len(missing), "post_rate": jobs / posted, "jobs_per_s": jobs / done}


async def fixed_rate(
    session: aiohttp.ClientSession, base_url: str, tenant: Tenant, jobs: int, rate: float
) -> dict[str, float]:
    collector = await TerminalCollector.connect(session, base_url, tenant)
    tasks = []
    t0 = time.perf_counter()
    for i in range(jobs):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(post(session, base_url, tenant, i)))
    started = dict(await asyncio.gather(*tasks))
    missing = await collector.wait_for(set(started), timeout=120)
    latencies = [collector.terminal[j][0][0] - t for j, t in started.items() if j in collector.terminal]
    await collector.close()
    return {
        "jobs": jobs,
        "lost": len(missing),
        "rate": rate,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--latency-jobs", type=int, default=1000)
    args = parser.parse_args()
    system = BatonSystem(
        os.environ.get("RABBITMQ_URL") or LOCAL_RABBITMQ_URL,
        os.environ.get("REDIS_URL") or LOCAL_REDIS_URL,
        new_tenants(1),
    )
    try:
        base_url = await system.start_orchestrator()
        system.start_worker("tests.bench.noop_worker:worker")
        await wait_for_workers(base_url, ["bench-noop"])
        tenant = system.tenants[0]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128)) as session:
            await full_speed(session, base_url, tenant, 200)  # warm-up
            speed = await full_speed(session, base_url, tenant, args.jobs)
            latency = await fixed_rate(session, base_url, tenant, args.latency_jobs, args.rate)
    finally:
        system.close()
    print(f"{'measure':<44}{'value':>12}")
    print(f"{'full speed: jobs':<44}{speed['jobs']:>12.0f}")
    print(f"{'full speed: lost':<44}{speed['lost']:>12.0f}")
    print(f"{'full speed: POST rate (jobs/s)':<44}{speed['post_rate']:>12.0f}")
    print(f"{'full speed: POST->WS terminal (jobs/s)':<44}{speed['jobs_per_s']:>12.0f}")
    print(f"{'offered rate (jobs/s)':<44}{latency['rate']:>12.0f}")
    print(f"{'  jobs / lost':<44}{latency['jobs']:>7.0f} / {latency['lost']:.0f}")
    print(f"{'  POST->WS terminal p50 (ms)':<44}{latency['p50_ms']:>12.1f}")
    print(f"{'  POST->WS terminal p99 (ms)':<44}{latency['p99_ms']:>12.1f}")
    print(f"{'  POST->WS terminal max (ms)':<44}{latency['max_ms']:>12.1f}")


if __name__ == "__main__":
    asyncio.run(main())
