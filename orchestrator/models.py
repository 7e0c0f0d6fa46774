"""What the orchestrator keeps about a job, and what it tells listeners when one changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from protocol.envelope import JobSource, TaskMetadata
from protocol.events import TERMINAL_STATUSES, EventType, JobStatus, TaskEvent

# The source of a job a service made for one of its tasks (DESIGN: `system`, as for child tasks).
CHILD_JOB_SOURCE: JobSource = "system"


class JobParent(BaseModel):
    """The task whose service made this job with its token (a worker's `ctx.submit_job`)."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    task_id: str | None = None
    service: str

    def metadata(self) -> dict[str, str | None]:
        """The child's envelope metadata naming its parent (`parent_task_id` is the protocol's field)."""
        return {
            "source": CHILD_JOB_SOURCE,
            "parent_job_id": self.job_id,
            "parent_task_id": self.task_id,
            "parent_service": self.service,
        }

    @classmethod
    def of(cls, metadata: TaskMetadata) -> JobParent | None:
        """The parent an envelope's metadata names; None for a job a client made."""
        extra = metadata.model_extra or {}
        job_id, service = extra.get("parent_job_id"), extra.get("parent_service")
        if not isinstance(job_id, str) or not isinstance(service, str):
            return None
        return cls(job_id=job_id, task_id=metadata.parent_task_id, service=service)


class JobRecord(BaseModel):
    """One job in the GlobalTaskRegistry (the `orchestrator:tasks:{tenant}:{job}` hash)."""

    model_config = ConfigDict(extra="ignore")

    global_task_id: str
    tenant_id: str
    session_id: str | None = None
    type: str
    service: str
    root_task_id: str
    priority: int
    status: str
    created_at: str  # ISO-8601 UTC
    updated_at: str
    seq: int = 0
    delegated_services: list[dict[str, Any]] = []
    progress: dict[str, Any] | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    context: dict[str, Any] = {}
    attempt: int = 1  # of the root task: grows with every retry and replay
    parent: JobParent | None = None  # set when a service made the job for one of its tasks
    retry_of: str | None = None  # the job POST /jobs/{id}/retry ran again as this one
    # The root task's envelope as last published (JSON), so the sweeper and replay can publish it again.
    envelope: dict[str, Any] | None = None

    @property
    def job_id(self) -> str:
        return self.global_task_id

    def public(self) -> dict[str, Any]:
        """The JSON the API and the WebSocket snapshot show."""
        body = self.model_dump(mode="json", exclude={"envelope"})
        body["job_id"] = self.global_task_id
        return body


class CreateStatus(StrEnum):
    CREATED = "created"
    EXISTING = "existing"  # same tenant, same idempotency key, same request
    CONFLICT = "conflict"  # same tenant and key, different request
    COALESCED = "coalesced"  # an identical cache-enabled job is open: the record is that job's
    CACHED = "cached"  # the identical job completed within its cache TTL: the record is that job's


@dataclass(frozen=True)
class CacheSlot:
    """A cache-enabled job's place in the result cache: its tenant's entry for `job_type` and the payload's
    digest, kept `ttl_seconds` once the job completes; identical requests attach to it while it runs, for
    at most `in_flight_seconds` (a lost job must not hold them off for ever)."""

    job_type: str
    digest: str
    ttl_seconds: int
    in_flight_seconds: int


@dataclass(frozen=True)
class CreateResult:
    status: CreateStatus
    record: JobRecord
    # CREATED: the new job's first update as its history keeps it, made once (about 45 µs) for the bus too.
    announced: JobUpdate | None = None

    def created_update(self) -> JobUpdate:
        """The announcement of the job this result created."""
        return self.announced if self.announced is not None else created_update(self.record)


@dataclass(frozen=True)
class CachedResult:
    """A result-cache entry."""

    job_id: str  # the job that computed it (its record may have expired before the entry)
    result: Any
    created_at: str  # that job's

    def as_record(self, tenant_id: str, job_type: str, service: str, priority: int) -> JobRecord:
        """The answer to a request it serves: a completed record of the job that made it, as far as the
        entry keeps it (its id, creation time and result)."""
        return JobRecord(
            global_task_id=self.job_id,
            tenant_id=tenant_id,
            type=job_type,
            service=service,
            root_task_id=self.job_id,
            priority=priority,
            status=JobStatus.COMPLETED.value,
            created_at=self.created_at,
            updated_at=self.created_at,
            result=self.result,
        )


class CancelStatus(StrEnum):
    CANCELLED = "cancelled"
    ALREADY_TERMINAL = "already_terminal"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class CancelResult:
    status: CancelStatus
    record: JobRecord | None


@dataclass(frozen=True)
class JobUpdate:
    """An event the registry accepted, renumbered with the job's own `seq`.

    `event` is the public TaskEvent JSON (its `seq` is the job's seq); every orchestrator
    replica receives it and forwards it to its subscribed WebSocket clients and waiters.
    """

    tenant_id: str
    job_id: str
    seq: int
    status: str  # the job's status after the event
    terminal: bool
    event: dict[str, Any]


# What a client event says that only the registry knows: the job's seq and its status after the event.
_REGISTRY_FIELDS = frozenset({"seq", "job_status"})


def job_update(tenant_id: str, job_id: str, seq: int, status: str, event: dict[str, Any]) -> JobUpdate:
    """The one place a JobUpdate is made: `terminal` follows from the job's status, never set apart from it,
    and the event says the job's seq and status (`job_status`) first, as the job's history keeps it."""
    body = {"seq": seq, "job_status": status, **event_tail(event)}
    return JobUpdate(
        tenant_id=tenant_id, job_id=job_id, seq=seq, status=status, terminal=status in TERMINAL_STATUSES, event=body
    )


def event_tail(event: dict[str, Any], *, without: tuple[str, ...] = ()) -> dict[str, Any]:
    """A client event without what only the registry's scripts know (`seq`, `job_status`, and `without`)."""
    return {name: value for name, value in event.items() if name not in _REGISTRY_FIELDS and name not in without}


def record_update(
    record: JobRecord,
    kind: EventType,
    data: dict[str, Any],
    *,
    task_id: str | None = None,
    service: str | None = None,
    at: str | None = None,
) -> JobUpdate:
    """An update the orchestrator itself makes about a job (created, cancelled, reopened, failed as stuck),
    numbered with the record's seq and stating the record's status."""
    event = announcement(
        kind,
        data,
        tenant_id=record.tenant_id,
        job_id=record.global_task_id,
        task_id=task_id or record.root_task_id,
        service=service or record.service,
        at=at or record.updated_at,
        seq=record.seq,
    )
    return job_update(record.tenant_id, record.global_task_id, record.seq, record.status, event)


def announcement(
    kind: EventType, data: dict[str, Any], *, tenant_id: str, job_id: str, task_id: str, service: str, at: str, seq: int
) -> dict[str, Any]:
    """The TaskEvent JSON of an event the orchestrator itself makes about a job."""
    event = TaskEvent(
        event=kind,
        service=service,
        task_id=task_id,
        global_task_id=job_id,
        tenant_id=tenant_id,
        timestamp=datetime.fromisoformat(at),
        seq=seq,
        data=data,
        metadata={"source": "orchestrator"},
    )
    return event.model_dump(mode="json")


def created_update(record: JobRecord) -> JobUpdate:
    """The announcement of a new job: task_status_update{status: queued} with seq 1."""
    return record_update(record, EventType.TASK_STATUS_UPDATE, {"status": JobStatus.QUEUED.value}, at=record.created_at)
