"""The tenant lanes of a service, as the orchestrator lists them in Redis (protocol.lanes).

Read when the worker starts and then every few seconds, as the backstop for a `lane_opened`
broadcast this process missed (it was down, or reconnecting). Redis being slow or down costs a
warning and an empty answer: the worker keeps consuming what it has and reads again next round.
"""

from __future__ import annotations

import logging
from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from plumbing.burst_log import BurstLog
from protocol.lanes import lanes_key
from protocol.names import is_tenant_id
from workers.runtime.redis_client import worker_redis

log = logging.getLogger(__name__)

LANES_TIMEOUT_SECONDS: Final[float] = 2.0
WARNING_INTERVAL_SECONDS: Final[float] = 60.0


class LaneDirectory:
    def __init__(self, redis_url: str, *, timeout_seconds: float = LANES_TIMEOUT_SECONDS) -> None:
        self._redis: aioredis.Redis = worker_redis(
            redis_url, timeout_seconds=timeout_seconds, client_name="baton-worker-lanes"
        )
        self._warnings = BurstLog(log, interval=WARNING_INTERVAL_SECONDS)

    async def tenants(self, service: str) -> list[str]:
        """The tenants with a lane of `service`; empty when Redis cannot answer now."""
        try:
            members = await self._redis.smembers(lanes_key(service))
        except (RedisError, OSError, TimeoutError) as exc:
            self._warnings.warning(
                "failed", "cannot read the tenant lanes of %s (%s: %s)", service, type(exc).__name__, exc
            )
            return []
        tenants = (m.decode() if isinstance(m, bytes) else m for m in members)
        return sorted(tenant for tenant in tenants if is_tenant_id(tenant))

    async def close(self) -> None:
        await self._redis.aclose()
