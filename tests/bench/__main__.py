"""Baton side by side with the raw aio-pika limit, Celery and Dramatiq, on this machine's RabbitMQ and Redis.

    bash tests/bench/run.sh [--json results.json] [--quick] [--backlog-large 100000] ...

(run.sh makes the benchmark's own venv with the `bench` extra, then runs `python -m tests.bench`.)
Starts only its own processes, all on 127.0.0.1: the raw worker, Baton's orchestrator and worker
(`python -m orchestrator`, `python -m workers tests.bench.noop_worker:worker`), one Celery worker and one
Dramatiq worker. Every queue, exchange and Redis key it makes is removed at the end (the peers' results:
the keys with their run's prefix).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from tests.bench.baton_runs import BatonBench, close_baton, single_and_batch
from tests.bench.baton_scale import backlog, websocket_fanout
from tests.bench.common import BENCH_LIMITS, WARMUP_JOBS, bench_tenants, latency_rates, progress, raise_fd_limit
from tests.bench.profiling import Profiler, budget, render, render_budget
from tests.bench.raw_limit import RawLimit
from tests.bench.report import Row, cpu_rows, round_ratios, spread_rows, table, write_json
from tests.bench.rounds import celery_full_speed, dramatiq_full_speed, extra_round
from tests.e2e.harness import ROOT, BatonSystem, Tenant
from tests.services import LOCAL_RABBITMQ_URL, LOCAL_REDIS_URL

BACKLOG_LARGE_DEFAULT = 20_000  # 100k takes several minutes to create and drain on 2 cores: --backlog-large 100000
TENANT_PARTS = ("warmup", "single", "batch", "profile", "backlog-small", "backlog-large", "fanout")
LATENCY_MODES = (("single", 0.0), ("batch", 0.1))  # batch mode: one POST /jobs/batch every 100 ms
DEFAULT_RATES = {"single": "200", "batch": "400"}  # issue 14's targets: p99 at 200/s single, at 400/s batch
FLAMEGRAPH_DIR = ROOT / "tests" / "bench" / "profiles"
SKIPPABLE = ("latency", "backlog", "fanout")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the table and every figure as JSON here")
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per full-speed run (default 3000)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests or publishes in flight (default 64)")
    parser.add_argument("--batch-size", type=int, default=250, help="jobs per POST /jobs/batch at full speed")
    parser.add_argument("--latency-seconds", type=float, default=8.0, help="how long each offered rate lasts")
    parser.add_argument(
        "--single-rates",
        help=f"offered rates for Baton's latency through POST /jobs (jobs/s, default {DEFAULT_RATES['single']})",
    )
    parser.add_argument(
        "--batch-rates",
        help=f"offered rates for Baton's latency through POST /jobs/batch (default {DEFAULT_RATES['batch']})",
    )
    parser.add_argument("--rates", help="offered rates for both modes, unless --single-rates / --batch-rates")
    parser.add_argument("--limit-rate", type=float, default=300.0, help="offered rate for the limit's latency")
    parser.add_argument("--backlog-small", type=int, default=1000)
    parser.add_argument("--backlog-large", type=int, default=BACKLOG_LARGE_DEFAULT)
    parser.add_argument("--ws-clients", type=int, default=5000, help="WebSocket clients to ramp to (default 5000)")
    parser.add_argument("--celery-pool", default="threads", help="the Celery worker's --pool (default threads)")
    parser.add_argument("--celery-concurrency", type=int, default=16)
    parser.add_argument("--dramatiq-processes", type=int, default=1, help="the Dramatiq worker's -p (default 1)")
    parser.add_argument("--dramatiq-threads", type=int, default=16, help="the Dramatiq worker's -t (default 16)")
    parser.add_argument(
        "--track-started",
        action="store_true",
        help="Baton's worker announces `running` as each task starts (off, like the Celery peer's default)",
    )
    parser.add_argument(
        "--single-outcomes",
        action="store_true",
        help="Baton's worker sends each outcome in a message of its own (batch_outcomes off)",
    )
    parser.add_argument("--profile", type=float, default=0.0, help="py-spy the Baton processes for N s under load")
    parser.add_argument("--profile-batch", action="store_true", help="profile the batch route instead of single POSTs")
    parser.add_argument(
        "--flamegraphs",
        metavar="LABEL",
        help=f"with --profile: also save py-spy flame graphs as {FLAMEGRAPH_DIR.relative_to(ROOT)}/LABEL-<process>.svg",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: a few hundred jobs per part")
    parser.add_argument(
        "--skip",
        default="",
        help=f"comma-separated Baton parts to leave out, of: {','.join(SKIPPABLE)} (the full-speed runs always go)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="the most any one part waits for its jobs")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the full-speed runs (limit, Baton, Celery, Dramatiq) this many times in all, for each ratio's "
        "median and range (about a minute per extra round)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.latency_seconds, args.backlog_small, args.backlog_large = 300, 1.0, 200, 600
        args.ws_clients = min(args.ws_clients, 300)
    chosen = {mode: getattr(args, f"{mode}_rates") for mode in DEFAULT_RATES}
    args.rate_lists = latency_rates(DEFAULT_RATES, chosen, args.rates)
    args.skipped = {part for part in args.skip.split(",") if part}
    if args.rounds < 1:
        parser.error("--rounds takes 1 or more")
    if args.flamegraphs is not None and (args.profile <= 0 or not re.fullmatch(r"[\w.-]+", args.flamegraphs)):
        parser.error("--flamegraphs takes a label of letters, digits, '.', '-' or '_', and needs --profile N")
    if args.skipped - set(SKIPPABLE):
        parser.error(f"--skip takes {','.join(SKIPPABLE)}, not {','.join(sorted(args.skipped - set(SKIPPABLE)))}")
    return args


def ws_steps(target: int) -> list[int]:
    steps = [s for s in (100, 500, 1000, 2000, 5000, 10_000) if s < target]
    return [*steps, target]


async def run_limit(args: argparse.Namespace, urls: tuple[str, str], rows: list[Row], results: dict[str, Any]) -> None:
    progress("limit: raw aio-pika round trip")
    limit = RawLimit(*urls, root=str(ROOT))
    await limit.start()
    try:
        await limit.full_speed(WARMUP_JOBS, args.concurrency, args.timeout)
        speed = await limit.full_speed(args.jobs, args.concurrency, args.timeout)
        latency = await limit.at_rate(round(args.limit_rate * args.latency_seconds), args.limit_rate, args.timeout)
        speed["redis_stored"] = await limit.stored()
    finally:
        await limit.close()
    results["limit"] = {"full_speed": speed, "latency": latency}
    rows += [
        ("limit (raw aio-pika)", "full speed: jobs/s", speed["jobs_per_s"]),
        ("limit (raw aio-pika)", f"full speed: jobs / lost ({speed['jobs']})", speed["lost"]),
        ("limit (raw aio-pika)", f"at {latency['rate']:.0f}/s: p50 ms", latency["p50_ms"]),
        ("limit (raw aio-pika)", f"at {latency['rate']:.0f}/s: p99 ms", latency["p99_ms"]),
    ]


async def run_baton(
    args: argparse.Namespace, urls: tuple[str, str], rows: list[Row], results: dict[str, Any], notes: list[str]
) -> None:
    run = os.urandom(5).hex()
    parts = [*TENANT_PARTS, *(f"lat-{mode}-{rate:.0f}" for mode, _ in LATENCY_MODES for rate in args.rate_lists[mode])]
    # API keys are read when the orchestrator starts, so every run's tenant is made up front.
    tenants = bench_tenants(run, parts)
    system = BatonSystem(*urls, list(tenants.values()), extra_env=BENCH_LIMITS)
    redis = aioredis.Redis.from_url(urls[1])
    try:
        base_url = await system.start_orchestrator()
        connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
        async with aiohttp.ClientSession(connector=connector) as session:
            bench = BatonBench(system, base_url, session)
            await bench.start_worker()
            single, batch = await single_and_batch(args, bench, tenants)
            results["baton"] = {"single": single, "batch": batch, "latency": []}
            if args.profile > 0:
                # A run of its own, so that sampling never slows the measured ones.
                progress(f"baton: py-spy on the orchestrator and the worker for {args.profile:.0f} s under load")
                size, in_flight = (args.batch_size, 4) if args.profile_batch else (1, args.concurrency)
                flamegraphs = FLAMEGRAPH_DIR / args.flamegraphs if args.flamegraphs else None
                async with Profiler.maybe(args.profile, system, results, flamegraphs):
                    profiled = await bench.full_speed(tenants["profile"], args.jobs * 3, size, in_flight, args.timeout)
                results["profile_run"] = profiled
            rows += [
                ("baton single (POST /jobs)", "full speed: jobs/s", single["jobs_per_s"]),
                ("baton single (POST /jobs)", "full speed: POST rate/s", single["create_rate"]),
                ("baton single (POST /jobs)", f"lost / registry ok ({single['jobs']})", _health(single)),
                ("baton batch (POST /jobs/batch)", "full speed: jobs/s", batch["jobs_per_s"]),
                ("baton batch (POST /jobs/batch)", "full speed: create rate/s", batch["create_rate"]),
                ("baton batch (POST /jobs/batch)", f"lost / registry ok ({batch['jobs']})", _health(batch)),
            ]
            for mode, every in LATENCY_MODES if "latency" not in args.skipped else ():
                for rate in args.rate_lists[mode]:
                    tenant = tenants[f"lat-{mode}-{rate:.0f}"]
                    jobs = round(rate * args.latency_seconds)
                    progress(f"baton: latency, {mode}, {rate:.0f} jobs/s offered")
                    measured = await bench.at_rate(tenant, jobs, rate, every, args.timeout)
                    results["baton"]["latency"].append({"mode": mode, **measured})
                    part = f"baton {mode} latency"
                    rows += [
                        (
                            part,
                            f"at {rate:.0f}/s: p50 / p99 ms",
                            f"{measured['p50_ms']:.1f} / {measured['p99_ms']:.1f}",
                        ),
                        (part, f"at {rate:.0f}/s: done rate/s", measured["done_rate"]),
                        (part, f"at {rate:.0f}/s: rejected (of {jobs:,})", measured["rejected"]),
                    ]
                    if measured["rejected"]:
                        notes.append(
                            f"baton {mode} at {rate:.0f}/s offered: {measured['rejected']} jobs refused "
                            f"({', '.join(f'{n} {e}' for e, n in measured['rejected_errors'].items())}): the broker "
                            "did not confirm in time; left out of the latencies"
                        )
                    if measured["done_rate"] < 0.9 * rate:
                        notes.append(
                            f"baton {mode} at {rate:.0f}/s offered finished only {measured['done_rate']:.0f}/s: "
                            "over capacity, so its latency is queueing and grows with the run's length"
                        )
            if "backlog" not in args.skipped:
                await run_backlogs(args, bench, redis, tenants, rows, results, notes)
            if "fanout" not in args.skipped:
                await run_fanout(args, bench, tenants, rows, results)
    except BaseException:
        print(system.logs(), file=sys.stderr)
        raise
    finally:
        await redis.aclose()
        await close_baton(system, urls, list(tenants.values()))


async def run_backlogs(
    args: argparse.Namespace,
    bench: BatonBench,
    redis: aioredis.Redis,
    tenants: dict[str, Tenant],
    rows: list[Row],
    results: dict[str, Any],
    notes: list[str],
) -> None:
    progress(f"baton: backlogs of {args.backlog_small:,} and {args.backlog_large:,} jobs")
    small = await backlog(bench, redis, tenants["backlog-small"], args.backlog_small, args.timeout)
    # Bounded, but long enough for a slow drain of the large backlog (50 jobs/s).
    drain_timeout = max(args.timeout, args.backlog_large / 50)
    large = await backlog(bench, redis, tenants["backlog-large"], args.backlog_large, drain_timeout)
    results["baton"]["backlog"] = {"small": small, "large": large}
    for label, measured in (("small", small), ("large", large)):
        part = f"baton backlog {measured['jobs']:,} queued"
        rows += [
            (part, "create: jobs/s", measured["create_rate"]),
            (part, "Redis bytes/job (its keys)", measured["redis_bytes_per_job"]),
            (part, "Redis used_memory delta/job", measured["redis_used_memory_delta_per_job"]),
            (part, "worker start to 1st done s", measured["worker_start_to_first_s"]),
            (part, "drain: ms/job", measured["drain_ms_per_job"]),
            (part, "drain: jobs/s", measured["drain_rate"]),
            (part, "registry ok", measured["registry_ok"]),
        ]
        if label == "large" and measured["jobs"] < 100_000:
            notes.append(
                f"the large backlog is {measured['jobs']:,} jobs, not 100k, to keep the run short; "
                "`--backlog-large 100000` measures 100k (several minutes on 2 cores)"
            )


async def run_fanout(
    args: argparse.Namespace, bench: BatonBench, tenants: dict[str, Tenant], rows: list[Row], results: dict[str, Any]
) -> None:
    progress(f"baton: WebSocket fan-out to {args.ws_clients:,} clients")
    fanout = await websocket_fanout(
        bench, tenants["fanout"], ws_steps(args.ws_clients), step_timeout=120, delivery_timeout=args.timeout
    )
    results["baton"]["websocket_fanout"] = fanout
    rows += [
        (
            "baton WebSocket fan-out",
            "clients held (target)",
            f"{fanout['clients_held']:,} ({fanout['target_clients']:,})",
        ),
        (
            "baton WebSocket fan-out",
            "orchestrator RSS MiB before / held",
            f"{fanout['rss_before_mib']:.0f} / {fanout['rss_held_mib']:.0f}",
        ),
        ("baton WebSocket fan-out", "RSS KiB per connection", fanout["rss_kib_per_client"]),
        ("baton WebSocket fan-out", "RSS KiB per connection, last step", fanout["rss_kib_per_client_last_step"]),
        ("baton WebSocket fan-out", "terminal events delivered", fanout["delivered"]),
        ("baton WebSocket fan-out", "worker start + delivery s", fanout["delivery_s"]),
    ]


def cpu_runs(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each full-speed run of the first round, by the system it measured."""
    return {
        "limit": results["limit"]["full_speed"],
        "baton single": results["baton"]["single"],
        "baton batch": results["baton"]["batch"],
        f"celery ({results['celery']['pool']})": results["celery"],
        f"dramatiq ({results['dramatiq']['pool']})": results["dramatiq"],
    }


