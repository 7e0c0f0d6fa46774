"""`--rounds N`: the full-speed runs (limit, Baton single and batch, Celery, Dramatiq) repeated N - 1 more times
after the main run, each round on freshly started processes, so that every ratio comes with its
median and spread. On a shared two-core machine one run's ratio can be off by a fifth either way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from tests.bench.baton_runs import BatonBench
from tests.bench.celery_peer import CeleryPeer
from tests.bench.common import (
    BENCH_LIMITS,
    NOOP_SERVICE,
    WARMUP_JOBS,
    bench_tenants,
    delete_matching,
    delete_service_queues,
    progress,
)
from tests.bench.dramatiq_peer import DramatiqPeer
from tests.bench.peer_process import full_speed
from tests.bench.raw_limit import RawLimit
from tests.e2e.harness import ROOT, BatonSystem, Tenant


async def limit_jobs_per_s(args: argparse.Namespace, urls: tuple[str, str]) -> float:
    limit = RawLimit(*urls, root=str(ROOT))
    await limit.start()
    try:
        await limit.full_speed(WARMUP_JOBS, args.concurrency, args.timeout)
        measured = await limit.full_speed(args.jobs, args.concurrency, args.timeout)
    finally:
        await limit.close()
    return float(measured["jobs_per_s"])


async def baton_jobs_per_s(args: argparse.Namespace, urls: tuple[str, str]) -> tuple[float, float]:
    """Jobs/s through POST /jobs, then through POST /jobs/batch, on a fresh orchestrator and worker."""
    run = os.urandom(5).hex()
    tenants = bench_tenants(run, ("warmup", "single", "batch"))
    system = BatonSystem(*urls, list(tenants.values()), extra_env=BENCH_LIMITS)
    try:
        base_url = await system.start_orchestrator()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency * 2)) as session:
            bench = BatonBench(system, base_url, session)
            await bench.start_worker()
            single, batch = await single_and_batch(args, bench, tenants)
    except BaseException:
        print(system.logs(), file=sys.stderr)
        raise
    finally:
        await close_baton(system, urls, list(tenants.values()))
    return float(single["jobs_per_s"]), float(batch["jobs_per_s"])


async def single_and_batch(
    args: argparse.Namespace, bench: BatonBench, tenants: dict[str, Tenant]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A warm-up, then Baton at full speed through POST /jobs, then through POST /jobs/batch."""
    progress("baton: warm-up, then full speed with POST /jobs")
    await bench.full_speed(tenants["warmup"], WARMUP_JOBS, 1, args.concurrency, args.timeout)
    single = await bench.full_speed(tenants["single"], args.jobs, 1, args.concurrency, args.timeout)
    progress("baton: full speed with POST /jobs/batch")
    in_flight = max(2, args.concurrency // 16)
    batch = await bench.full_speed(tenants["batch"], args.jobs, args.batch_size, in_flight, args.timeout)
    return single, batch


async def close_baton(system: BatonSystem, urls: tuple[str, str], tenants: list[Tenant]) -> None:
    """Stop Baton's processes and remove what the run left: its tenants' registry keys and lanes, the no-op queues."""
    system.close()
    await system.forget_lanes()
    redis = aioredis.Redis.from_url(urls[1])
    try:
        for tenant in tenants:
            await delete_matching(redis, f"orchestrator:*{tenant.tenant_id}*")
    finally:
        await redis.aclose()
    await delete_service_queues(urls[0], NOOP_SERVICE)


def celery_full_speed(args: argparse.Namespace, urls: tuple[str, str]) -> dict[str, Any]:
    return full_speed(
        CeleryPeer(*urls, root=str(ROOT), pool=args.celery_pool, concurrency=args.celery_concurrency), args
    )


def dramatiq_full_speed(args: argparse.Namespace, urls: tuple[str, str]) -> dict[str, Any]:
    peer = DramatiqPeer(*urls, root=str(ROOT), processes=args.dramatiq_processes, threads=args.dramatiq_threads)
    return full_speed(peer, args)


async def extra_round(args: argparse.Namespace, urls: tuple[str, str], number: int) -> dict[str, float]:
    progress(f"round {number} of {args.rounds}: limit, Baton single and batch, Celery, Dramatiq at full speed")
    limit = await limit_jobs_per_s(args, urls)
    single, batch = await baton_jobs_per_s(args, urls)
    celery = await asyncio.to_thread(celery_full_speed, args, urls)
    dramatiq = await asyncio.to_thread(dramatiq_full_speed, args, urls)
    return {
        "limit": limit,
        "single": single,
        "batch": batch,
        "celery": float(celery["jobs_per_s"]),
        "dramatiq": float(dramatiq["jobs_per_s"]),
    }
