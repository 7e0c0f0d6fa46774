"""The delivery ledger in Redis (protocol.ledger): was this attempt already finished, or its job cancelled?

A done key holds the highest attempt of the task whose outcome was published. A delivery is a
duplicate only when its attempt is at or below that number: a dead-letter replay or a sweeper's
republish sends the same task id with a higher attempt, and that one must run.

The ledger narrows at-least-once delivery, it does not gate it: when Redis is slow or down the
worker logs a (rate-limited) warning and runs the task anyway, so every call here is bounded by
a short timeout and after a failure Redis is left alone for a moment instead of being asked
again for every delivery.

A worker runs up to its prefetch of deliveries at once, each asking the ledger twice. Concurrent
calls share round trips: while one is in flight, the calls that arrive wait and go together in
the next (plumbing.redis_batch), checks and marks alike: all marks as one script call, all checks
as one MGET, both in one pipeline when the batch holds both (the marks first, so a check sees
every mark of its batch). One round trip in flight for both kinds, rather than one per kind,
makes the batches larger: paired A/B (tests.bench.ab, 8 pairs) about 1.1x the jobs/s through
POST /jobs at 0.9x the CPU per job. A call made while nothing is in flight is sent at once, so a
lone delivery pays what it did without coalescing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, TypeVar

from redis.exceptions import NoScriptError, RedisError

from plumbing.burst_log import BurstLog
from plumbing.redis_batch import RoundTripBatcher
from protocol.envelope import TaskEnvelope
from protocol.ledger import LEDGER_TTL_SECONDS, cancelled_key, done_key
from workers.runtime.redis_client import worker_redis

log = logging.getLogger(__name__)

LEDGER_TIMEOUT_SECONDS: Final[float] = 0.5
# After a failure, skip Redis for this long: a dead Redis costs one timeout, not one per task.
LEDGER_BACKOFF_SECONDS: Final[float] = 2.0
WARNING_INTERVAL_SECONDS: Final[float] = 30.0

_REDIS_ERRORS: Final = (RedisError, OSError, TimeoutError)


# Raise each done key's attempt, never lower it: a late duplicate of an older attempt finishing
# after a newer one must not reopen the newer one to its own redeliveries. KEYS are done keys,
# ARGV[1] the TTL and ARGV[i + 1] the attempt for KEYS[i]; a key given twice keeps the higher.
_MARK_DONE: Final[str] = """
for i, key in ipairs(KEYS) do
  local current = tonumber(redis.call('GET', key) or '0') or 0
  if tonumber(ARGV[i + 1]) > current then
    redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
  end
