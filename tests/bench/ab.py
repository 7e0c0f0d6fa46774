"""A paired A/B of two Baton configurations, for changes too small to see across separate benchmark runs.

    tests/bench/.venv/bin/python -m tests.bench.ab --a BATON_X=0 --b BATON_X=1 [--pairs 4] [--jobs 3000]

Each configuration is a set of environment variables for the orchestrator and the no-op worker. A pair
runs A and B one after the other on fresh processes (warm-up, then full speed through POST /jobs and
POST /jobs/batch), A first in odd pairs and B first in even ones, so that a drift of the machine over
minutes weighs on both. It prints each run's jobs/s and CPU ms per job (all processes, RabbitMQ and
Redis included) and, per measure, the median of the pairs' B/A ratios: on this noisy two-core machine
separate runs of the same code differ by a fifth, runs a minute apart much less.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from typing import Any

from tests.bench.baton_runs import fresh_single_and_batch
from tests.bench.common import progress
from tests.services import LOCAL_RABBITMQ_URL, LOCAL_REDIS_URL

MEASURES = ("single jobs/s", "batch jobs/s", "single CPU ms/job", "batch CPU ms/job")


def parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"not NAME=VALUE: {pair!r}")
        env[name] = value
    return env


async def one_run(args: argparse.Namespace, urls: tuple[str, str], env: dict[str, str]) -> dict[str, float]:
    single, batch = await fresh_single_and_batch(args, urls, env)
    return {
        "single jobs/s": single["jobs_per_s"],
        "batch jobs/s": batch["jobs_per_s"],
        "single CPU ms/job": single["cpu_ms"]["all"],
        "batch CPU ms/job": batch["cpu_ms"]["all"],
    }


def report(runs: list[tuple[dict[str, float], dict[str, float]]], a: dict[str, str], b: dict[str, str]) -> str:
    lines = [f"A: {a or '(the defaults)'}", f"B: {b or '(the defaults)'}", ""]
    lines.append(f"{'pair':<6}" + "".join(f"{m + ' A / B':>32}" for m in MEASURES))
    for n, (ra, rb) in enumerate(runs, 1):
        lines.append(f"{n:<6}" + "".join(f"{ra[m]:>24.2f} / {rb[m]:<5.2f}" for m in MEASURES))
    lines.append("")
    for m in MEASURES:
        ratios = [rb[m] / ra[m] for ra, rb in runs]
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        lines.append(f"B/A {m:<18} median {statistics.median(ratios):.2f} (pairs: {spread})")
    return "\n".join(lines)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", nargs="*", default=[], metavar="NAME=VALUE", help="configuration A's environment")
    parser.add_argument("--b", nargs="*", default=[], metavar="NAME=VALUE", help="configuration B's environment")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per full-speed run")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--batch-size", type=int, default=250, help="jobs per POST /jobs/batch")
    parser.add_argument("--timeout", type=float, default=120.0, help="the most one run waits for its jobs")
    args = parser.parse_args(argv)
    a, b = parse_env(args.a), parse_env(args.b)
    urls = (os.environ.get("RABBITMQ_URL") or LOCAL_RABBITMQ_URL, os.environ.get("REDIS_URL") or LOCAL_REDIS_URL)
    runs: list[tuple[dict[str, float], dict[str, float]]] = []
    for n in range(1, args.pairs + 1):
        order = [("A", a), ("B", b)] if n % 2 else [("B", b), ("A", a)]
        measured: dict[str, dict[str, float]] = {}
        for name, env in order:
            progress(f"pair {n} of {args.pairs}: {name}")
            measured[name] = await one_run(args, urls, env)
        runs.append((measured["A"], measured["B"]))
    print(report(runs, a, b))
    return 0


def entry(argv: list[str] | None = None) -> Any:
    return asyncio.run(main(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(entry())
