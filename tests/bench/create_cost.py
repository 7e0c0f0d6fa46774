"""The orchestrator's CPU per job on the create path alone: POST /jobs and POST /jobs/batch.

    tests/bench/.venv/bin/python -m tests.bench.create_cost [--single 3000] [--batched 10000] [--batch 250]
        [--profile-dir DIR]

Starts `python -m orchestrator` and the no-op worker; the worker is stopped once it has announced its
route, so no events come back and the orchestrator's CPU (user + system, /proc) over a run is what
creating the jobs cost. Its tenants' lanes and registry keys are removed at the end. With
`--profile-dir`, py-spy samples the orchestrator (200 Hz) during the runs (raw collapsed stacks, one file
per run), which costs CPU of its own: compare figures taken with it only with each other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.bench.baton_runs import BatonBench, close_baton
from tests.bench.common import BENCH_LIMITS, bench_tenants
from tests.bench.cpu import cpu_seconds
from tests.bench.profiling import py_spy
from tests.e2e.harness import BatonSystem, Tenant

WARMUP_SINGLE = 300
WARMUP_BATCHED = 1000


async def measured(
    bench: BatonBench, tenant: Tenant, jobs: int, batch: int, concurrency: int, profile: Path | None
) -> dict[str, Any]:
    pid = bench.orchestrator_pid
    spy = None
    binary = py_spy()
    if profile is not None and binary is not None:
        command = [binary, "record", "--format", "raw", "-r", "200", "-d", "3600", "--nonblocking"]
        spy = await asyncio.create_subprocess_exec(
            *command, "-o", str(profile), "--pid", str(pid), stdout=asyncio.subprocess.DEVNULL
        )
        await asyncio.sleep(1.0)  # py-spy attached
    cpu, t0 = cpu_seconds(pid), time.perf_counter()
    await bench.create(tenant, jobs, batch, concurrency)
    cpu, wall = cpu_seconds(pid) - cpu, time.perf_counter() - t0
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # writes what it sampled
        await asyncio.wait_for(spy.wait(), 60)
    requests = -(-jobs // max(batch, 1))
    return {
        "jobs": jobs,
        "batch": batch,
        "concurrency": concurrency,
        "jobs_per_s": jobs / wall,
        "cpu_ms_per_job": 1000 * cpu / jobs,
        "cpu_ms_per_request": 1000 * cpu / requests,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    urls = (
        os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    run = os.urandom(5).hex()
    tenants = bench_tenants(run, ("warm", "single", "batch"))
    system = BatonSystem(*urls, list(tenants.values()), extra_env=BENCH_LIMITS)
    profiles = Path(args.profile_dir) if args.profile_dir else None
    if profiles is not None:
        profiles.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"load_average_before": os.getloadavg()}
    try:
        base_url = await system.start_orchestrator()
        connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
        async with aiohttp.ClientSession(connector=connector) as session:
            bench = BatonBench(system, base_url, session)
            await bench.start_worker()
            await bench.stop_worker()  # its route stays: the jobs wait in its queue, no event comes back
            await bench.create(tenants["warm"], WARMUP_SINGLE, 1, args.concurrency)
            await bench.create(tenants["warm"], WARMUP_BATCHED, args.batch, args.batch_concurrency)
            results["single"] = await measured(
                bench, tenants["single"], args.single, 1, args.concurrency, profiles and profiles / "single.txt"
            )
            results["batch"] = await measured(
                bench,
                tenants["batch"],
                args.batched,
                args.batch,
                args.batch_concurrency,
                profiles and profiles / "batch.txt",
            )
    except BaseException:
        print(system.logs(), file=sys.stderr)
        raise
    finally:
        await close_baton(system, urls, list(tenants.values()))
    results["load_average_after"] = os.getloadavg()
    return results


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.create_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--single", type=int, default=3000, help="jobs created one per POST /jobs")
    parser.add_argument("--batched", type=int, default=10000, help="jobs created through POST /jobs/batch")
    parser.add_argument("--batch", type=int, default=250, help="jobs per POST /jobs/batch")
    parser.add_argument("--concurrency", type=int, default=48, help="POST /jobs in flight")
    parser.add_argument("--batch-concurrency", type=int, default=4, help="POST /jobs/batch in flight")
    parser.add_argument("--profile-dir", default="", help="py-spy raw stacks of the orchestrator go here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse_args(sys.argv[1:]))), indent=1))
