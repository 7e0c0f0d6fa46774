"""JobRecovery: the registry operations that bring a job back from trouble.

- `reopen`: a new attempt of one of the job's tasks is about to be published (a replayed dead
  letter, or a message the broker lost): the job goes back to `queued` with a seq that keeps
  growing, so the new attempt's events are applied and reach the job's subscribers, while
  late events of older attempts are dropped. Only a task that provably does not run gets a
  new attempt: a replay needs a failed or timed-out task, the sweeper a job still queued
  exactly as it saw it. Otherwise the task could run twice at once.
- `fail_stuck`: the sweeper's verdict on a job no worker will ever finish; the job's cancelled
  ledger key is set with it, so a late delivery of its task is never run.
- `stale_jobs`: open jobs of one status, created before a time, for the sweeper to look at.

Every change is one Lua script (`registry_scripts`), so it cannot interleave with an event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import redis.asyncio as aioredis

from orchestrator.errors import RegistryError
from orchestrator.models import JobRecord, JobUpdate, announcement, record_update
from orchestrator.store import keys
from orchestrator.store import scripts as registry_scripts
from orchestrator.store.codec import READ_FIELDS, from_fields, from_hash, pairs, text
from orchestrator.store.event_tails import DEFAULT_HISTORY_MAX, finish_tail, tail
from orchestrator.store.registry import DEFAULT_TTL_SECONDS, redis_errors
from protocol import ledger
from protocol.codec import compact_json
from protocol.envelope import TaskEnvelope, utc_now
from protocol.events import ATTEMPT_SEQ_STRIDE, EventType, JobStatus

STUCK_ERROR_TYPE: Final[str] = "Stuck"
# Reopening retries with a higher attempt when the one asked for is already used; a few rounds
# are plenty (each round jumps past the highest attempt seen).
_REOPEN_ROUNDS: Final[int] = 3


class ReopenStatus(StrEnum):
    REOPENED = "reopened"
    NOT_FOUND = "not_found"  # the job expired or never existed
    REFUSED = "refused"  # the task may be running, or ended for good: see job_status and task_status
    CHANGED = "changed"  # an event moved the job since the caller looked (sweeper only)


@dataclass(frozen=True)
class ReopenResult:
    status: ReopenStatus
    job_status: str = ""  # the job's status that refused or changed it
    task_status: str = ""  # a child task's own status that refused it
    record: JobRecord | None = None
    envelope: TaskEnvelope | None = None  # the attempt to publish, when reopened
    update: JobUpdate | None = None  # what subscribers are told, when reopened


class JobRecovery:
    def __init__(
        self, redis: aioredis.Redis, ttl_seconds: int = DEFAULT_TTL_SECONDS, *, history_max: int = DEFAULT_HISTORY_MAX
    ) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._history_max = max(1, history_max)
        self._reopen = redis.register_script(registry_scripts.REOPEN)
        self._finish = redis.register_script(registry_scripts.FINISH_JOB)

    async def reopen(
        self, envelope: TaskEnvelope, *, reason: str, min_attempt: int | None = None, expected_seq: int | None = None
    ) -> ReopenResult:
        """Open the job for a new attempt of `envelope`'s task, numbered at least `min_attempt`
        (default: the envelope's attempt + 1) and above every attempt the registry has seen.

        Without `expected_seq` this is a replay of a parked task (it must have failed or timed
        out); with it, the sweeper republishing a lost message (the job must be queued and
        unchanged since the sweeper read it at that seq)."""
        tenant_id, job_id, task_id = envelope.tenant_id, envelope.global_task_id, envelope.task_id
        attempt = min_attempt if min_attempt is not None else envelope.attempt + 1
        for _ in range(_REOPEN_ROUNDS):
            attempt_envelope = envelope.model_copy(update={"attempt": attempt})
            at = utc_now().isoformat()
            data = {"status": JobStatus.QUEUED.value, "attempt": attempt, "reason": reason}
            announced = announcement(
                EventType.TASK_STATUS_UPDATE,
                data,
                tenant_id=tenant_id,
                job_id=job_id,
                task_id=task_id,
                service=envelope.service,
                at=at,
                seq=0,
            )
            with redis_errors("reopening a job"):
                reply = await self._reopen(
                    keys=[
                        *keys.script_keys(tenant_id, job_id),
                        ledger.done_key(task_id),
                        ledger.cancelled_key(tenant_id, job_id),
                        keys.job_events(tenant_id, job_id),
                    ],
                    args=[
                        job_id,
                        task_id,
                        attempt,
                        ATTEMPT_SEQ_STRIDE,
                        self._ttl,
                        at,
                        compact_json(attempt_envelope.model_dump(mode="json")),
                        "" if expected_seq is None else str(expected_seq),
                        self._history_max,
                        tail(announced),
                    ],
                )
            outcome = text(reply[0])
            if outcome == "retry":
                attempt = max(attempt + 1, int(text(reply[1])))
                continue
            if outcome != ReopenStatus.REOPENED:
                task_status = text(reply[2]) if len(reply) > 2 else ""
                return ReopenResult(ReopenStatus(outcome), job_status=text(reply[1]), task_status=task_status)
            record = from_hash(pairs(reply[1]))
            kind = EventType.TASK_STATUS_UPDATE
            update = record_update(record, kind, data, task_id=task_id, service=envelope.service)
            return ReopenResult(
                ReopenStatus.REOPENED, job_status=record.status, record=record, envelope=attempt_envelope, update=update
            )
        raise RegistryError(f"job {job_id}: no attempt number above the ones seen for task {task_id}")

    async def fail_stuck(self, record: JobRecord, reason: str) -> JobUpdate | None:
        """Fail a job that is still exactly as `record` saw it; None when it moved on meanwhile."""
        error = {"error": reason, "error_type": STUCK_ERROR_TYPE, "attempts": record.attempt, "status": "failed"}
        tenant_id, job_id = record.tenant_id, record.job_id
        at = utc_now().isoformat()
        with redis_errors("failing a stuck job"):
            reply = await self._finish(
                keys=[
                    *keys.script_keys(tenant_id, job_id),
                    ledger.cancelled_key(tenant_id, job_id),
                    keys.job_events(tenant_id, job_id),
                ],
                args=[
                    job_id,
                    JobStatus.FAILED.value,
                    str(record.seq),
                    self._ttl,
                    at,
                    compact_json(error),
                    ledger.LEDGER_TTL_SECONDS,
                    reason,
                    self._history_max,
                    finish_tail(EventType.TASK_FAILED, error, tenant_id=tenant_id, job_id=job_id, at=at),
                ],
            )
        if text(reply[0]) != "finished":
            return None
        failed = from_hash(pairs(reply[1]))
        return record_update(failed, EventType.TASK_FAILED, error)

    async def tenants_with(self, status: str) -> list[str]:
        """Tenants that have jobs in `status` (a SCAN over their status indexes)."""
        prefix, suffix = f"{keys.PREFIX}:jobs:", f":status:{status}"
        found: set[str] = set()
        with redis_errors("finding tenants"):
            async for key in self._redis.scan_iter(match=keys.tenant_status_pattern(status), count=1000):
                name = text(key)
                if name.startswith(prefix) and name.endswith(suffix):
                    found.add(name[len(prefix) : -len(suffix)])
        return sorted(found)

    async def stale_jobs(self, tenant_id: str, status: str, created_before: float, limit: int) -> list[JobRecord]:
        """Up to `limit` of the tenant's jobs in `status` created before `created_before` (epoch s), oldest first.

        Without their stored envelopes (a payload of up to the message cap each): `stored_envelope`
        reads the one a republish needs.
        """
        index = keys.tenant_jobs_by_status(tenant_id, status)
        with redis_errors("finding stale jobs"):
            found: list[Any] = await self._redis.zrangebyscore(index, "-inf", created_before * 1000, 0, limit)
            job_ids = [text(i) for i in found]
            async with self._redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hmget(keys.job(tenant_id, job_id), READ_FIELDS)
                rows = await pipe.execute()
        return [record for values in rows if (record := from_fields(values)) is not None and record.status == status]

    async def stored_envelope(self, tenant_id: str, job_id: str) -> dict[str, Any] | None:
        """The job's root task envelope as last published (JSON), or None."""
        with redis_errors("reading a stored envelope"):
            raw = await self._redis.hget(keys.job(tenant_id, job_id), "envelope")
        if raw is None:
            return None
        value = json.loads(raw)
        return value if isinstance(value, dict) else None
