"""How Baton's cost grows: a queued backlog (1k vs a large one) and many WebSocket clients on one orchestrator."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from tests.bench.baton_runs import MAX_BATCH, BatonBench
from tests.bench.common import redis_used_memory, rss_kib, wait_until
from tests.bench.ws_client import JobWatcher, WebSocketRefused
from tests.e2e.harness import Tenant

CONNECT_CONCURRENCY = 100


async def backlog(
    bench: BatonBench, redis: aioredis.Redis, tenant: Tenant, jobs: int, drain_timeout: float
) -> dict[str, Any]:
    """Creates `jobs` with no worker running, then starts one and times the drain (registry counts).

    Redis bytes per job is measured twice: the tenant's own keys (MEMORY USAGE, exact) and the
    server's used_memory delta (includes allocator effects and whatever other Redis users did).
    """
    await bench.stop_worker()
    memory_before = await redis_used_memory(redis)
    t0 = time.perf_counter()
    await bench.create(tenant, jobs, batch=MAX_BATCH, concurrency=2)
    create_s = time.perf_counter() - t0
    memory_after = await redis_used_memory(redis)
    own_bytes = await keys_memory(redis, f"orchestrator:*{tenant.tenant_id}*")
    queued = await bench.registry_count(tenant, "queued")
    t1 = time.perf_counter()
    starting = asyncio.create_task(bench.start_worker())
    first, last, completed = await drain(bench, tenant, jobs, drain_timeout)
    await starting
    return {
        "jobs": jobs,
        "queued_before_drain": queued,
        "create_rate": jobs / create_s,
        "create_ms_per_job": create_s * 1000 / jobs,
        "redis_bytes_per_job": own_bytes / jobs,
        "redis_used_memory_delta_per_job": (memory_after - memory_before) / jobs,
        "worker_start_to_first_s": first - t1,
        "drain_s": last - first,
        "drain_ms_per_job": (last - first) * 1000 / max(1, completed - 1),
        "drain_rate": (completed - 1) / (last - first) if last > first else float("nan"),
        "registry_completed": completed,
        "registry_ok": completed == jobs,
    }


async def drain(bench: BatonBench, tenant: Tenant, jobs: int, timeout: float) -> tuple[float, float, int]:
    """Polls the registry every 100 ms: when the first job completed, when the last did, how many did."""
    deadline = time.monotonic() + timeout
    first: float | None = None
    completed = 0
    while completed < jobs and time.monotonic() < deadline:
        completed = await bench.registry_count(tenant)
        now = time.perf_counter()
        if completed and first is None:
            first = now
        await asyncio.sleep(0.1)
    last = time.perf_counter()
    return (first if first is not None else last), last, completed


async def keys_memory(redis: aioredis.Redis, pattern: str) -> int:
    """The summed MEMORY USAGE of every key matching `pattern`."""
    total = 0
    batch: list[Any] = []

    async def flush() -> int:
        async with redis.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.memory_usage(key, samples=0)
            sizes = await pipe.execute()
        batch.clear()
        return sum(size or 0 for size in sizes)

    async for key in redis.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            total += await flush()
    if batch:
        total += await flush()
    return total


async def websocket_fanout(
    bench: BatonBench, tenant: Tenant, steps: list[int], step_timeout: float, delivery_timeout: float
) -> dict[str, Any]:
    """Ramps WebSocket clients (each subscribed to its own queued job) through `steps`, then runs the jobs.

    Reports how many clients one orchestrator held, its RSS per connection, and whether every client
    got its job's terminal event once a worker ran them.
    """
    await bench.stop_worker()
    total = max(steps)
    job_ids = list(await bench.create(tenant, total, batch=MAX_BATCH, concurrency=2))
    pid = bench.orchestrator_pid
    rss_before = rss_kib(pid)
    watchers: dict[str, JobWatcher] = {}  # job id -> its client
    ramp: list[dict[str, Any]] = []
    refused = 0
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(job_id: str) -> tuple[str, JobWatcher | None]:
            async with gate:
                try:
                    return job_id, await JobWatcher.connect(session, bench.base_url, tenant.headers, [job_id])
                except WebSocketRefused:
                    return job_id, None

        try:
            for step in steps:
                t0 = time.perf_counter()
                wanted = job_ids[len(watchers) + refused : step]
                try:
                    opened = await asyncio.wait_for(asyncio.gather(*(one(j) for j in wanted)), step_timeout)
                except TimeoutError:
                    ramp.append({"clients": len(watchers), "timed_out": True})
                    break
                watchers.update((job_id, w) for job_id, w in opened if w is not None)
                refused += sum(1 for _, w in opened if w is None)
                rss = rss_kib(pid)
                ramp.append(
                    {
                        "clients": len(watchers),
                        "connect_s": time.perf_counter() - t0,
                        "rss_mib": rss / 1024,
                        "rss_kib_per_client": (rss - rss_before) / max(1, len(watchers)),
                    }
                )
                if refused:
                    break  # the orchestrator is at its limit: holding more is not what it does
            held = len(watchers)
            t0 = time.perf_counter()
            await bench.start_worker()
            # Polled once a second: the exact delivery time comes from the clients' own clocks below.
            await wait_until(
                lambda: all(job in w.terminal for job, w in watchers.items()), delivery_timeout, asyncio.Event()
            )
            arrivals = [w.terminal[job] for job, w in watchers.items() if job in w.terminal]
            delivered = len(arrivals)
            delivery_s = max(arrivals, default=time.perf_counter()) - t0
            cut_off = sum(1 for w in watchers.values() if w.cut_off)
        finally:
            await asyncio.gather(*(w.close() for w in watchers.values()), return_exceptions=True)
    rss_held = max((r.get("rss_mib", 0.0) for r in ramp), default=0.0)
    measured = [r for r in ramp if "rss_mib" in r]
    # The cost of the last step's clients alone: what one more connection costs, without the
    # one-time growth (or the reuse of heap freed by earlier runs) that the average includes.
    last_step = (
        (measured[-1]["rss_mib"] - measured[-2]["rss_mib"]) * 1024 / (measured[-1]["clients"] - measured[-2]["clients"])
        if len(measured) >= 2 and measured[-1]["clients"] > measured[-2]["clients"]
        else float("nan")
    )
    return {
        "target_clients": total,
        "clients_held": held,
        "refused": refused,
        "rss_before_mib": rss_before / 1024,
        "rss_held_mib": rss_held,
        "rss_kib_per_client": (rss_held * 1024 - rss_before) / max(1, held),
        "rss_kib_per_client_last_step": last_step,
        "delivered": delivered,
        "delivery_s": delivery_s,
        "cut_off": cut_off,
        "ramp": ramp,
    }
