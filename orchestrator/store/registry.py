"""RedisTaskRegistry: the GlobalTaskRegistry of jobs, in Redis hashes changed by Lua scripts.

redis-py's errors are translated here, at the boundary, into `orchestrator.errors.RegistryError`
and its `RegistryUnavailable`.

The client must be created with `decode_responses=False` (the default).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgpack
import redis.asyncio as aioredis
import redis.exceptions as redis_exc

from orchestrator.errors import RegistryError, RegistryUnavailable
from orchestrator.models import (
    CachedResult,
    CacheSlot,
    CancelResult,
    CancelStatus,
    CreateResult,
    CreateStatus,
    JobRecord,
    JobUpdate,
    created_update,
    job_update,
    record_update,
)
from orchestrator.store import keys
from orchestrator.store import scripts as registry_scripts
from orchestrator.store.codec import (
    READ_FIELDS,
    from_fields,
    from_hash,
    packed_args,
    pairs,
    score,
    text,
    text_args,
    to_hash,
)
from orchestrator.store.event_rules import attempt_of, recorded_fields
from orchestrator.store.event_tails import DEFAULT_HISTORY_MAX, finish_tail, tail
from plumbing.redis_batch import PipelineBatcher
from protocol import ledger
from protocol.codec import compact_json, json_fields
from protocol.envelope import utc_now
from protocol.events import TERMINAL_STATUSES, EventType, JobStatus, TaskEvent

DEFAULT_TTL_SECONDS: Final[int] = 24 * 3600
# Entries of a job's delegated_services (the root task included). Children are learnt from their own
# first event, which anybody on the events exchange could forge: the cap bounds what that costs.
DEFAULT_MAX_TASKS_PER_JOB: Final[int] = 256
# How many index entries older than the TTL one listing checks against their job hashes.
_SWEEP_BATCH: Final[int] = 500


@contextmanager
def redis_errors(action: str) -> Iterator[None]:
    """Translate redis-py errors raised inside the block into ours."""
    try:
        yield
    except (redis_exc.ConnectionError, redis_exc.TimeoutError, redis_exc.ReadOnlyError, OSError) as exc:
        raise RegistryUnavailable(f"Redis is unavailable ({action}): {exc}") from exc
    except redis_exc.RedisError as exc:
        raise RegistryError(f"Redis refused {action}: {exc}") from exc


@dataclass(frozen=True)
class ApplyOutcome:
    """What apply() did with an event: the update it produced, or why it dropped the event."""

    update: JobUpdate | None
    # unknown_job, job_terminal, task_terminal, stale: late or repeated, normal under redelivery;
    # invalid_status, wrong_service, seq_out_of_range, too_many_tasks: no producer of the job sends them
    dropped: str | None = None
    job_type: str = ""
    created_at: str = ""


@dataclass(frozen=True)
class _ApplyCall:
    """One event's APPLY_EVENT call, and how its reply becomes the outcome."""

    tenant_id: str
    job_id: str
    body: dict[str, Any]
    keys: list[str]
    args: list[str | int]

    def outcome(self, reply: Sequence[Any]) -> ApplyOutcome:
        outcome = text(reply[0])
        if outcome != "applied":
            return ApplyOutcome(None, outcome)
        update = job_update(self.tenant_id, self.job_id, int(reply[1]), text(reply[2]), self.body)
        return ApplyOutcome(update, None, text(reply[3]), text(reply[4]))


# The drop reasons no worker of the job causes: forged, corrupt or from a broken producer.
REFUSALS: Final[frozenset[str]] = frozenset({"invalid_status", "wrong_service", "seq_out_of_range", "too_many_tasks"})


