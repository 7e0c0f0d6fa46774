"""POST /jobs at full speed with the orchestrator as 1 process and as N (`--processes`), in one run.

    .venv/bin/python -m tests.bench.processes [--jobs 2000] [--rounds 2] [--processes 1,2] [--concurrency 32]

Each round runs every count once (in turn, so a neighbour's load on the machine hits them alike):
a fresh orchestrator group and noop worker, a warm-up, then `jobs` single POSTs; a job counts when its
terminal event reached the WebSocket client. Prints jobs/s, the POST rate, the orchestrator's CPU ms
per job (the parent and all its children) and the load average around each run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from pathlib import Path
from typing import Any

import aiohttp

from tests.bench.baton_runs import BatonBench
from tests.bench.common import BENCH_LIMITS, WARMUP_JOBS
from tests.bench.cpu import cpu_seconds
from tests.e2e.harness import BatonSystem, Tenant


def family(pid: int) -> list[int]:
    """`pid` and its children (the orchestrator processes of a group)."""
    found = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


async def one_run(urls: tuple[str, str], processes: int, jobs: int, concurrency: int) -> dict[str, Any]:
    warmup, measured = (Tenant(f"bench-proc-{os.urandom(5).hex()}", os.urandom(16).hex()) for _ in range(2))
    system = BatonSystem(*urls, [warmup, measured], extra_env=BENCH_LIMITS)
    try:
        base_url = await system.start_orchestrator(ORCHESTRATOR_PROCESSES=str(processes))
        connector = aiohttp.TCPConnector(limit=concurrency * 2)
        async with aiohttp.ClientSession(connector=connector) as session:
            bench = BatonBench(system, base_url, session)
            await bench.start_worker()
            await bench.full_speed(warmup, WARMUP_JOBS, 1, concurrency, 60)
            group = family(bench.orchestrator_pid)
            load_before = os.getloadavg()[0]
            cpu_before = sum(map(cpu_seconds, group))
            result = await bench.full_speed(measured, jobs, 1, concurrency, 120)
            cpu_ms = 1000 * (sum(map(cpu_seconds, group)) - cpu_before) / jobs
        return {
            "processes": processes,
            "jobs_per_s": result["jobs_per_s"],
            "create_rate": result["create_rate"],
            "lost": result["lost"],
            "orchestrator_cpu_ms": cpu_ms,
            "all_cpu_ms": result["cpu_ms"]["all"] - result["cpu_ms"]["orchestrator"] + cpu_ms,
            "load": (load_before, os.getloadavg()[0]),
        }
    finally:
        system.close()
        await system.forget_lanes()


async def main(args: argparse.Namespace) -> None:
    urls = (
        os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    counts = [int(n) for n in args.processes.split(",")]
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    for round_number in range(args.rounds):
        order = counts if round_number % 2 == 0 else counts[::-1]
        for n in order:
            run = await one_run(urls, n, args.jobs, args.concurrency)
            runs[n].append(run)
            print(
                f"round {round_number + 1}, {n} process(es): {run['jobs_per_s']:.0f} jobs/s, POST "
                f"{run['create_rate']:.0f}/s, lost {run['lost']}, orchestrator {run['orchestrator_cpu_ms']:.2f} "
                f"CPU ms/job, all {run['all_cpu_ms']:.2f}, load {run['load'][0]:.2f} -> {run['load'][1]:.2f}",
                flush=True,
            )
    for n, found in runs.items():
        rates = ", ".join(f"{r['jobs_per_s']:.0f}" for r in found)
        print(
            f"{n} process(es): median {statistics.median(r['jobs_per_s'] for r in found):.0f} jobs/s "
            f"({rates}), orchestrator "
            f"{statistics.median(r['orchestrator_cpu_ms'] for r in found):.2f} CPU ms/job"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.bench.processes", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--processes", default="1,2", help="the counts to compare, comma-separated")
    parser.add_argument("--concurrency", type=int, default=32, help="POSTs in flight")
    asyncio.run(main(parser.parse_args()))
