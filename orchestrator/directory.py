"""ServiceDirectory: which service serves a job type, and which worker processes are alive.

Workers announce their job types in heartbeats; the map lives in Redis so every replica
routes alike, and the built-in types are known in advance. A worker counts as live until
`heartbeat_grace_intervals` of its own heartbeat intervals pass without one, measured on
this side's clock (worker clocks may drift).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Final

import redis.asyncio as aioredis

from orchestrator import keys
from orchestrator.registry import redis_errors
from orchestrator.registry_codec import text
from protocol.control import WorkerHeartbeat
from protocol.services import BUILTIN_JOB_TYPES, BUILTIN_SERVICES

log = logging.getLogger(__name__)

# POST /jobs asks for a route on every request; a second of staleness across replicas is fine
# because a miss is always re-read from Redis.
DEFAULT_CACHE_SECONDS: Final[float] = 1.0
# Worker entries of a service nobody has heard from in a day disappear on their own.
_WORKERS_TTL_SECONDS: Final[int] = 24 * 3600
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


class ServiceDirectory:
    def __init__(
        self,
        redis: aioredis.Redis,
        heartbeat_grace_intervals: float = 3,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
    ) -> None:
        self._redis = redis
        self._grace = heartbeat_grace_intervals
        self._cache_seconds = cache_seconds
        self._routes: dict[str, str] = {}
        self._routes_read_at = float("-inf")
        self._prune = redis.register_script(_PRUNE_UNCHANGED)

    async def record_heartbeat(self, hb: WorkerHeartbeat) -> None:
        workers_key = keys.workers(hb.service)
        with redis_errors("recording a heartbeat"):
            async with self._redis.pipeline(transaction=True) as pipe:
                if hb.stopping:
                    pipe.hdel(workers_key, hb.worker_id)
                else:
                    entry = {"seen_at": time.time(), "heartbeat": hb.model_dump(mode="json")}
                    pipe.hset(workers_key, hb.worker_id, json.dumps(entry))
                    pipe.expire(workers_key, _WORKERS_TTL_SECONDS)
                # Built-in types stay with their built-in service whatever a worker claims.
                announced = {t: hb.service for t in hb.job_types if t not in BUILTIN_JOB_TYPES}
                if announced:
                    pipe.hset(keys.ROUTES, mapping=announced)  # type: ignore[arg-type]
                pipe.sadd(keys.ANNOUNCED_SERVICES, hb.service)
                await pipe.execute()
        if any(self._routes.get(t) != s for t, s in announced.items()):
            self._routes_read_at = float("-inf")

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

    async def known_job_types(self) -> dict[str, str]:
        return {**await self._announced_routes(), **BUILTIN_JOB_TYPES}

    async def services(self) -> list[str]:
        with redis_errors("listing services"):
            announced = {text(s) for s in await self._redis.smembers(keys.ANNOUNCED_SERVICES)}
        return sorted(announced | set(BUILTIN_SERVICES) | set((await self._announced_routes()).values()))

    async def live_workers(self, service: str) -> list[WorkerHeartbeat]:
        """Workers of the service with a recent heartbeat; stale entries are removed."""
        workers_key = keys.workers(service)
        with redis_errors("reading worker heartbeats"):
            raw = await self._redis.hgetall(workers_key)
        now = time.time()
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
            if hb.stopping or now - seen_at > hb.interval_seconds * self._grace:
                stale.extend((worker_id, value))
            else:
                live.append(hb)
        if stale:
            with redis_errors("pruning stale workers"):
                await self._prune(keys=[workers_key], args=stale)
        return sorted(live, key=lambda hb: hb.worker_id)

    async def _announced_routes(self) -> dict[str, str]:
        if time.monotonic() - self._routes_read_at > self._cache_seconds:
            with redis_errors("reading routes"):
                raw = await self._redis.hgetall(keys.ROUTES)
            self._routes = {text(k): text(v) for k, v in raw.items()}
            self._routes_read_at = time.monotonic()
        return self._routes
