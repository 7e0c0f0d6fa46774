"""`--rounds N`: the full-speed runs (limit, Baton single and batch, Celery, Dramatiq) repeated N - 1 more times
after the main run, each round on freshly started processes, so that every ratio comes with its
median and spread. On a shared two-core machine one run's ratio can be off by a fifth either way.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from tests.bench.baton_runs import fresh_single_and_batch
from tests.bench.celery_peer import CeleryPeer
from tests.bench.common import (
    WARMUP_JOBS,
    progress,
)
from tests.bench.dramatiq_peer import DramatiqPeer
from tests.bench.peer_process import full_speed
from tests.bench.raw_limit import RawLimit
from tests.e2e.harness import ROOT


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
    single, batch = await fresh_single_and_batch(args, urls)
    return float(single["jobs_per_s"]), float(batch["jobs_per_s"])


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