def _health(measured: dict[str, Any]) -> str:
    return f"{measured['lost']} / {measured['registry_ok']}"


def run_peers(args: argparse.Namespace, urls: tuple[str, str], rows: list[Row], results: dict[str, Any]) -> None:
    for name, title, full_speed in (
        ("celery", "celery 5", celery_full_speed),
        ("dramatiq", "dramatiq", dramatiq_full_speed),
    ):
        progress(f"{name}: full speed")
        measured = full_speed(args, urls)
        results[name] = measured
        rows += [
            (f"{title} ({measured['pool']})", "full speed: jobs/s", measured["jobs_per_s"]),
            (f"{title} ({measured['pool']})", f"full speed: lost ({measured['jobs']})", measured["lost"]),
        ]


async def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # Read by the no-op worker (tests/bench/noop_worker.py), which every Baton run starts as a child.
    os.environ["BATON_BENCH_TRACK_STARTED"] = "1" if args.track_started else "0"
    os.environ["BATON_BENCH_BATCH_OUTCOMES"] = "0" if args.single_outcomes else "1"
    urls = (os.environ.get("RABBITMQ_URL") or LOCAL_RABBITMQ_URL, os.environ.get("REDIS_URL") or LOCAL_REDIS_URL)
    fd_limit = raise_fd_limit(args.ws_clients * 2 + 1024)
    rows: list[Row] = []
    results: dict[str, Any] = {}
    notes: list[str] = []
    started = time.perf_counter()
    await run_limit(args, urls, rows, results)
    await run_baton(args, urls, rows, results, notes)
    await asyncio.to_thread(run_peers, args, urls, rows, results)
    first_round = {
        "limit": results["limit"]["full_speed"]["jobs_per_s"],
        "single": results["baton"]["single"]["jobs_per_s"],
        "batch": results["baton"]["batch"]["jobs_per_s"],
        "celery": results["celery"]["jobs_per_s"],
        "dramatiq": results["dramatiq"]["jobs_per_s"],
    }
    ratios = round_ratios(first_round)
    results["ratios"] = ratios
    rows += [("ratios (jobs/s, this run)", name, value) for name, value in ratios.items()]
    if args.rounds > 1:
        rounds = [first_round]
        for number in range(2, args.rounds + 1):
            try:
                rounds.append(await extra_round(args, urls, number))
            except Exception as exc:  # what was measured is still reported
                notes.append(f"round {number} of {args.rounds} failed ({type(exc).__name__}: {exc}); no more rounds")
                break
        spread, results["rounds"] = spread_rows(rounds)
        rows += spread
    rows += cpu_rows(cpu_runs(results))
    notes += [
        f"jobs per full-speed run: {args.jobs:,}; {args.concurrency} requests/publishes in flight; "
        f"batches of {args.batch_size}; latency runs last {args.latency_seconds:g} s each "
        "(batch mode: one batch per 100 ms)",
        "Baton: done = terminal event on a WebSocket client, and the registry lists every job completed at the end",
        "Baton's worker: "
        + ("running event (transient) as each task starts" if args.track_started else "no running event (as Celery)")
        + ", outcome persistent, "
        + ("one message each" if args.single_outcomes else "outcomes batched (Worker batch_outcomes=True)")
        + "; the limit publishes 1 persistent message per job",
        "Redis bytes/job (its keys): summed MEMORY USAGE of the tenant's registry keys once created; "
        "the used_memory delta also counts whatever other Redis users did meanwhile",
        f"open-files limit of this process and its children: {fd_limit}",
        f"the whole run took {time.perf_counter() - started:.0f} s",
    ]
    print(table(rows, notes))
    if "profile" in results:
        print("\n" + render(results["profile"]))
        if "profile_run" in results:
            results["budget"] = budget(results["profile"], results["profile_run"]["cpu_ms"])
            print("\n" + render_budget(results["budget"]))
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        write_json(args.json, rows, results, notes, settings)
        print(f"\nJSON: {args.json}")
    return 0


def run(argv: list[str]) -> int:
    try:
        import uvloop  # the client side runs on the same loop as Baton's processes, when it is installed
    except ImportError:
        return asyncio.run(main(argv))
    return uvloop.run(main(argv))


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
