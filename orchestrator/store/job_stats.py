"""Per-minute job counters in Redis, for GET /stats (throughput and latency) and GET /queues (rates).

Counted where the orchestrator sees a job made and a job end (never inside the registry's scripts),
in memory, and written to Redis once per `flush_interval` (one pipeline: an HINCRBY per counter with
the interval's sum, one EXPIRE per key), never holding the caller up. A counter is a figure for people:
losing the last interval's counts when a process dies (or Redis is down for a moment) costs less than
the 20 Redis commands a job cost when each fact was its own pipeline (9% of the orchestrator's CPU
under load). They live in Redis, so they survive an orchestrator restart and every replica adds to the
same ones.

    orchestrator:stats:{tenant}:{minute}    hash: created, completed, failed, timed_out, cancelled,
                                            lat:{i} (jobs whose created -> terminal time fell in bucket i)
    orchestrator:stats-all:{minute}         the same over every tenant (the admin's view)
    orchestrator:rates:{service}:{minute}   hash: published, completed, failed (every tenant's)
    orchestrator:rates:{service}:{tenant}:{minute}   the same, one tenant's

`minute` is whole minutes since the epoch. Latency is a histogram with fixed bounds
(`LATENCY_BOUNDS_MS`), so percentiles over any set of minutes and tenants are read by adding buckets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import redis.asyncio as aioredis
import redis.exceptions as redis_exc

from orchestrator.store import keys
from orchestrator.store.codec import text
from orchestrator.store.registry import redis_errors
from plumbing.burst_log import BurstLog
from protocol.events import JobStatus

log = logging.getLogger(__name__)

# Upper bounds (ms) of the latency buckets; one more bucket holds everything slower than the last.
LATENCY_BOUNDS_MS: Final[tuple[int, ...]] = (
    10,
    25,
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
    60_000,
    120_000,
    300_000,
    900_000,
    3_600_000,
)
STATS_TTL_SECONDS: Final[int] = 25 * 3600  # a day of minutes and an hour to spare
RATES_TTL_SECONDS: Final[int] = 180  # a rate reads the current minute and the one before
MAX_MINUTES: Final[int] = 1440
OUTCOMES: Final[tuple[str, ...]] = (
    JobStatus.COMPLETED.value,
    JobStatus.FAILED.value,
    JobStatus.TIMED_OUT.value,
    JobStatus.CANCELLED.value,
)
_COUNTS: Final[tuple[str, ...]] = ("created", *OUTCOMES)
_LATENCY_FIELDS: Final[tuple[str, ...]] = tuple(f"lat:{i}" for i in range(len(LATENCY_BOUNDS_MS) + 1))
_RATE_FIELDS: Final[tuple[str, ...]] = ("published", JobStatus.COMPLETED.value, JobStatus.FAILED.value)


def latency_bucket(milliseconds: float) -> int:
    """The index of the bucket a latency falls in (the last one: slower than every bound)."""
    for index, bound in enumerate(LATENCY_BOUNDS_MS):
        if milliseconds <= bound:
            return index
    return len(LATENCY_BOUNDS_MS)


def percentile(histogram: Sequence[int], fraction: float) -> float | None:
    """The latency (ms) below which `fraction` of the histogram's jobs fall, interpolated linearly in its
    bucket; the last bound for the overflow bucket; None for an empty histogram."""
    total = sum(histogram)
    if total == 0:
        return None
    wanted = fraction * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= wanted:
            if index >= len(LATENCY_BOUNDS_MS):
                return float(LATENCY_BOUNDS_MS[-1])
            lower = 0 if index == 0 else LATENCY_BOUNDS_MS[index - 1]
            upper = LATENCY_BOUNDS_MS[index]
            return lower + (upper - lower) * (wanted - seen) / count
        seen += count
    return float(LATENCY_BOUNDS_MS[-1])


@dataclass(frozen=True)
class MinuteStats:
    minute: int  # minutes since the epoch
    counts: dict[str, int]  # created and each outcome
    latency: list[int]  # one count per bucket, the overflow last

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.minute * 60, UTC)


@dataclass(frozen=True)
class ServiceRates:
    """Per second over about the last minute (see `JobStats.service_rates`)."""

    published_per_second: float = 0.0
    completed_per_second: float = 0.0
    failed_per_second: float = 0.0


DEFAULT_FLUSH_INTERVAL_SECONDS: Final[float] = 1.0


@dataclass
class _Counts:
    """Increments not yet written: key -> (its TTL, field -> how many)."""

    by_key: dict[str, tuple[int, Counter[str]]] = field(default_factory=dict)

    def add(self, increments: Sequence[tuple[str, str, int]]) -> None:
        for key, name, ttl in increments:
            entry = self.by_key.get(key)
            if entry is None:
                entry = self.by_key[key] = (ttl, Counter())
            entry[1][name] += 1


class JobStats:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        clock: Callable[[], float] = time.time,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL_SECONDS,
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._flush_interval = flush_interval
        self._counts = _Counts()
        self._timer: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._failures = BurstLog(log)

    def job_created(self, tenant_id: str, service: str) -> None:
        """Count a new job (published, or kept for the sweeper) in this minute's buckets."""
        minute = self._minute()
        self._send(
            [
                (keys.stats_minute(tenant_id, minute), "created", STATS_TTL_SECONDS),
                (keys.stats_all_minute(minute), "created", STATS_TTL_SECONDS),
                (keys.service_rates(service, None, minute), "published", RATES_TTL_SECONDS),
                (keys.service_rates(service, tenant_id, minute), "published", RATES_TTL_SECONDS),
            ],
        )

    def job_finished(self, tenant_id: str, service: str, status: str, created_at: str) -> None:
        """Count a job that reached a terminal status, and its time since creation, in this minute's buckets."""
        if status not in OUTCOMES:
            return
        now = self._clock()
        minute = int(now // 60)
        increments = [
            (keys.stats_minute(tenant_id, minute), status, STATS_TTL_SECONDS),
            (keys.stats_all_minute(minute), status, STATS_TTL_SECONDS),
        ]
        try:
            elapsed_ms = max(0.0, (now - datetime.fromisoformat(created_at).timestamp()) * 1000)
        except ValueError:
            elapsed_ms = None
        if elapsed_ms is not None:
            bucket = _LATENCY_FIELDS[latency_bucket(elapsed_ms)]
            increments += [
                (keys.stats_minute(tenant_id, minute), bucket, STATS_TTL_SECONDS),
                (keys.stats_all_minute(minute), bucket, STATS_TTL_SECONDS),
            ]
        if status in _RATE_FIELDS:
            increments += [
                (keys.service_rates(service, None, minute), status, RATES_TTL_SECONDS),
                (keys.service_rates(service, tenant_id, minute), status, RATES_TTL_SECONDS),
            ]
        self._send(increments)

    async def flush(self) -> None:
        """Write the counts held now and wait for every write under way (at shutdown, and in tests)."""
        self._start_write()
        while self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def minutes(self, tenant_id: str | None, count: int) -> list[MinuteStats]:
        """The last `count` minutes (the current one last) of a tenant, or of every tenant (None)."""
        count = max(1, min(count, MAX_MINUTES))
        last = self._minute()
        span = range(last - count + 1, last + 1)
        pipe = self._redis.pipeline(transaction=False)
        for minute in span:
            pipe.hgetall(keys.stats_all_minute(minute) if tenant_id is None else keys.stats_minute(tenant_id, minute))
        with redis_errors("reading job statistics"):
            replies = await pipe.execute()
        found = []
        for minute, raw in zip(span, replies, strict=True):
            values = {text(name): int(value) for name, value in raw.items()}
            found.append(
                MinuteStats(
                    minute=minute,
                    counts={name: values.get(name, 0) for name in _COUNTS},
                    latency=[values.get(name, 0) for name in _LATENCY_FIELDS],
                )
            )
        return found

    async def service_rates(self, services: Sequence[str], tenant_id: str | None) -> dict[str, ServiceRates]:
        """Per service, jobs published, completed and failed per second over the last minute: this minute's
        counts plus the share of the previous minute's still inside the window (a sliding estimate)."""
        now = self._clock()
        minute = int(now // 60)
        previous_share = 1.0 - (now % 60) / 60
        pipe = self._redis.pipeline(transaction=False)
        for service in services:
            for at in (minute, minute - 1):
                pipe.hmget(keys.service_rates(service, tenant_id, at), list(_RATE_FIELDS))
        with redis_errors("reading service rates"):
            replies = await pipe.execute()
        rates: dict[str, ServiceRates] = {}
        for n, service in enumerate(services):
            current, previous = replies[2 * n], replies[2 * n + 1]
            per_second = [
                (int(now_count or 0) + int(before or 0) * previous_share) / 60
                for now_count, before in zip(current, previous, strict=True)
            ]
            rates[service] = ServiceRates(*(round(value, 4) for value in per_second))
        return rates

    def _minute(self) -> int:
        return int(self._clock() // 60)

    def _send(self, increments: list[tuple[str, str, int]]) -> None:
        self._counts.add(increments)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._flush_interval, self._start_write)

    def _start_write(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        counts, self._counts = self._counts, _Counts()
        if not counts.by_key:
            return
        task = asyncio.create_task(self._write(counts), name="baton-job-stats")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, counts: _Counts) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, (ttl, fields) in counts.by_key.items():
                    for name, amount in fields.items():
                        pipe.hincrby(key, name, amount)
                    pipe.expire(key, ttl)
                await pipe.execute()
        except (redis_exc.RedisError, OSError) as exc:  # figures lost, never an event: said once per burst
            self._failures.warning("write", "job statistics not counted: %s", exc)
