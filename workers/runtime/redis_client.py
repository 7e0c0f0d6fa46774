"""The worker's Redis clients (the delivery ledger, the flow limits): short timeouts and no retries,
since each caller decides what a failure means and backs off on its own."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from workers.errors import ConfigurationError


def worker_redis(redis_url: str, *, timeout_seconds: float, client_name: str) -> aioredis.Redis:
    try:
        return aioredis.Redis.from_url(
            redis_url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
            client_name=client_name,
        )
    except ValueError as exc:
        raise ConfigurationError(f"REDIS_URL is not usable: {exc}") from exc
