"""The Redis side of a service's flow limits (protocol.flow_limits): one script call per start.

Rate: GCRA with no burst. Starts are spaced one interval (period / N) apart on the Redis clock, so
any window of one period holds at most N + 1 starts however many processes ask. A grant reserves
the next free start and says how long to wait for it: a task over the rate asks once and sleeps,
instead of polling with every other waiter.

Concurrency: a sorted set of leases scored by their expiry. A process renews its leases every
RENEW_SECONDS; a killed process's leases expire within LEASE_SECONDS and the next acquire drops
them. A task holds its lease while it sleeps for its rate slot, so leases freeing up never turn
reserved slots into a burst.

Concurrent calls of one process share round trips (plumbing.redis_batch): the acquires that arrive
while one is in flight go together in the next script call, in order; releases likewise in one ZREM.

Waits are counted by the acquire that grants (rate: the wait it reserved; concurrency: how long the
task had asked), in the stats hash the orchestrator reads.

When Redis does not answer, tasks run unlimited (logged, and Redis is left alone for a moment):
like the delivery ledger, a limit narrows load, it must not stop a service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from redis.exceptions import RedisError

from plumbing.burst_log import BurstLog
from plumbing.redis_batch import RoundTripBatcher
from protocol.flow_limits import (
    FLOW_LIMITS_TTL_SECONDS,
    LIMITED_SERVICES_KEY,
    MAX_CONCURRENCY_FIELD,
    RATE_LIMIT_FIELD,
    LimitKind,
    leases_key,
    rate_key,
    stats_key,
    wait_seconds_field,
    waits_field,
)
from workers.rate_limit import RateLimit
from workers.runtime.redis_client import worker_redis

log = logging.getLogger(__name__)

LEASE_SECONDS: Final[float] = 6.0
RENEW_SECONDS: Final[float] = 2.0
# The configured limits are written again this often, so the stats hash outlives no running worker.
CONFIG_REFRESH_SECONDS: Final[float] = 3600.0
REDIS_TIMEOUT_SECONDS: Final[float] = 0.5
BACKOFF_SECONDS: Final[float] = 2.0
_MICROS: Final[int] = 1_000_000
_REDIS_ERRORS: Final = (RedisError, OSError, TimeoutError)

# KEYS: leases, rate, stats. ARGV: max concurrency (0: none), lease us, rate interval us (0: none),
# stats TTL s, the four counter fields (rate waits, rate seconds, concurrency waits, concurrency
# seconds), then per request, in order: lease id ('' without a concurrency limit), the longest rate
# wait it may reserve (us), the seconds it has waited for a lease already. Returns per request
# {verdict, microseconds}: {0, wait before starting} granted; {1, until the soonest lease expires}
# concurrency full; {2, wait} its rate slot is too far (nothing reserved).
# Numbers go back to Redis formatted with %.0f: Lua would print 1.7e+15 and lose the microseconds.
_ACQUIRE: Final[str] = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit, lease_us, interval = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local leased, counted = false, false
if limit > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now)) end
local replies = {}
for i = 9, #ARGV, 3 do
  local lease, waited = ARGV[i], tonumber(ARGV[i + 2])
  local verdict, wait = 0, 0
  if lease ~= '' and redis.call('ZCARD', KEYS[1]) >= limit then
    local soonest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    verdict, wait = 1, tonumber(soonest[2]) - now
  elseif interval > 0 then
    local tat = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
    if tat > now then wait = tat - now else tat = now end
    if wait > tonumber(ARGV[i + 1]) then
      verdict = 2
    else
      local ttl_ms = math.ceil((wait + interval) / 1000) + 1000
      redis.call('SET', KEYS[2], string.format('%.0f', tat + interval), 'PX', ttl_ms)
    end
  end
  if verdict == 0 then
    if lease ~= '' then
      redis.call('ZADD', KEYS[1], string.format('%.0f', now + wait + lease_us), lease)
      leased = true
    end
    if wait > 0 then
      redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
      redis.call('HINCRBYFLOAT', KEYS[3], ARGV[6], wait / 1000000)
      counted = true
    end
    if waited > 0 then
      redis.call('HINCRBY', KEYS[3], ARGV[7], 1)
      redis.call('HINCRBYFLOAT', KEYS[3], ARGV[8], waited)
      counted = true
    end
  end
  replies[#replies + 1] = verdict
  replies[#replies + 1] = string.format('%.0f', wait)
end
if leased then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
if counted then redis.call('EXPIRE', KEYS[3], ARGV[4]) end
return replies
"""

# KEYS: leases. ARGV: lease us, TTL s, lease ids. Only raises expiries (GT: a lease reserved for a
# later start keeps its own) and only of leases still there (XX: a release racing the renewal wins).
_RENEW: Final[str] = """
local t = redis.call('TIME')
local expiry = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1]))
for i = 3, #ARGV do redis.call('ZADD', KEYS[1], 'XX', 'GT', expiry, ARGV[i]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
"""


_Request = tuple[str, int, str]  # lease id, longest rate wait (us), seconds waited for a lease


class Verdict(IntEnum):
    GRANTED = 0
    CONCURRENCY_FULL = 1
    RATE_TOO_FAR = 2


@dataclass(frozen=True)
class Answer:
    verdict: Verdict
    seconds: float  # GRANTED: wait this long, then start; CONCURRENCY_FULL: the soonest lease expiry


@dataclass(frozen=True)
class FlowLimits:
    """A service's limits in this process: the Worker's, or the settings' overrides."""

    rate: RateLimit | None = None
    max_concurrency: int | None = None

    def __bool__(self) -> bool:
        return self.rate is not None or self.max_concurrency is not None

    def __str__(self) -> str:
        parts = [f"rate {self.rate}"] if self.rate else []
        if self.max_concurrency:
            parts.append(f"max concurrency {self.max_concurrency}")
        return ", ".join(parts) or "none"


