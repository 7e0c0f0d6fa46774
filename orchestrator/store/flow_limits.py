"""The services' flow limits as their workers keep them in Redis (protocol.flow_limits), read for
/health and /metrics: the configured limits, the tasks holding a lease now, and the wait counters."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from orchestrator.store.codec import text
from orchestrator.store.registry import redis_errors
from protocol.flow_limits import (
    LIMITED_SERVICES_KEY,
    MAX_CONCURRENCY_FIELD,
    RATE_LIMIT_FIELD,
    LimitKind,
    leases_key,
    stats_key,
    wait_seconds_field,
    waits_field,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceLimits:
    rate_limit: str | None
    max_concurrency: int | None
    running: int  # tasks holding an unexpired concurrency lease (0 without a concurrency limit)
    waits: dict[str, int] = field(default_factory=dict)  # by limit kind: tasks that waited
    wait_seconds: dict[str, float] = field(default_factory=dict)


class FlowLimitStats:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def read(self) -> dict[str, ServiceLimits]:
        """Every limited service's figures, in two round trips; a service whose stats expired is dropped."""
        with redis_errors("reading flow limits"):
            services = sorted(text(s) for s in await self._redis.smembers(LIMITED_SERVICES_KEY))
            if not services:
                return {}
            # Lease expiries are on the Redis clock, in microseconds; this clock is near enough to count them.
            now_us = int(time.time() * 1_000_000)
            pipe = self._redis.pipeline(transaction=False)
            for service in services:
                pipe.hgetall(stats_key(service))
                pipe.zcount(leases_key(service), now_us, "+inf")
            replies = await pipe.execute()
            gone = [service for service, stats in zip(services, replies[::2], strict=True) if not stats]
            if gone:
                await self._redis.srem(LIMITED_SERVICES_KEY, *gone)
        limits: dict[str, ServiceLimits] = {}
        for service, stats, running in zip(services, replies[::2], replies[1::2], strict=True):
            if stats:
                try:
                    limits[service] = _limits({text(k): text(v) for k, v in stats.items()}, running)
                except ValueError:
                    log.warning("flow limits of %s: unreadable stats %r; not shown", service, stats)
        return limits


def _limits(stats: dict[str, str], running: int) -> ServiceLimits:
    return ServiceLimits(
        rate_limit=stats.get(RATE_LIMIT_FIELD) or None,
        max_concurrency=int(stats[MAX_CONCURRENCY_FIELD]) if stats.get(MAX_CONCURRENCY_FIELD) else None,
        running=running,
        waits={kind.value: int(stats.get(waits_field(kind), 0)) for kind in LimitKind},
        wait_seconds={kind.value: float(stats.get(wait_seconds_field(kind), 0.0)) for kind in LimitKind},
    )
