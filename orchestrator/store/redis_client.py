"""The orchestrator's Redis client: one pool for the registry, the directory and the update bus."""

from __future__ import annotations

from typing import Final

import redis.asyncio as aioredis
import redis.exceptions as redis_exc
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

REDIS_HEALTH_CHECK_SECONDS: Final[int] = 15
REDIS_SOCKET_TIMEOUT_SECONDS: Final[float] = 5.0
REDIS_MAX_CONNECTIONS: Final[int] = 256


def make_redis(url: str) -> aioredis.Redis:
    """A client that survives short Redis blips: commands are retried on connection errors
    with a short backoff, and idle connections are checked before use. The pool blocks when
    all connections are busy (a burst of requests waits) instead of failing with an error.
    Nothing connects until the first command."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        health_check_interval=REDIS_HEALTH_CHECK_SECONDS,
        socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        retry_on_error=[redis_exc.ConnectionError, redis_exc.TimeoutError],
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() disconnects it
