"""Forgetting the services tests made the orchestrator's directory know: after each test, and at the end
of a session every service named with one of the session's `unique` suffixes.

A worker's heartbeat waits in the shared events queue until some orchestrator takes it, often a later
test's, after the test that ran the worker has cleaned up: its service is announced again and stays for a
day, counting towards the directory's cap of announced services (1,000; a busy day of runs reached 955).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection

import redis.asyncio as aioredis

from orchestrator.store import keys

_SUFFIX = re.compile(r"[0-9a-f]{10}")


async def forget_services(redis: aioredis.Redis, *services: str) -> None:
    """Everything the directory keeps of test services: announced, last seen, routes, workers, breakers."""
    if not services:
        return
    routes = await redis.hgetall(keys.ROUTES)
    served = [job_type for job_type, service in routes.items() if service.decode() in services]
    if served:
        await redis.hdel(keys.ROUTES, *served)
        await redis.hdel(keys.CACHE_DEFAULTS, *served)
    await redis.srem(keys.ANNOUNCED_SERVICES, *services)
    await redis.zrem(keys.SERVICES_SEEN, *services)
    await redis.delete(*(keys.workers(s) for s in services), *(keys.breakers(s) for s in services))


async def forget_named_services(redis: aioredis.Redis, uniques: Collection[str]) -> int:
    """Forget the announced services named with one of `uniques`; how many there were."""
    wanted = set(uniques)
    announced = {name.decode() for name in await redis.smembers(keys.ANNOUNCED_SERVICES)}
    ours = sorted(name for name in announced if wanted.intersection(_SUFFIX.findall(name)))
    await forget_services(redis, *ours)
    return len(ours)


def forget_session_services(redis_url: str, uniques: Collection[str]) -> int:
    """`forget_named_services` at the end of a session, outside any event loop."""
    if not uniques:
        return 0

    async def run() -> int:
        redis = aioredis.Redis.from_url(redis_url)
        try:
            return await forget_named_services(redis, uniques)
        finally:
            await redis.aclose()

    return asyncio.run(run())