class FlowLimitStore:
    def __init__(
        self,
        redis_url: str,
        service: str,
        limits: FlowLimits,
        *,
        lease_seconds: float = LEASE_SECONDS,
        renew_seconds: float = RENEW_SECONDS,
    ) -> None:
        self._redis = worker_redis(redis_url, timeout_seconds=REDIS_TIMEOUT_SECONDS, client_name="baton-worker-limits")
        self.service = service
        self.limits = limits
        self._keys = [leases_key(service), rate_key(service), stats_key(service)]
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._lease_us = round(lease_seconds * _MICROS)
        self._renew_seconds = renew_seconds
        self._acquires: RoundTripBatcher[_Request, tuple[int, int]] = RoundTripBatcher(
            self._acquire_batch, f"baton-flow-acquires:{service}"
        )
        self._releases: RoundTripBatcher[str, None] = RoundTripBatcher(
            self._release_batch, f"baton-flow-releases:{service}"
        )
        self._held: set[str] = set()
        self._skip_until = 0.0
        self._warnings = BurstLog(log, interval=30.0)
        self._keeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._publish_limits()
        self._keeper = asyncio.create_task(self._keep_leases(), name=f"baton-flow-leases:{self.service}")

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        await self._acquires.close(ConnectionError("flow limits closed"))
        await self._releases.close(ConnectionError("flow limits closed"))
        await self._redis.aclose()

    async def acquire(self, lease_id: str | None, *, max_wait: float, waited: float) -> Answer | None:
        """One round trip: a lease (when there is a concurrency limit) and a rate slot no further than
        `max_wait` seconds away; `waited` is how long this task has asked already. None: Redis did not
        answer (run unlimited)."""
        request = (lease_id or "", round(max(0.0, max_wait) * _MICROS), f"{waited:.6f}")
        reply = await self._call("acquire", self._acquires.submit, request, timeout=REDIS_TIMEOUT_SECONDS * 2)
        if reply is None:
            return None
        answer = Answer(Verdict(reply[0]), reply[1] / _MICROS)
        if answer.verdict is Verdict.GRANTED and lease_id:
            self._held.add(lease_id)
        return answer

    def abandon(self, lease_id: str | None) -> None:
        """Stop renewing a lease that cannot be released now: it expires within LEASE_SECONDS."""
        self._held.discard(lease_id or "")

    async def release(self, lease_id: str) -> None:
        self.abandon(lease_id)
        await self._call("release", self._releases.submit, lease_id, timeout=REDIS_TIMEOUT_SECONDS * 2)

    async def _acquire_batch(self, requests: list[_Request]) -> list[tuple[int, int]]:
        rate, concurrency = self.limits.rate, self.limits.max_concurrency
        args = [
            concurrency or 0,
            self._lease_us,
            round(rate.interval_seconds * _MICROS) if rate else 0,
            FLOW_LIMITS_TTL_SECONDS,
            waits_field(LimitKind.RATE),
            wait_seconds_field(LimitKind.RATE),
            waits_field(LimitKind.CONCURRENCY),
            wait_seconds_field(LimitKind.CONCURRENCY),
            *(arg for request in requests for arg in request),
        ]
        reply = await self._acquire(keys=self._keys, args=args)
        return [(int(reply[i]), int(reply[i + 1])) for i in range(0, len(reply), 2)]

    async def _release_batch(self, lease_ids: list[str]) -> list[None]:
        await self._redis.zrem(self._keys[0], *lease_ids)
        return [None] * len(lease_ids)

    async def record_abandoned_wait(self, seconds: float) -> None:
        """A task that waited for a lease and then did not start (cancelled, stopping, past its deadline)."""
        stats = self._keys[2]
        pipe = self._redis.pipeline(transaction=False)
        pipe.hincrby(stats, waits_field(LimitKind.CONCURRENCY), 1)
        pipe.hincrbyfloat(stats, wait_seconds_field(LimitKind.CONCURRENCY), seconds)
        await self._call("record_wait", pipe.execute)

    async def _publish_limits(self) -> None:
        """What /health shows as the service's limits, and the services the orchestrator looks at."""
        rate, concurrency = self.limits.rate, self.limits.max_concurrency
        stats = self._keys[2]
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(stats, mapping={RATE_LIMIT_FIELD: str(rate or ""), MAX_CONCURRENCY_FIELD: concurrency or ""})
        pipe.expire(stats, FLOW_LIMITS_TTL_SECONDS)
        pipe.sadd(LIMITED_SERVICES_KEY, self.service)
        await self._call("publish_limits", pipe.execute)

    async def _keep_leases(self) -> None:
        published_at = time.monotonic()
        while True:
            await asyncio.sleep(self._renew_seconds)
            if self._held:
                args = [self._lease_us, FLOW_LIMITS_TTL_SECONDS, *self._held]
                await self._call("renew", self._renew, keys=self._keys[:1], args=args)
            if time.monotonic() - published_at >= CONFIG_REFRESH_SECONDS:
                published_at = time.monotonic()
                await self._publish_limits()

    async def _call(self, operation: str, command: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """The command's reply, or None when Redis failed (or is being left alone after a failure)."""
        if time.monotonic() < self._skip_until:
            return None
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS * 2):
                return await command(*args, **kwargs)
        except _REDIS_ERRORS as exc:
            self._skip_until = time.monotonic() + BACKOFF_SECONDS
            self._warnings.warning(
                "failed",
                "flow limits of %s: %s failed (%s: %s); tasks run without the limits meanwhile",
                self.service,
                operation,
                type(exc).__name__,
                exc,
            )
            return None
