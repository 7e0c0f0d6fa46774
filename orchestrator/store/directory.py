"""ServiceDirectory: which service serves a job type, and which worker processes are alive.

Workers announce their job types in heartbeats, with the result-cache TTL a handler declares;
the maps live in Redis so every replica routes (and caches) alike, and the built-in types are
known in advance. A worker counts as live until
`heartbeat_grace_intervals` of its own heartbeat intervals pass without one, measured on
this side's clock (worker clocks may drift).

Anything that can publish on `baton.events` can announce, so what announcements can make is
bounded: at most `max_services` announced services, `max_job_types` routes and
`max_workers` worker entries per service (past a bound, a new one is refused and logged), and
an announced service no worker was heard from for `service_ttl_seconds` is forgotten with its
routes. Built-in services and their types are always known.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import redis.asyncio as aioredis

from orchestrator.store import keys
from orchestrator.store.codec import text
from orchestrator.store.registry import redis_errors
from plumbing.burst_log import BurstLog
from plumbing.single_flight import SingleFlight
from protocol.control import BreakerStatus, CircuitBreakerReport, WorkerHeartbeat
from protocol.services import BUILTIN_CACHE_TTLS, BUILTIN_JOB_TYPES, BUILTIN_SERVICES

log = logging.getLogger(__name__)

# POST /jobs asks for a route on every request; a second of staleness across replicas is fine
# because a miss is always re-read from Redis.
DEFAULT_CACHE_SECONDS: Final[float] = 1.0
# Worker entries of a service nobody has heard from in a day disappear on their own.
_WORKERS_TTL_SECONDS: Final[int] = 24 * 3600
# A service scaled to zero keeps its job types (its jobs wait in its queue) for this long.
DEFAULT_SERVICE_TTL_SECONDS: Final[float] = 24 * 3600
DEFAULT_MAX_SERVICES: Final[int] = 1000
DEFAULT_MAX_JOB_TYPES: Final[int] = 10_000
DEFAULT_MAX_WORKERS: Final[int] = 1000  # per service
# How often a replica looks for services to forget.
DEFAULT_EXPIRE_INTERVAL_SECONDS: Final[float] = 30.0
# A heartbeat's own interval decides when its worker is stale; a claimed interval longer than
# this would keep a worker (and a forged one) live for days.
MAX_HEARTBEAT_INTERVAL_SECONDS: Final[float] = 60.0
_REFUSAL_LOG_INTERVAL_SECONDS: Final[float] = 10.0

# Remove worker entries only if unchanged since read: a heartbeat landing meanwhile is kept.
# KEYS: workers hash; ARGV: worker_id, value, worker_id, value, ...
_PRUNE_UNCHANGED: Final[str] = """
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return removed
"""

# KEYS: workers hash, routes hash, announced services set, services' last-seen sorted set, cache defaults hash
# ARGV: service, worker_id, entry ('' when stopping), now, builtin ('1'/'0'), max services,
#       max job types, max workers, workers ttl, then per job type: type, cache ttl ('' for none)
# Returns {1 if recorded else 0, job types refused}. A type's cache default follows the service its route names.
_RECORD: Final[str] = """
local service = ARGV[1]
local builtin = ARGV[5] == '1'
if not builtin and redis.call('SISMEMBER', KEYS[3], service) == 0
    and redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[6]) then
  return {0, 0}
end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[2])
else
  if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[8]) then
    return {0, 0}
  end
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[9])
end
if not builtin then
  redis.call('SADD', KEYS[3], service)
  redis.call('ZADD', KEYS[4], ARGV[4], service)
end
local routes = redis.call('HLEN', KEYS[2])
local refused = 0
for i = 10, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[2], ARGV[i])
  if current ~= service then
    if not current and routes >= tonumber(ARGV[7]) then
      refused = refused + 1
    else
      redis.call('HSET', KEYS[2], ARGV[i], service)
      if not current then routes = routes + 1 end
      current = service
    end
  end
  if current == service then
    if ARGV[i + 1] == '' then
      redis.call('HDEL', KEYS[5], ARGV[i])
    else
      redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1])
    end
  end
