"""FakeTaskRegistry: RedisTaskRegistry's rules kept in a dict, for unit tests that need no Redis.

It follows what `tests/contracts/test_registry_contract.py` pins down for both: creates with
idempotency keys, tenant-scoped reads, newest-first listing with filters, events applied in seq
order per task (late, repeated and after-terminal ones dropped, forged ones refused), and a cancel
that wins or loses against the job's outcome. TTLs and the workers' ledger keys are Redis
matters it leaves out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.models import (
    CacheSlot,
    CancelResult,
    CancelStatus,
    CreateResult,
    CreateStatus,
    JobRecord,
    JobUpdate,
    job_update,
    record_update,
)
from orchestrator.store.codec import score
from orchestrator.store.event_rules import attempt_of, recorded_fields
from orchestrator.store.registry import DEFAULT_MAX_TASKS_PER_JOB, ApplyOutcome, ScoreWindow, with_root_entry
from orchestrator.store.scripts import MAX_ATTEMPT_LEAP, MAX_SEQ
from protocol.envelope import utc_now
from protocol.events import ATTEMPT_SEQ_STRIDE, TERMINAL_STATUSES, EventType, JobStatus, TaskEvent


@dataclass
class _Held:
    job_id: str
    fingerprint: str


class FakeTaskRegistry:
    def __init__(self, *, max_tasks_per_job: int = DEFAULT_MAX_TASKS_PER_JOB) -> None:
        self._jobs: dict[tuple[str, str], JobRecord] = {}
        self._task_seqs: dict[tuple[str, str], dict[str, int]] = {}  # the producer's last seq per task
        self._idempotency: dict[tuple[str, str], _Held] = {}
        self._keys_of: dict[tuple[str, str], str] = {}  # job -> its idempotency key
        self._max_tasks = max(1, max_tasks_per_job)

    async def create(
        self,
        record: JobRecord,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
        cache: CacheSlot | None = None,  # the fake keeps no result cache: every job is created
    ) -> CreateResult:
        tenant, job_key = record.tenant_id, (record.tenant_id, record.job_id)
        if idempotency_key is not None:
            held = self._idempotency.get((tenant, idempotency_key))
            if held is not None and (tenant, held.job_id) in self._jobs:
                outcome = CreateStatus.EXISTING if held.fingerprint == (fingerprint or "") else CreateStatus.CONFLICT
                return CreateResult(outcome, self._read(tenant, held.job_id))
        if job_key in self._jobs:
            return CreateResult(CreateStatus.CONFLICT, self._read(*job_key))
        stored = with_root_entry(record)
        self._jobs[job_key] = stored.model_copy(deep=True)
        self._task_seqs[job_key] = {}
        if idempotency_key is not None:
            self._idempotency[(tenant, idempotency_key)] = _Held(record.job_id, fingerprint or "")
            self._keys_of[job_key] = idempotency_key
        return CreateResult(CreateStatus.CREATED, stored)

    async def discard(self, tenant_id: str, job_id: str) -> None:
        job_key = (tenant_id, job_id)
        self._jobs.pop(job_key, None)
        self._task_seqs.pop(job_key, None)
        key = self._keys_of.pop(job_key, None)
        held = self._idempotency.get((tenant_id, key)) if key is not None else None
        if key is not None and held is not None and held.job_id == job_id:
            del self._idempotency[(tenant_id, key)]

    async def get(self, tenant_id: str, job_id: str) -> JobRecord | None:
        return self._read(tenant_id, job_id) if (tenant_id, job_id) in self._jobs else None

    async def get_with_envelope(self, tenant_id: str, job_id: str) -> JobRecord | None:
        stored = self._jobs.get((tenant_id, job_id))
        return None if stored is None else stored.model_copy(deep=True)

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
        window = ScoreWindow.of(created_after, created_before)
        matching = [
            record
            for (tenant, _), record in self._jobs.items()
            if tenant == tenant_id
            and (status is None or record.status == status)
            and (type is None or record.type == type)
            and (session_id is None or record.session_id == session_id)
            and window.holds(score(record.created_at))
        ]
        matching.sort(key=lambda r: (score(r.created_at), r.job_id), reverse=True)
        offset, limit = max(offset, 0), max(limit, 0)
        return [self._read(tenant_id, r.job_id) for r in matching[offset : offset + limit]], len(matching)

    async def apply_event(self, event: TaskEvent) -> JobUpdate | None:
        return (await self.apply(event)).update

    async def apply_many(self, events: Sequence[TaskEvent]) -> list[ApplyOutcome]:
        return [await self.apply(event) for event in events]

    async def apply(self, event: TaskEvent) -> ApplyOutcome:
        """The APPLY_EVENT script's rules, step for step (orchestrator.store.scripts)."""
        try:
            status = event.checked_status().value
        except ValueError:
            return ApplyOutcome(None, "invalid_status")
        job_key = (event.tenant_id, event.global_task_id)
        job = self._jobs.get(job_key)
        if job is None:
            return ApplyOutcome(None, "unknown_job")
        if job.status in TERMINAL_STATUSES:
            return ApplyOutcome(None, "job_terminal")
        is_root = event.task_id == job.root_task_id
        if is_root and event.service != job.service:
            return ApplyOutcome(None, "wrong_service")
        seqs = self._task_seqs[job_key]
        last = seqs.get(event.task_id, -1)
        seq_attempt, last_attempt = event.seq // ATTEMPT_SEQ_STRIDE, last // ATTEMPT_SEQ_STRIDE
        if event.seq > MAX_SEQ or seq_attempt > max(last_attempt, 1) + MAX_ATTEMPT_LEAP:
            return ApplyOutcome(None, "seq_out_of_range")
        if seq_attempt < last_attempt or (event.seq <= last and status not in TERMINAL_STATUSES):
            return ApplyOutcome(None, "stale")
        delegated = [dict(entry) for entry in job.delegated_services]
        found = next((entry for entry in delegated if entry.get("task_id") == event.task_id), None)
        if found is not None and found.get("service") != event.service:
            return ApplyOutcome(None, "wrong_service")
        if found is not None and found.get("status") in TERMINAL_STATUSES and seq_attempt == last_attempt:
            return ApplyOutcome(None, "task_terminal")
        if found is not None:
            found["status"] = status
        elif len(delegated) >= self._max_tasks:
            return ApplyOutcome(None, "too_many_tasks")
        else:
            delegated.append({"service": event.service, "task_id": event.task_id, "status": status})
        seqs[event.task_id] = max(event.seq, last)
        changes: dict[str, Any] = {
            "delegated_services": delegated,
            "seq": job.seq + 1,
            "updated_at": utc_now().isoformat(),
        }
        if is_root:  # only the root task moves the job; children are tracked in delegated_services
            changes["status"] = status
            progress, result, error = recorded_fields(event, status)
            for name, text in (("progress", progress), ("result", result), ("error", error)):
                if text:
                    changes[name] = json.loads(text)
            attempt = attempt_of(event)
            if job.attempt < attempt <= max(seq_attempt, 1):  # an attempt the seq vouches for
                changes["attempt"] = attempt
        job = self._jobs[job_key] = job.model_copy(update=changes)
        body = event.model_dump(mode="json")
        body["seq"] = job.seq
        update = job_update(job.tenant_id, job.job_id, job.seq, job.status, body)
        return ApplyOutcome(update, None, job.type, job.created_at)

    async def cancel(self, tenant_id: str, job_id: str, reason: str) -> tuple[CancelResult, JobUpdate | None]:
        job = self._jobs.get((tenant_id, job_id))
        if job is None:
            return CancelResult(CancelStatus.NOT_FOUND, None), None
        if job.status in TERMINAL_STATUSES:
            return CancelResult(CancelStatus.ALREADY_TERMINAL, job.model_copy(deep=True)), None
        cancelled = JobStatus.CANCELLED.value
        delegated = [
            {**entry, "status": entry.get("status") if entry.get("status") in TERMINAL_STATUSES else cancelled}
            for entry in job.delegated_services
        ]
        job = self._jobs[(tenant_id, job_id)] = job.model_copy(
            update={
                "status": cancelled,
                "seq": job.seq + 1,
                "updated_at": utc_now().isoformat(),
                "error": {"reason": reason, "status": cancelled},
                "delegated_services": delegated,
            }
        )
        update = record_update(job, EventType.TASK_CANCELLED, {"status": cancelled, "reason": reason})
        return CancelResult(CancelStatus.CANCELLED, job.model_copy(deep=True)), update

    def _read(self, tenant_id: str, job_id: str) -> JobRecord:
        # Reads leave the stored envelope out, as RedisTaskRegistry's do (it holds the whole payload).
        return self._jobs[(tenant_id, job_id)].model_copy(update={"envelope": None}, deep=True)
