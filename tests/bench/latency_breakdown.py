"""Where one job's latency goes, hop by hop, at a paced rate of POST /jobs (or of POST /jobs/batch).

    tests/bench/.venv/bin/python -m tests.bench.latency_breakdown [--rate 200] [--seconds 8] [--warm 500]
        [--batch-every 0] [--track-started 1] [--json FILE]

Starts `python -m orchestrator` and the no-op worker (tests/bench/noop_worker.py; with `--track-started 0`
it sends no running event) on RabbitMQ and Redis at RABBITMQ_URL / REDIS_URL (default 127.0.0.1), all on
loopback. After a warm-up at full speed, it offers `--rate` jobs/s for `--seconds`: one POST /jobs per job,
or with `--batch-every S` one POST /jobs/batch per S seconds. A WebSocket client subscribed to all the
run's jobs takes each job's stamps (tests/bench/latency_hops.py) and the table gives p50/p90/p99/max per
hop over the jobs done, then the max end to end per 250 ms of posting. Its tenants' registry keys and
lanes and the no-op queues (when empty) are removed at the end, whatever happened.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp

from tests.bench.baton_runs import BatonBench, Posted, close_baton
from tests.bench.common import BENCH_LIMITS, bench_tenants, paced, progress, wait_until
from tests.bench.latency_hops import Breakdown, Post, Seen, breakdown, note_event, render
from tests.bench.report import write_json
from tests.bench.ws_client import JobWatcher
from tests.e2e.harness import BatonSystem, Tenant
from tests.services import LOCAL_RABBITMQ_URL, LOCAL_REDIS_URL

WARM_CONCURRENCY = 64
SUBSCRIBED_AFTER_S = 0.5  # a subscription to all of a tenant's jobs is not acknowledged: give it time
REGISTRY_CHECK_S = 5.0


async def stamped(post: Awaitable[list[Posted]]) -> tuple[Post, list[Posted]]:
    """A POST's wall-clock start and answer (the clock the orchestrator and the worker stamp events with)
    and what it answered. The coroutine runs from the await, so the first stamp is its start."""
    started = time.time()
    answer = await post
    return Post(started, time.time()), answer


async def offer(bench: BatonBench, tenant: Tenant, args: argparse.Namespace) -> tuple[dict[str, Post], int]:
    """Offers the run's jobs at its rate; the accepted jobs' POST stamps and how many were refused.
    Refusals over capacity (a 503, a batch item's error) are counted, any other answer fails the run."""
    jobs = round(args.rate * args.seconds)
    if args.batch_every <= 0:
        parts = await paced(jobs, args.rate, lambda i: stamped(bench.post_one(tenant, i, strict=False)))
    else:
        per_batch = max(1, round(args.rate * args.batch_every))
        sizes = [min(per_batch, jobs - first) for first in range(0, jobs, per_batch)]
        parts = await paced(
            len(sizes),
            args.rate / per_batch,
            lambda k: stamped(bench.post_batch(tenant, k * per_batch, sizes[k], strict=False)),
        )
    accepted: dict[str, Post] = {}
    refused = 0
    for post, answer in parts:
        for posted in answer:
            if posted.error is None and posted.job_id is not None:
                accepted[posted.job_id] = post
            else:
                refused += 1
    return accepted, refused


async def measure(bench: BatonBench, tenant: Tenant, args: argparse.Namespace) -> tuple[Breakdown, dict[str, Any]]:
    seen: dict[str, Seen] = {}
    watcher = await JobWatcher.connect(
        bench.session, bench.base_url, tenant.headers, observe=lambda message: note_event(seen, message, time.time())
    )
    try:
        await asyncio.sleep(SUBSCRIBED_AFTER_S)
        progress(f"offering {args.rate:g} jobs/s for {args.seconds:g} s")
        posts, refused = await offer(bench, tenant, args)
        ids = set(posts)
        await wait_until(lambda: ids <= watcher.terminal.keys(), args.timeout, watcher.changed)
    finally:
        await watcher.close()
    registry = await bench.wait_registry(tenant, len(posts), REGISTRY_CHECK_S)
    return breakdown(posts, seen), {"refused": refused, "registry_completed": registry, "ws_cut_off": watcher.cut_off}


def describe(args: argparse.Namespace) -> str:
    jobs = round(args.rate * args.seconds)
    if args.batch_every > 0:
        per_batch = max(1, round(args.rate * args.batch_every))
        how = f"one POST /jobs/batch of {per_batch} every {args.batch_every:g} s"
    else:
        how = "one POST /jobs each"
    return (
        f"{jobs:,} jobs offered at {args.rate:g}/s for {args.seconds:g} s, {how}; "
        f"worker track_started={args.track_started}; warm-up {args.warm:,} jobs"
    )


def notes(args: argparse.Namespace, load_before: tuple[float, ...], load_after: tuple[float, ...]) -> list[str]:
    said = [
        "the worker's and the orchestrator's stamps (their events' timestamps) are compared with the client's: "
        "they share this machine's clock, so the hops between processes hold on one host only",
        "a job's stamps are those of the POST that created it (in batch mode its batch's POST); the WebSocket "
        "stamps are when this client read the frame, on the same cores as Baton",
        f"load average (1, 5, 15 min) before {_load(load_before)}, after {_load(load_after)}",
    ]
    if not args.track_started:
        said.append("--track-started 0: the worker sends no running event, so the hops from its start are absent")
    return said


def _load(load: tuple[float, ...]) -> str:
    return " ".join(f"{value:.2f}" for value in load)


async def main(args: argparse.Namespace) -> int:
    urls = (os.environ.get("RABBITMQ_URL") or LOCAL_RABBITMQ_URL, os.environ.get("REDIS_URL") or LOCAL_REDIS_URL)
    run = os.urandom(5).hex()
    tenants = bench_tenants(run, ("warm", "measured"))
    progress(f"run {run}: tenants {', '.join(t.tenant_id for t in tenants.values())}")
    system = BatonSystem(*urls, list(tenants.values()), extra_env=BENCH_LIMITS)
    load_before = os.getloadavg()
    try:
        base_url = await system.start_orchestrator()
        # No cap on connections: an open-loop rate sends each POST when due, never queued in the client
        # (that wait would show as POST -> answer).
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            bench = BatonBench(system, base_url, session)
            await bench.start_worker(BATON_BENCH_TRACK_STARTED=str(args.track_started))
            if args.warm > 0:
                progress(f"warm-up: {args.warm} jobs at full speed")
                await bench.full_speed(tenants["warm"], args.warm, 1, WARM_CONCURRENCY, args.timeout)
            result, checks = await measure(bench, tenants["measured"], args)
    except BaseException:
        print(system.logs(), file=sys.stderr)
        raise
    finally:
        await close_baton(system, urls, list(tenants.values()))
    load_after = os.getloadavg()
    said = notes(args, load_before, load_after)
    print(f"latency breakdown: {describe(args)}")
    refused, registry = checks["refused"], checks["registry_completed"]
    print(f"refused by the orchestrator {refused:,}; the registry lists {registry:,} completed")
    if checks["ws_cut_off"]:
        print(f"the WebSocket client was cut off: {checks['ws_cut_off']}")
    print("\n".join(render(result)))
    print("\n" + "\n".join(f"note: {note}" for note in said))
    if args.json:
        rows = [(hop, stat, value) for hop, stats in result.hops.items() for stat, value in stats.items()]
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        write_json(
            Path(args.json),
            rows,
            {
                "run": run,
                **asdict(result),
                **checks,
                "load_average_before": load_before,
                "load_average_after": load_after,
            },
            said,
            settings,
        )
        print(f"\nJSON: {args.json}")
    return 0 if result.lost == 0 and result.failed == 0 else 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.latency_breakdown", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--rate", type=float, default=200, help="jobs offered per second")
    parser.add_argument("--seconds", type=float, default=8, help="how long the rate is offered")
    parser.add_argument("--warm", type=int, default=500, help="jobs run at full speed first (0: none)")
    parser.add_argument("--batch-every", type=float, default=0, help="one POST /jobs/batch per S s (0: POST /jobs)")
    parser.add_argument("--track-started", type=int, choices=(0, 1), default=1, help="0: no running event")
    parser.add_argument("--timeout", type=float, default=30, help="seconds to wait for the last terminal event")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    return parser.parse_args(argv)


def run(argv: list[str]) -> int:
    try:
        import uvloop  # the client runs on the same loop as the main benchmark's, when it is installed
    except ImportError:
        return asyncio.run(main(parse_args(argv)))
    return uvloop.run(main(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