end
return {1, refused}
"""

# A breaker report is kept only for a worker the directory knows, so the workers' bound is its bound too.
# KEYS: workers hash, breakers hash; ARGV: worker_id, entry, ttl. Returns 1 if recorded.
_RECORD_BREAKERS: Final[str] = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""

# KEYS: announced services set, services' last-seen sorted set, routes hash, cache defaults hash; ARGV: cutoff, now.
# Forgets the services last seen before the cutoff with their routes; returns their names.
_EXPIRE: Final[str] = """
for _, service in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  -- announced before last-seen times were kept: the clock starts now
  redis.call('ZADD', KEYS[2], 'NX', ARGV[2], service)
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
if #expired == 0 then return expired end
local gone = {}
for _, service in ipairs(expired) do
  gone[service] = true
  redis.call('ZREM', KEYS[2], service)
  redis.call('SREM', KEYS[1], service)
end
local routes = redis.call('HGETALL', KEYS[3])
for i = 1, #routes, 2 do
  if gone[routes[i + 1]] then
    redis.call('HDEL', KEYS[3], routes[i])
    redis.call('HDEL', KEYS[4], routes[i])
  end
end
return expired
"""


@dataclass(frozen=True)
class LiveService:
    """A service's live worker processes: how many, and the circuit breakers they last reported."""

    workers: int = 0
    breakers: list[BreakerStatus] = field(default_factory=list)


