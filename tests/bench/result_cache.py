"""The result cache's effect on a repeated workload: the same requests with `cache: false` and with a TTL.

    /work/main/.venv/bin/python -m tests.bench.result_cache [--jobs 200] [--distinct 20] [--sleep 0.05]

An orchestrator and a worker run in this process on the real RabbitMQ and Redis (RABBITMQ_URL, REDIS_URL;
default 127.0.0.1), each run with its own tenants and service, removed afterwards. `--clients` callers
share the jobs (payloads drawn round-robin from `--distinct`, in a fixed shuffled order), each posting one
job with `wait` and posting the next when it has the outcome. Printed per mode: wall time, jobs/s, handler
runs, and how the requests were answered (a job of their own, from the cache, attached to a running job).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from tests.api_server import Api, serve_api
from tests.services import LOCAL_RABBITMQ_URL, LOCAL_REDIS_URL
from tests.workers.helpers import running
from workers import TaskContext, Worker


@dataclass(frozen=True)
class Figures:
    mode: str
    seconds: float
    runs: int
    answers: Counter[str]


async def one_mode(
    rabbitmq_url: str, redis_url: str, cache: Any, jobs: int, distinct: int, sleep: float, clients: int, workers: int
) -> Figures:
    redis_client = aioredis.Redis.from_url(redis_url)
    unique = f"bench{uuid.uuid4().hex[:8]}"
    runs: Counter[str] = Counter()
    try:
        # Its own events queue: on the shared one, other runs' orchestrators (maybe on another Redis db) take a share.
        async with serve_api(rabbitmq_url, redis_url, redis_client, unique) as api:
            worker = Worker(api.service, concurrency=workers)

            @worker.handler(api.job_type)
            async def handle(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
                runs[json.dumps(payload)] += 1
                await asyncio.sleep(sleep)
                return {"n": payload["n"]}

            async with running(worker, rabbitmq_url, redis_url=redis_url):
                return await drive(api, cache, jobs, distinct, clients, runs)
    finally:
        await redis_client.aclose()


async def drive(api: Api, cache: Any, jobs: int, distinct: int, clients: int, runs: Counter[str]) -> Figures:
    order = [n % distinct for n in range(jobs)]
    random.Random(1).shuffle(order)
    pending = asyncio.Queue[int]()
    for n in order:
        pending.put_nowait(n)
    answers: Counter[str] = Counter()

    async def client() -> None:
        while not pending.empty():
            n = pending.get_nowait()
            body = {"type": api.job_type, "payload": {"n": n}, "cache": cache, "wait": 60}
            response = await api.client.post("/jobs", json=body, headers=api.headers_a)
            answer = await response.json()
            if answer.get("status") != "completed":
                raise RuntimeError(f"job {n} did not complete: {answer}")
            answers["from_cache" if answer["from_cache"] else "coalesced" if answer["coalesced"] else "own job"] += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    seconds = time.perf_counter() - started
    return Figures("cache off" if cache is False else "cache on", seconds, sum(runs.values()), answers)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--distinct", type=int, default=20, help="distinct payloads")
    parser.add_argument("--sleep", type=float, default=0.05, help="seconds each handler run takes")
    parser.add_argument("--clients", type=int, default=20, help="callers posting at once")
    parser.add_argument("--workers", type=int, default=10, help="the worker's concurrency")
    args = parser.parse_args()
    rabbitmq_url = os.environ.get("RABBITMQ_URL") or LOCAL_RABBITMQ_URL
    redis_url = os.environ.get("REDIS_URL") or LOCAL_REDIS_URL
    print(
        f"{args.jobs} jobs over {args.distinct} payloads, handler {args.sleep * 1000:.0f} ms, "
        f"{args.clients} callers, worker concurrency {args.workers}"
    )
    print(f"{'mode':<10} {'wall s':>7} {'jobs/s':>7} {'runs':>5}  answers")
    for cache in (False, {"ttl_seconds": 300}):
        figures = await one_mode(
            rabbitmq_url, redis_url, cache, args.jobs, args.distinct, args.sleep, args.clients, args.workers
        )
        answers = ", ".join(f"{kind} {count}" for kind, count in sorted(figures.answers.items()))
        rate = args.jobs / figures.seconds
        print(f"{figures.mode:<10} {figures.seconds:>7.2f} {rate:>7.0f} {figures.runs:>5}  {answers}")


if __name__ == "__main__":
    asyncio.run(main())
