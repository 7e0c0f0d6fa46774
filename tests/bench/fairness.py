"""Tenant fairness before and after lanes: the noisy neighbour (tests/fairness/scenario.py) run with every
task in the service's one queue (as before lanes) and with a lane per tenant, on fresh names each time.

    python -m tests.bench.fairness [--backlog 10000] [--small 100] [--rounds 1] [--alone-seconds 5]

Prints B's queue wait (p50, p95, max) and A's rate of starts alone and while B runs, per mode and
round, then the throughput ratio lanes / shared queue (A alone; fairness should cost at most a tenth).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics

from tests.bench.common import run_id
from tests.fairness.scenario import Figures, Neighbours, run_neighbours
from tests.services import LOCAL_RABBITMQ_URL, LOCAL_REDIS_URL


async def main(backlog: int, small: int, rounds: int, alone_seconds: float) -> None:
    rabbitmq_url = os.environ.get("RABBITMQ_URL") or LOCAL_RABBITMQ_URL
    redis_url = os.environ.get("REDIS_URL") or LOCAL_REDIS_URL
    results: dict[bool, list[Figures]] = {False: [], True: []}
    for round_ in range(rounds):
        for lanes in (False, True):
            unique = run_id()
            run = Neighbours(
                service=f"bench-fair-{unique}",
                tenant_a=f"noisy-{unique}",
                tenant_b=f"quiet-{unique}",
                backlog=backlog,
                small=small,
                lanes=lanes,
                alone_seconds=alone_seconds,
            )
            figures = await run_neighbours(rabbitmq_url, redis_url, run)
            results[lanes].append(figures)
            print(*figures.lines(f"round {round_ + 1}, {'lanes' if lanes else 'shared queue'}"), sep="\n")
    shared, fair = results[False], results[True]
    ratio = statistics.median(f.a_alone_per_s for f in fair) / statistics.median(f.a_alone_per_s for f in shared)
    print(
        f"median B p95 wait: shared queue {statistics.median(f.b_p95_s for f in shared):.3f} s, "
        f"lanes {statistics.median(f.b_p95_s for f in fair):.3f} s"
    )
    print(f"A alone, lanes / shared queue: {ratio:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=10_000, help="tenant A's queued jobs")
    parser.add_argument("--small", type=int, default=100, help="tenant B's jobs")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--alone-seconds", type=float, default=5.0, help="A served alone before B's jobs come")
    args = parser.parse_args()
    asyncio.run(main(args.backlog, args.small, args.rounds, args.alone_seconds))
