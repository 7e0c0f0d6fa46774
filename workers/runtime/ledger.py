"""The delivery ledger in Redis (protocol.ledger): was this attempt already finished, or its job cancelled?

A done key holds the highest attempt of the task whose outcome was published. A delivery is a
duplicate only when its attempt is at or below that number: a dead-letter replay or a sweeper's
republish sends the same task id with a higher attempt, and that one must run.

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


# Raise a done key's attempt, never lower it: a late duplicate of an older attempt finishing
# after a newer one must not reopen the newer one to its own redeliveries.
_MARK_DONE: Final[str] = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
"""


class LedgerState(StrEnum):
    CLEAR = "clear"  # Redis answered: this attempt is not done and the job is not cancelled
    UNKNOWN = "unknown"  # Redis could not tell: run it (at-least-once)
    DONE = "done"  # this attempt, or a later one, already published its outcome
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
        self._mark_done = self._redis.register_script(_MARK_DONE)
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
        done_attempt = _attempt(done)
        if done_attempt is not None and envelope.attempt <= done_attempt:
            return LedgerState.DONE
        if cancelled is not None:
            return LedgerState.CANCELLED
        return LedgerState.CLEAR

    async def mark_done(self, task_id: str, attempt: int) -> None:
        """Record that this attempt's outcome is published; a redelivery of it (or of an earlier
        attempt) is then acked unrun."""
        if self._skipping():
            return
        try:
            async with asyncio.timeout(self._timeout * 2):
                await self._mark_done(keys=[done_key(task_id)], args=[attempt, LEDGER_TTL_SECONDS])
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


def _attempt(raw: bytes | str | None) -> int | None:
    """The attempt a done key holds; None for no key, or a value that is not a number (then the
    task runs: a spare run is what at-least-once allows, a lost one is not)."""
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        log.warning("delivery ledger: done key holds %r, not an attempt number; ignoring it", raw)
        return None