class RedisTaskRegistry:
    def __init__(
        self,
        redis: aioredis.Redis,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        batcher: PipelineBatcher | None = None,
        *,
        max_tasks_per_job: int = DEFAULT_MAX_TASKS_PER_JOB,
        history_max: int = DEFAULT_HISTORY_MAX,
    ) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._history_max = max(1, history_max)
        self._max_tasks = max(1, max_tasks_per_job)
        self._create = redis.register_script(registry_scripts.CREATE)
        self._apply = redis.register_script(registry_scripts.APPLY_EVENT)
        self._apply_many = redis.register_script(registry_scripts.APPLY_EVENTS)
        # Concurrent creates and event applications share pipeline round trips (with the bus, when shared).
        self._batch = batcher or PipelineBatcher(redis)
        self._finish = redis.register_script(registry_scripts.FINISH_JOB)
        self._discard = redis.register_script(registry_scripts.DISCARD)
        self._release_idempotency = redis.register_script(registry_scripts.RELEASE_IDEMPOTENCY)
        self._fill_cache = redis.register_script(registry_scripts.FILL_CACHE)

    async def ping(self) -> None:
        with redis_errors("ping"):
            await self._redis.ping()

    async def create(
        self,
        record: JobRecord,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
        cache: CacheSlot | None = None,
    ) -> CreateResult:
        """Store a new job atomically; with an idempotency key, a repeat gets the first job back. With a
        cache slot and no key, an identical open job is found instead (COALESCED), or one that completed
        within the TTL (CACHED); else the new job holds the slot's in-flight marker until it ends."""
        record = with_root_entry(record)
        announced = created_update(record)
        tenant = record.tenant_id
        fields = to_hash(record)
        if idempotency_key is not None:
            fields["idempotency_key"] = idempotency_key
        script_keys = [
            *keys.script_keys(tenant, record.job_id),
            keys.tenant_jobs_by_type(tenant, record.type),
            keys.job_events(tenant, record.job_id),
        ]
        if record.session_id is not None:
            script_keys.append(keys.session(tenant, record.session_id))
        if idempotency_key is not None:
            script_keys.append(keys.idempotency(tenant, idempotency_key))
        marker = None if cache is None else keys.cache_in_flight(tenant, cache.job_type, cache.digest)
        if cache is not None and marker is not None:
            script_keys.extend((marker, keys.cache_entry(tenant, cache.job_type, cache.digest)))
            fields.update(_cache_fields(tenant, cache, marker))
        args: list[str | int] = [
            self._ttl,
            score(record.created_at),
            record.job_id,
            record.status,
            "1" if record.session_id is not None else "0",
            "1" if idempotency_key is not None else "0",
            fingerprint or "",
            "1" if marker is not None else "0",
            cache.in_flight_seconds if cache is not None else 0,
            self._history_max,
            compact_json(announced.event),
        ]
        for name, value in fields.items():
            args.extend((name, value))
        # A held key or marker may name a job that expired or was discarded meanwhile (a marker: one that
        # ended under an older replica): free it and retry, at most once per kind.
        for _ in range(3):
            with redis_errors("creating a job"):
                reply = await self._batch.script(self._create, script_keys, [packed_args(args)])
            outcome, job_id = text(reply[0]), text(reply[1])
            if outcome == "created":
                return CreateResult(CreateStatus.CREATED, record, announced)
            if outcome == "cached":
                hit = CachedResult(job_id, json.loads(reply[2]), text(reply[3]))
                return CreateResult(
                    CreateStatus.CACHED, hit.as_record(tenant, record.type, record.service, record.priority)
                )
            stored = await self.get(tenant, job_id)
            if outcome == "coalesced" and cache is not None and marker is not None:
                found = await self._held_by(stored, tenant, cache, marker)
                if found is not None:
                    return found
                held_key = marker
            elif stored is not None:
                status = CreateStatus.EXISTING if outcome == "existing" else CreateStatus.CONFLICT
                return CreateResult(status, stored)
            elif idempotency_key is not None:
                held_key = keys.idempotency(tenant, idempotency_key)
            else:
                continue
            with redis_errors("freeing an idempotency key"):
                await self._release_idempotency(keys=[held_key], args=[job_id])
        raise RegistryError(f"job {record.job_id} could not be created: its idempotency key keeps changing")

    async def _held_by(
        self, stored: JobRecord | None, tenant: str, cache: CacheSlot, marker: str
    ) -> CreateResult | None:
        """What an in-flight marker's job means for an identical request; None when the marker is stale."""
        if stored is None:
            return None
        if stored.status not in TERMINAL_STATUSES:
            return CreateResult(CreateStatus.COALESCED, stored)
        # Ended, yet its marker is still held: an older replica applied its end. A completed result still
        # within its TTL is stored now (what that replica would have done); anything else frees the marker.
        age = time.time() - datetime.fromisoformat(stored.updated_at).timestamp()
        if stored.status != JobStatus.COMPLETED.value or age >= cache.ttl_seconds:
            return None
        entry = keys.cache_entry(tenant, cache.job_type, cache.digest)
        with redis_errors("storing a cached result"):
            await self._fill_cache(
                keys=[entry, keys.cache_index(tenant, cache.job_type), keys.CACHE_ENTRIES, marker],
                args=[
                    stored.job_id,
                    max(1, int(cache.ttl_seconds - age)),
                    compact_json(stored.result),
                    stored.created_at,
                ],
            )
        return CreateResult(CreateStatus.CACHED, stored)

    async def discard(self, tenant_id: str, job_id: str) -> None:
        """Undo a create whose publish failed: the job, its index entries and its idempotency key."""
        job_key = keys.job(tenant_id, job_id)
        with redis_errors("discarding a job"):
            job_type, session_id, idempotency_key, marker = await self._redis.hmget(
                job_key, ["type", "session_id", "idempotency_key", "cache_marker"]
            )
            if job_type is None:
                return
            script_keys = [
                *keys.script_keys(tenant_id, job_id),
                keys.tenant_jobs_by_type(tenant_id, text(job_type)),
                keys.job_events(tenant_id, job_id),
            ]
            if session_id is not None:
                script_keys.append(keys.session(tenant_id, text(session_id)))
            if idempotency_key is not None:
                script_keys.append(keys.idempotency(tenant_id, text(idempotency_key)))
            if marker is not None:
                script_keys.append(text(marker))
            flags = ["1" if value is not None else "0" for value in (session_id, idempotency_key, marker)]
            await self._discard(keys=script_keys, args=[job_id, *flags])

    async def get(self, tenant_id: str, job_id: str) -> JobRecord | None:
        with redis_errors("reading a job"):
            values = await self._redis.hmget(keys.job(tenant_id, job_id), READ_FIELDS)
        return from_fields(values)

    async def get_with_envelope(self, tenant_id: str, job_id: str) -> JobRecord | None:
        """The record with its stored envelope (the whole payload), in the same read."""
        with redis_errors("reading a job"):
            values = await self._redis.hmget(keys.job(tenant_id, job_id), [*READ_FIELDS, "envelope"])
        record = from_fields(values[:-1])
        if record is None or values[-1] is None:
            return record
        envelope = json.loads(values[-1])
        return record.model_copy(update={"envelope": envelope if isinstance(envelope, dict) else None})

    async def list_jobs(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        type: str | None = None,
        session_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[JobRecord], int]:
        """A page of the tenant's jobs, newest first, and how many match in total; `created_after` is
        inclusive and `created_before` exclusive, to the millisecond (the indexes' score)."""
        indexes = []
        if status is not None:
            indexes.append(keys.tenant_jobs_by_status(tenant_id, status))
        if type is not None:
            indexes.append(keys.tenant_jobs_by_type(tenant_id, type))
        if session_id is not None:
            indexes.append(keys.session(tenant_id, session_id))
        if not indexes:
            indexes.append(keys.tenant_jobs(tenant_id))
        offset, limit = max(offset, 0), max(limit, 0)
        window = ScoreWindow.of(created_after, created_before)
        with redis_errors("listing jobs"):
            await self._sweep(tenant_id, indexes)
            # Index entries whose job hash is gone are pruned as they are met, then the page is re-read.
            while True:
                ids, total = await self._page(indexes, window, offset, limit)
                async with self._redis.pipeline(transaction=False) as pipe:
                    for job_id in ids:
                        pipe.hmget(keys.job(tenant_id, job_id), READ_FIELDS)
                    rows = await pipe.execute() if ids else []
                records = [from_fields(values) for values in rows]
                missing = [job_id for job_id, record in zip(ids, records, strict=True) if record is None]
                if not missing:
                    return [record for record in records if record is not None], total
                await self._prune(tenant_id, indexes, missing)

    async def apply_event(self, event: TaskEvent) -> JobUpdate | None:
        """`apply` for callers that only want the update (None when the event was dropped)."""
        return (await self.apply(event)).update

    async def apply(self, event: TaskEvent) -> ApplyOutcome:
        """Apply one event atomically; late, repeated and after-terminal events are dropped, and events
        no producer of the job's tasks could have sent are refused (`ApplyOutcome.dropped` says why)."""
        call = self._apply_call(event)
        if isinstance(call, ApplyOutcome):
            return call
        with redis_errors("applying an event"):
            reply = await self._batch.script(self._apply, call.keys, [packed_args(call.args)])
        return call.outcome(reply)

    async def apply_many(self, events: Sequence[TaskEvent]) -> list[ApplyOutcome]:
        """`apply` for each event, in the order given, in one script call (one round trip): a delivery
        window's events. One outcome per event; RegistryError for all of them when Redis failed."""
        calls = [self._apply_call(event) for event in events]
        pending = [call for call in calls if isinstance(call, _ApplyCall)]
        if not pending:
            return [call for call in calls if isinstance(call, ApplyOutcome)]
        # Each distinct key once (a tenant's indexes serve all its events); events name theirs by position.
        positions: dict[str, int] = {}
        entries = [
            [[positions.setdefault(key, len(positions) + 1) for key in call.keys], text_args(call.args)]
            for call in pending
        ]
        packed = msgpack.packb(entries, use_bin_type=True)
        with redis_errors("applying events"):
            replies = await self._batch.script(self._apply_many, list(positions), [packed])
        answers = iter(replies)
        return [call if isinstance(call, ApplyOutcome) else call.outcome(next(answers)) for call in calls]

    def _apply_call(self, event: TaskEvent) -> _ApplyCall | ApplyOutcome:
        """APPLY_EVENT's keys and arguments for the event, or the outcome when Redis need not be asked."""
        try:
            status = event.checked_status().value
        except ValueError:
            return ApplyOutcome(None, "invalid_status")
        progress, result, error = recorded_fields(event, status)
        job_id = event.global_task_id
        body = json_fields(event)  # model_dump(mode="json"), 0.8x its time
        args: list[str | int] = [
            job_id,
            event.task_id,
            event.seq,
            status,
            event.service,
            self._ttl,
            utc_now().isoformat(),
            progress,
            result,
            error,
            attempt_of(event),
            self._max_tasks,
            self._history_max,
            tail(body),
        ]
        script_keys = [
            *keys.script_keys(event.tenant_id, job_id),
            keys.CACHE_ENTRIES,
            keys.job_events(event.tenant_id, job_id),
        ]
        return _ApplyCall(event.tenant_id, job_id, body, script_keys, args)

    async def cancel(self, tenant_id: str, job_id: str, reason: str) -> tuple[CancelResult, JobUpdate | None]:
        """Mark a queued or running job cancelled (terminal); the update announces it.

        The job's cancelled ledger key is set in the same atomic step, so a worker that is handed a
        task of the job later (after a restart, when the broadcast is long gone) never starts it.
        """
        error = compact_json({"reason": reason, "status": JobStatus.CANCELLED.value})
        data = {"status": JobStatus.CANCELLED.value, "reason": reason}
        at = utc_now().isoformat()
        with redis_errors("cancelling a job"):
            reply = await self._finish(
                keys=[
                    *keys.script_keys(tenant_id, job_id),
                    ledger.cancelled_key(tenant_id, job_id),
                    keys.job_events(tenant_id, job_id),
                ],
                args=[
                    job_id,
                    JobStatus.CANCELLED.value,
                    "",
                    self._ttl,
                    at,
                    error,
                    ledger.LEDGER_TTL_SECONDS,
                    reason,
                    self._history_max,
                    finish_tail(EventType.TASK_CANCELLED, data, tenant_id=tenant_id, job_id=job_id, at=at),
                ],
            )
        outcome = text(reply[0])
        if outcome == "not_found":
            return CancelResult(CancelStatus.NOT_FOUND, None), None
        record = from_hash(pairs(reply[1]))
        if outcome == "terminal":
            return CancelResult(CancelStatus.ALREADY_TERMINAL, record), None
        update = record_update(record, EventType.TASK_CANCELLED, data)
        return CancelResult(CancelStatus.CANCELLED, record), update

    async def _page(
        self, indexes: Sequence[str], window: ScoreWindow, offset: int, limit: int
    ) -> tuple[list[str], int]:
        if len(indexes) == 1:
            # One sorted set: a count and a range by score, however many jobs the tenant has.
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zcount(indexes[0], window.low, window.high)
                if limit:
                    pipe.zrevrangebyscore(indexes[0], window.high, window.low, start=offset, num=limit)
                replies = await pipe.execute()
            ids = replies[1] if limit else []
            return [text(i) for i in ids], int(replies[0])
        pairs: list[Any] = await self._redis.zinter(list(indexes), aggregate="MAX", withscores=True)
        ordered = sorted(
            ((float(score), text(member)) for member, score in pairs if window.holds(float(score))), reverse=True
        )
        return [member for _, member in ordered[offset : offset + limit]], len(ordered)

    async def _sweep(self, tenant_id: str, indexes: Sequence[str]) -> None:
        """Prune index entries created over a TTL ago whose job hash has expired, so totals stay true."""
        cutoff = (time.time() - self._ttl) * 1000
        for index in indexes:
            found: list[Any] = await self._redis.zrangebyscore(index, "-inf", cutoff, 0, _SWEEP_BATCH)
            old = [text(i) for i in found]
            if not old:
                continue
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in old:
                    pipe.exists(keys.job(tenant_id, job_id))
                alive = await pipe.execute()
            gone = [job_id for job_id, exists in zip(old, alive, strict=True) if not exists]
            if gone:
                await self._prune(tenant_id, indexes, gone)

    async def _prune(self, tenant_id: str, indexes: Sequence[str], job_ids: Sequence[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for index in {*indexes, keys.tenant_jobs(tenant_id), *keys.status_indexes(tenant_id)}:
                pipe.zrem(index, *job_ids)
            await pipe.execute()


@dataclass(frozen=True)
class ScoreWindow:
    """The creation times a listing keeps, as index scores (ms): [low, high) in Redis's range syntax."""

    low: str = "-inf"
    high: str = "+inf"
    low_ms: float = float("-inf")
    high_ms: float = float("inf")

    @classmethod
    def of(cls, after: datetime | None, before: datetime | None) -> ScoreWindow:
        low_ms = float("-inf") if after is None else float(_ms(after))
        high_ms = float("inf") if before is None else float(_ms(before))
        return cls(
            low="-inf" if after is None else str(int(low_ms)),
            high="+inf" if before is None else f"({int(high_ms)}",
            low_ms=low_ms,
            high_ms=high_ms,
        )

    def holds(self, value: float) -> bool:
        return self.low_ms <= value < self.high_ms


def _ms(moment: datetime) -> int:
    """A time as an index score; a time without a zone is taken as UTC, as every stored one is."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1000)


def _cache_fields(tenant: str, cache: CacheSlot, marker: str) -> dict[str, str]:
    """The job hash's fields that name its cache keys, for the scripts that end the job (scripts.py)."""
    return {
        "cache_marker": marker,
        "cache_entry": keys.cache_entry(tenant, cache.job_type, cache.digest),
        "cache_index": keys.cache_index(tenant, cache.job_type),
        "cache_ttl": str(cache.ttl_seconds),
    }


def with_root_entry(record: JobRecord) -> JobRecord:
    """The record with its root task first in delegated_services, as every stored job has it."""
    if any(entry.get("task_id") == record.root_task_id for entry in record.delegated_services):
        return record
    root = {"service": record.service, "task_id": record.root_task_id, "status": record.status}
    return record.model_copy(update={"delegated_services": [root, *record.delegated_services]})
