"""What the job creation quota costs a request: its one EVALSHA, alone and under POST /jobs.

    .venv/bin/python -m tests.bench.quota_cost [--takes 5000] [--posts 1000] [--rounds 3]

Three figures, each beside its baseline from the same run (a shared machine drifts between runs):
- one `take` after another: wall and client CPU microseconds per take, beside a PING (a bare round trip);
- 64 takes in flight: takes/s through the orchestrator's shared pipeline (`PipelineBatcher`) vs one
  EVALSHA per take on its own connection;
- POST /jobs on an in-process orchestrator (tests/api_server.py), quota on vs off: p50 and mean
  milliseconds per request one after another, and jobs/s with 64 in flight.
Needs RabbitMQ and Redis (RABBITMQ_URL, REDIS_URL; default 127.0.0.1); its keys, tenants and queue are removed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from orchestrator.rates import Rate
from orchestrator.settings import QuotaSettings
from orchestrator.store.token_bucket import TAKE, RedisTokenBucket
from plumbing.redis_batch import PipelineBatcher
from tests.api_server import Api, serve_api
from tests.services import LOCAL_RABBITMQ_URL, LOCAL_REDIS_URL

NEVER_EMPTY = Rate(1e9, 10**9)
IN_FLIGHT = 64


async def per_call(calls: int, call: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """Wall and process-CPU microseconds per call, one call after another."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - wall) / calls * 1e6, (time.process_time() - cpu) / calls * 1e6


async def per_second(calls: int, call: Callable[[], Awaitable[object]]) -> float:
    """Calls per second with IN_FLIGHT of them under way at once."""
    left = calls

    async def lane() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))
    return calls / (time.perf_counter() - started)


async def bucket_figures(redis: aioredis.Redis, takes: int) -> None:
    key = f"bench:quota:{uuid.uuid4().hex}"
    shared = RedisTokenBucket(redis, PipelineBatcher(redis))
    script = redis.register_script(TAKE)

    async def take() -> object:
        return await shared.take(key, NEVER_EMPTY, 1)

    async def lone_evalsha() -> object:
        return await script(keys=[key], args=[repr(NEVER_EMPTY.per_second), NEVER_EMPTY.burst, 1])

    try:
        await per_call(200, take)  # warm: the script is loaded, the connections are open
        ping_wall, ping_cpu = await per_call(takes, redis.ping)
        take_wall, take_cpu = await per_call(takes, take)
        print(
            f"sequential: PING {ping_wall:.0f} us wall, {ping_cpu:.0f} us CPU; take {take_wall:.0f} us wall, "
            f"{take_cpu:.0f} us CPU (+{take_wall - ping_wall:.0f} us wall, +{take_cpu - ping_cpu:.0f} us CPU)"
        )
        pipelined, alone = await per_second(takes, take), await per_second(takes, lone_evalsha)
        print(
            f"{IN_FLIGHT} in flight: {pipelined:,.0f} takes/s through the shared pipeline, "
            f"{alone:,.0f}/s one EVALSHA each"
        )
    finally:
        await redis.delete(key)


async def post_figures(rabbitmq_url: str, redis_url: str, redis: aioredis.Redis, posts: int, rounds: int) -> None:
    timings: dict[str, list[float]] = {"off": [], "on": []}
    rates: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(rounds):
        for mode in ("off", "on"):
            rate = NEVER_EMPTY if mode == "on" else None
            quotas = lambda a, b, rate=rate: QuotaSettings(jobs=rate)  # noqa: E731
            async with serve_api(rabbitmq_url, redis_url, redis, uuid.uuid4().hex[:10], quotas=quotas) as api:

                async def post(api: Api = api) -> None:
                    body = {"type": api.job_type, "payload": {}}
                    response = await api.client.post("/jobs", json=body, headers=api.headers_a)
                    assert response.status == 202, await response.text()

                await per_call(50, post)  # connections warmed up
                for _ in range(posts):
                    started = time.perf_counter()
                    await post()
                    timings[mode].append((time.perf_counter() - started) * 1000)
                rates[mode].append(await per_second(posts, post))
    for mode, values in timings.items():
        print(
            f"POST /jobs, quota {mode}: one at a time p50 {statistics.median(values):.2f} ms, mean "
            f"{statistics.fmean(values):.2f} ms ({len(values)} requests); {IN_FLIGHT} in flight "
            f"{statistics.median(rates[mode]):,.0f} jobs/s (median of {len(rates[mode])})"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--takes", type=int, default=5000)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rabbitmq_url = os.environ.get("RABBITMQ_URL") or LOCAL_RABBITMQ_URL
    redis_url = os.environ.get("REDIS_URL") or LOCAL_REDIS_URL
    redis = aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=256))
    try:
        await bucket_figures(redis, args.takes)
        await post_figures(rabbitmq_url, redis_url, redis, args.posts, args.rounds)
    finally:
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