end
"""

_Raw = bytes | str | None
_Result = TypeVar("_Result")


class LedgerState(StrEnum):
    CLEAR = "clear"  # Redis answered: this attempt is not done and the job is not cancelled
    UNKNOWN = "unknown"  # Redis could not tell: run it (at-least-once)
    DONE = "done"  # this attempt, or a later one, already published its outcome
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class _Check:
    done_key: str
    cancelled_key: str


@dataclass(frozen=True, slots=True)
class _Mark:
    done_key: str
    attempt: int


_Reply = tuple[_Raw, _Raw] | None  # a check's (done, cancelled) values; None for a mark


class _BackingOff(Exception):
    """A batch that came due while Redis is left alone after a failure: answered without asking it."""


class TaskLedger:
    def __init__(self, redis_url: str, *, timeout_seconds: float = LEDGER_TIMEOUT_SECONDS) -> None:
        self._redis = worker_redis(redis_url, timeout_seconds=timeout_seconds, client_name="baton-worker")
        self._mark_done = self._redis.register_script(_MARK_DONE)
        self._timeout = timeout_seconds
        self._calls: RoundTripBatcher[_Check | _Mark, _Reply] = RoundTripBatcher(self._send, "baton-ledger")
        self._skip_until = 0.0
        self._warnings = BurstLog(log, interval=WARNING_INTERVAL_SECONDS)
        self.errors = 0

    async def close(self) -> None:
        # Calls still waiting answer UNKNOWN (a ConnectionError is one of the Redis errors).
        await self._calls.close(ConnectionError("delivery ledger closed"))
        await self._redis.aclose()

    async def check(self, envelope: TaskEnvelope) -> LedgerState:
        """The task's done key and its job's cancelled key, read in one MGET with any concurrent checks."""
        if self._skipping():
            return LedgerState.UNKNOWN
        check = _Check(done_key(envelope.task_id), cancelled_key(envelope.tenant_id, envelope.global_task_id))
        try:
            reply = await self._calls.submit(check, timeout=self._timeout * 2)
        except _BackingOff:
            return LedgerState.UNKNOWN
        except _REDIS_ERRORS as exc:
            self._failed("check", exc)
            return LedgerState.UNKNOWN
        assert reply is not None  # a check's reply is its values
        done, cancelled = reply
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
            await self._calls.submit(_Mark(done_key(task_id), attempt), timeout=self._timeout * 2)
        except _BackingOff:
            return
        except _REDIS_ERRORS as exc:
            self._failed("mark_done", exc)

    async def _send(self, batch: list[_Check | _Mark]) -> list[_Reply]:
        """One round trip for the batch: its marks as one script call, then its checks as one MGET."""
        marks = [call for call in batch if isinstance(call, _Mark)]
        checks = [call for call in batch if isinstance(call, _Check)]
        keys = [key for check in checks for key in (check.done_key, check.cancelled_key)]
        if not marks:
            values = await self._round_trip(lambda: self._redis.mget(keys))
        elif not checks:
            await self._round_trip(lambda: self._mark(marks))
            values = []
        else:
            values = await self._round_trip(lambda: self._mark_and_read(marks, keys))
        replies = iter(zip(values[::2], values[1::2], strict=True))
        return [next(replies) if isinstance(call, _Check) else None for call in batch]

    def _mark(self, marks: Sequence[_Mark]) -> Awaitable[object]:
        """The script call (redis-py loads the script on NOSCRIPT)."""
        return self._mark_done(keys=[mark.done_key for mark in marks], args=_mark_args(marks))

    async def _mark_and_read(self, marks: Sequence[_Mark], keys: list[str]) -> list[_Raw]:
        """Marks and checks in one pipeline (by the script's SHA: a pipeline holding a redis-py Script
        would first ask SCRIPT EXISTS, one more round trip); after a NOSCRIPT (a Redis restarted or
        flushed since), the script call, which loads it, then the MGET."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._mark_done.sha, len(marks), *(mark.done_key for mark in marks), *_mark_args(marks))
                pipe.mget(keys)
                replies = await pipe.execute()
        except NoScriptError:
            await self._mark(marks)
            return list(await self._redis.mget(keys))
        return list(replies[1])

    async def _round_trip(self, command: Callable[[], Awaitable[_Result]]) -> _Result:
        """One command, bounded by the timeout. A failure starts the backoff at once, before its
        callers wake up: a batch that came due meanwhile is then answered without asking Redis."""
        if self._skipping():
            raise _BackingOff
        try:
            async with asyncio.timeout(self._timeout * 2):
                return await command()
        except _REDIS_ERRORS:
            self._skip_until = time.monotonic() + LEDGER_BACKOFF_SECONDS
            raise

    def _skipping(self) -> bool:
        return time.monotonic() < self._skip_until

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.errors += 1
        self._skip_until = time.monotonic() + LEDGER_BACKOFF_SECONDS
        self._warnings.warning(
            "failed",
            "delivery ledger %s failed (%s: %s); running tasks without it (at-least-once)",
            operation,
            type(exc).__name__,
            exc,
        )


def _mark_args(marks: Sequence[_Mark]) -> list[int]:
    return [LEDGER_TTL_SECONDS, *(mark.attempt for mark in marks)]


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
