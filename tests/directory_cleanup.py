"""Forgetting, at the end of a test session, the services its tests made the orchestrator's directory know.

A worker's heartbeat waits in the shared events queue until some orchestrator takes it, often a later
test's, after the test that ran the worker has cleaned up: its service is announced again and stays for a
day, counting towards the directory's cap of announced services (1,000; a busy day of runs reached 955).
Only services whose names carry one of the session's own `unique` suffixes are touched.
"""

from __future__ import annotations

import re
from collections.abc import Collection

import redis

from orchestrator.store import keys

_SUFFIX = re.compile(r"[0-9a-f]{10}")


def forget_session_services(redis_url: str, uniques: Collection[str]) -> int:
    """Remove what the directory keeps of services named with one of `uniques`; how many were announced."""
    if not uniques:
        return 0
    wanted = set(uniques)
    client = redis.Redis.from_url(redis_url)
    try:
        announced = {name.decode() for name in client.smembers(keys.ANNOUNCED_SERVICES)}
        ours = sorted(name for name in announced if wanted.intersection(_SUFFIX.findall(name)))
        if not ours:
            return 0
        routes = client.hgetall(keys.ROUTES)
        served = [job_type for job_type, service in routes.items() if service.decode() in ours]
        pipe = client.pipeline(transaction=False)
        if served:
            pipe.hdel(keys.ROUTES, *served)
            pipe.hdel(keys.CACHE_DEFAULTS, *served)
        pipe.srem(keys.ANNOUNCED_SERVICES, *ours)
        pipe.zrem(keys.SERVICES_SEEN, *ours)
        pipe.delete(*(keys.workers(s) for s in ours), *(keys.breakers(s) for s in ours))
        pipe.execute()
        return len(ours)
    finally:
        client.close()
