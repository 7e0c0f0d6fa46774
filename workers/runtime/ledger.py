"""The delivery ledger in Redis (protocol.ledger): was this task already finished, or its job cancelled?

The ledger narrows at-least-once delivery, it does not gate it: when Redis is slow or down the
worker logs a (rate-limited) warning and runs the task anyway, so every call here is bounded by
a short timeout and after a failure Redis is left alone for a moment instead of being asked
again for every delivery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from enum import StrEnum
from typing import Final

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from protocol.envelope import TaskEnvelope
from protocol.ledger import LEDGER_TTL_SECONDS, cancelled_key, done_key
from workers.errors import ConfigurationError

log = logging.getLogger(__name__)

LEDGER_TIMEOUT_SECONDS: Final[float] = 0.5
# After a failure, skip Redis for this long: a dead Redis costs one timeout, not one per task.
LEDGER_BACKOFF_SECONDS: Final[float] = 2.0
WARNING_INTERVAL_SECONDS: Final[float] = 30.0

_REDIS_ERRORS: Final = (RedisError, OSError, TimeoutError)


class LedgerState(StrEnum):
    UNKNOWN = "unknown"  # neither key, or Redis could not tell: run it
    DONE = "done"
    CANCELLED = "cancelled"


class TaskLedger:
    def __init__(self, redis_url: str, *, timeout_seconds: float = LEDGER_TIMEOUT_SECONDS) -> None:
        try:
            self._redis: aioredis.Redis = aioredis.Redis.from_url(
                redis_url,
                socket_timeout=timeout_seconds,
                socket_connect_timeout=timeout_seconds,
                retry=Retry(NoBackoff(), 0),
                client_name="baton-worker",
            )
        except ValueError as exc:
            raise ConfigurationError(f"REDIS_URL is not usable: {exc}") from exc
        self._timeout = timeout_seconds
        self._skip_until = 0.0
        self._last_warning = 0.0
        self._suppressed = 0
        self.errors = 0

    async def close(self) -> None:
        await self._redis.aclose()

    async def check(self, envelope: TaskEnvelope) -> LedgerState:
        """One MGET of the task's done key and its job's cancelled key."""
        if self._skipping():
            return LedgerState.UNKNOWN
        keys = (done_key(envelope.task_id), cancelled_key(envelope.tenant_id, envelope.global_task_id))
        try:
            async with asyncio.timeout(self._timeout * 2):
                done, cancelled = await self._redis.mget(keys)
        except _REDIS_ERRORS as exc:
            self._failed("check", exc)
            return LedgerState.UNKNOWN
        if done is not None:
            return LedgerState.DONE
        if cancelled is not None:
            return LedgerState.CANCELLED
        return LedgerState.UNKNOWN

    async def mark_done(self, task_id: str) -> None:
        """Record that the task's outcome is published; a redelivery of it is then acked unrun."""
        if self._skipping():
            return
        try:
            async with asyncio.timeout(self._timeout * 2):
                await self._redis.set(done_key(task_id), b"1", ex=LEDGER_TTL_SECONDS)
        except _REDIS_ERRORS as exc:
            self._failed("mark_done", exc)

    def _skipping(self) -> bool:
        return time.monotonic() < self._skip_until

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.errors += 1
        now = time.monotonic()
        self._skip_until = now + LEDGER_BACKOFF_SECONDS
        if now - self._last_warning < WARNING_INTERVAL_SECONDS:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} similar failure(s) not logged)" if self._suppressed else ""
        log.warning(
            "delivery ledger %s failed (%s: %s); running tasks without it (at-least-once)%s",
            operation,
            type(exc).__name__,
            exc,
            more,
        )
        self._last_warning = now
        self._suppressed = 0