class ServiceDirectory:
    def __init__(
        self,
        redis: aioredis.Redis,
        heartbeat_grace_intervals: float = 3,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        *,
        service_ttl_seconds: float = DEFAULT_SERVICE_TTL_SECONDS,
        max_services: int = DEFAULT_MAX_SERVICES,
        max_job_types: int = DEFAULT_MAX_JOB_TYPES,
        max_workers: int = DEFAULT_MAX_WORKERS,
        expire_interval_seconds: float = DEFAULT_EXPIRE_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._grace = heartbeat_grace_intervals
        self._cache_seconds = cache_seconds
        self._service_ttl = service_ttl_seconds
        self._max_services = max_services
        self._max_job_types = max_job_types
        self._max_workers = max_workers
        self._expire_interval = expire_interval_seconds
        self._clock = clock  # wall clock shared by replicas: seen-at times are compared across them
        self._routes: dict[str, str] = {}
        self._cache_ttls: dict[str, int] = {}
        self._routes_read_at = float("-inf")
        self._routes_changed = 0  # counts changes made here, so a read that overlapped one is not kept as fresh
        self._routes_read: SingleFlight[None, None] = SingleFlight()
        self._expired_at = float("-inf")
        self._refusal_log = BurstLog(log, interval=_REFUSAL_LOG_INTERVAL_SECONDS)
        self._prune = redis.register_script(_PRUNE_UNCHANGED)
        self._record = redis.register_script(_RECORD)
        self._expire = redis.register_script(_EXPIRE)
        self._record_breakers = redis.register_script(_RECORD_BREAKERS)

    async def record_heartbeat(self, hb: WorkerHeartbeat) -> bool:
        """Record the worker and its job types; False when a bound refused the worker or its service."""
        now = self._clock()
        entry = "" if hb.stopping else json.dumps({"seen_at": now, "heartbeat": hb.model_dump(mode="json")})
        # Built-in types stay with their built-in service (and cache default) whatever a worker claims.
        announced = [t for t in dict.fromkeys(hb.job_types) if t not in BUILTIN_JOB_TYPES]
        cache_ttls = [(t, str(hb.cache_ttls.get(t, ""))) for t in announced]
        args = [
            hb.service,
            hb.worker_id,
            entry,
            now,
            "1" if hb.service in BUILTIN_SERVICES else "0",
            self._max_services,
            self._max_job_types,
            self._max_workers,
            _WORKERS_TTL_SECONDS,
            *(value for pair in cache_ttls for value in pair),
        ]
        with redis_errors("recording a heartbeat"):
            recorded, refused = await self._record(
                keys=[
                    keys.workers(hb.service),
                    keys.ROUTES,
                    keys.ANNOUNCED_SERVICES,
                    keys.SERVICES_SEEN,
                    keys.CACHE_DEFAULTS,
                ],
                args=args,
            )
        if not recorded or refused:
            self._note_refusal(hb, recorded=bool(recorded), types=int(refused))
        if not recorded:
            return False
        if any(self._routes.get(t) != hb.service or self._cache_ttls.get(t) != hb.cache_ttls.get(t) for t in announced):
            self._routes_outdated()
        return True

    async def record_breakers(self, report: CircuitBreakerReport) -> bool:
        """Keep a worker's breaker report; False when its worker is unknown (not live, or refused)."""
        entry = json.dumps({"seen_at": self._clock(), "report": report.model_dump(mode="json")})
        with redis_errors("recording circuit breakers"):
            recorded = await self._record_breakers(
                keys=[keys.workers(report.service), keys.breakers(report.service)],
                args=[report.worker_id, entry, _WORKERS_TTL_SECONDS],
            )
        return bool(recorded)

    def _note_refusal(self, hb: WorkerHeartbeat, *, recorded: bool, types: int) -> None:
        # A flood of forged heartbeats must not flood the log too.
        what = f"{types} job types of it" if recorded else "it"
        self._refusal_log.warning(
            "refusal",
            "refused a heartbeat announcement of worker %r of service %r (%s): at most %d announced services, "
            "%d job types and %d workers per service",
            hb.worker_id,
            hb.service,
            what,
            self._max_services,
            self._max_job_types,
            self._max_workers,
        )

    async def service_for(self, job_type: str) -> str | None:
        builtin = BUILTIN_JOB_TYPES.get(job_type)
        if builtin is not None:
            return builtin
        service = (await self._announced_routes()).get(job_type)
        if service is not None:
            return service
        # A type announced to another replica within the cache window: ask Redis itself.
        with redis_errors("resolving a job type"):
            raw = await self._redis.hget(keys.ROUTES, job_type)
        return text(raw) if raw is not None else None

    async def cache_ttl_for(self, job_type: str) -> int | None:
        """The result-cache TTL a job type has by default (its worker's declaration); None: off."""
        if job_type in BUILTIN_JOB_TYPES:
            return BUILTIN_CACHE_TTLS.get(job_type)
        await self._announced_routes()
        return self._cache_ttls.get(job_type)

    async def known_job_types(self) -> dict[str, str]:
        return {**await self._announced_routes(), **BUILTIN_JOB_TYPES}

    async def services(self) -> list[str]:
        await self._expire_if_due()
        with redis_errors("listing services"):
            announced = {text(s) for s in await self._redis.smembers(keys.ANNOUNCED_SERVICES)}
        return sorted(announced | set(BUILTIN_SERVICES) | set((await self._announced_routes()).values()))

    async def live_workers(self, service: str) -> list[WorkerHeartbeat]:
        """Workers of the service with a recent heartbeat; stale entries are removed."""
        workers_key = keys.workers(service)
        with redis_errors("reading worker heartbeats"):
            raw = await self._redis.hgetall(workers_key)
        live, stale = self._sort_heartbeats(service, raw)
        if stale:
            with redis_errors("pruning stale workers"):
                await self._prune(keys=[workers_key], args=stale)
        return sorted(live, key=lambda hb: hb.worker_id)

    async def live_services(self, services: Sequence[str]) -> dict[str, LiveService]:
        """Each service's live workers and their breakers, in one round trip however many services were
        announced (forged announcements included). Stale worker entries are left to `live_workers` to
        prune; reports of workers no longer live are removed here."""
        pipe = self._redis.pipeline(transaction=False)
        for service in services:
            pipe.hgetall(keys.workers(service))
            pipe.hgetall(keys.breakers(service))
        with redis_errors("reading worker heartbeats"):
            replies = await pipe.execute()
        found: dict[str, LiveService] = {}
        gone: dict[str, list[bytes | str]] = {}
        for n, service in enumerate(services):
            live = {hb.worker_id for hb in self._sort_heartbeats(service, replies[2 * n])[0]}
            breakers: list[BreakerStatus] = []
            for worker_id, value in replies[2 * n + 1].items():
                if text(worker_id) in live and (report := _breaker_report(value)) is not None:
                    breakers.extend(report.breakers)
                else:
                    gone.setdefault(service, []).append(worker_id)
            found[service] = LiveService(len(live), breakers)
        if gone:
            pipe = self._redis.pipeline(transaction=False)
            for service, worker_ids in gone.items():
                pipe.hdel(keys.breakers(service), *worker_ids)
            with redis_errors("pruning breaker reports"):
                await pipe.execute()
        return found

    def _sort_heartbeats(
        self, service: str, raw: Mapping[bytes | str, bytes | str]
    ) -> tuple[list[WorkerHeartbeat], list[bytes | str]]:
        """The live heartbeats of a service's workers hash, and the stale entries (field, value, ...)."""
        now = self._clock()
        live: list[WorkerHeartbeat] = []
        stale: list[bytes | str] = []
        for worker_id, value in raw.items():
            try:
                entry = json.loads(value)
                hb = WorkerHeartbeat.model_validate(entry["heartbeat"])
                seen_at = float(entry["seen_at"])
            except (ValueError, KeyError, TypeError):
                log.warning("dropping an unreadable heartbeat entry of %s", service)
                stale.extend((worker_id, value))
                continue
            interval = min(hb.interval_seconds, MAX_HEARTBEAT_INTERVAL_SECONDS)
            if hb.stopping or now - seen_at > interval * self._grace:
                stale.extend((worker_id, value))
            else:
                live.append(hb)
        return live, stale

    async def expire_services(self) -> list[str]:
        """Forget the announced services no worker was heard from for the service TTL, with their routes."""
        now = self._clock()
        with redis_errors("expiring services"):
            raw = await self._expire(
                keys=[keys.ANNOUNCED_SERVICES, keys.SERVICES_SEEN, keys.ROUTES, keys.CACHE_DEFAULTS],
                args=[now - self._service_ttl, now],
            )
            expired = sorted(text(s) for s in raw)
            if expired:
                await self._redis.delete(*(keys.workers(s) for s in expired), *(keys.breakers(s) for s in expired))
        if expired:
            shown = ", ".join(expired[:20])
            log.info("forgot %d services unheard of for %.0f s: %s", len(expired), self._service_ttl, shown)
            self._routes_outdated()
        return expired

    async def _expire_if_due(self) -> None:
        if time.monotonic() - self._expired_at >= self._expire_interval:
            self._expired_at = time.monotonic()
            await self.expire_services()

    async def _announced_routes(self) -> dict[str, str]:
        if time.monotonic() - self._routes_read_at > self._cache_seconds:
            # Every request finds the copy stale at once: one read serves them all.
            await self._routes_read.run(None, self._read_routes)
        return self._routes

    async def _read_routes(self) -> None:
        changed = self._routes_changed
        await self._expire_if_due()
        with redis_errors("reading routes"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(keys.ROUTES)
                pipe.hgetall(keys.CACHE_DEFAULTS)
                raw, ttls = await pipe.execute()
        self._routes = {text(k): text(v) for k, v in raw.items()}
        self._cache_ttls = {text(k): int(v) for k, v in ttls.items()}
        if changed == self._routes_changed:  # else read again at the next call: this read may predate the change
            self._routes_read_at = time.monotonic()

    def _routes_outdated(self) -> None:
        """The routes changed here (a heartbeat, an expiry): the next lookup reads them, not a read under way."""
        self._routes_changed += 1
        self._routes_read_at = float("-inf")
        self._routes_read.forget(None)


def _breaker_report(value: bytes | str) -> CircuitBreakerReport | None:
    try:
        return CircuitBreakerReport.model_validate(json.loads(value)["report"])
    except (ValueError, KeyError, TypeError):
        log.warning("dropping an unreadable circuit breaker report")
        return None
