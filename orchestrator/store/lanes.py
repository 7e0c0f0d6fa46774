"""Which tenant lanes each service has (protocol.lanes): recorded before a lane's first publish,
read by workers to consume them and by /health and the sweeper to count what waits in them."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from orchestrator.store.codec import text
from orchestrator.store.registry import redis_errors
from protocol.lanes import lanes_key
from protocol.names import is_tenant_id


class RedisLanes:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def record(self, service: str, tenant_id: str) -> None:
        with redis_errors("recording a tenant lane"):
            await self._redis.sadd(lanes_key(service), tenant_id)

    async def tenants(self, services: Sequence[str]) -> dict[str, list[str]]:
        """The tenants with a lane, per service, in one round trip (sorted: a stable order to read them in)."""
        pipe = self._redis.pipeline(transaction=False)
        for service in services:
            pipe.smembers(lanes_key(service))
        with redis_errors("reading tenant lanes"):
            replies = await pipe.execute()
        found: dict[str, list[str]] = {}
        for service, members in zip(services, replies, strict=True):
            # Only what the orchestrator writes is a lane; anything else in the set names no queue.
            found[service] = sorted(tenant for tenant in map(text, members) if is_tenant_id(tenant))
        return found
