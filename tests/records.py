"""Job records and the task events about them, as the registry and the event consumer see them; workers'
heartbeats."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from orchestrator.models import JobRecord
from protocol.control import WorkerHeartbeat
from protocol.envelope import new_id, utc_now
from protocol.events import EventType, TaskEvent


def make_record(
    tenant_id: str,
    *,
    job_type: str = "llm_request",
    service: str = "query",
    session_id: str | None = None,
    created_at: datetime | None = None,
) -> JobRecord:
    created = (created_at or utc_now()).isoformat()
    return JobRecord(
        global_task_id=new_id(),
        tenant_id=tenant_id,
        session_id=session_id,
        type=job_type,
        service=service,
        root_task_id=new_id(),
        priority=5,
        status="queued",
        created_at=created,
        updated_at=created,
        seq=1,
        context={"request_id": "r-1"},
    )


def records_created_in_order(tenant_id: str, count: int, *, ago_seconds: int = 100, **kwargs: Any) -> list[JobRecord]:
    """`count` records created one second apart, the first `ago_seconds` ago."""
    start = utc_now() - timedelta(seconds=ago_seconds)
    return [make_record(tenant_id, created_at=start + timedelta(seconds=i), **kwargs) for i in range(count)]


def event_for(
    record: JobRecord,
    kind: EventType,
    seq: int,
    *,
    task_id: str | None = None,
    service: str | None = None,
    **data: Any,
) -> TaskEvent:
    return TaskEvent(
        event=kind,
        service=service or record.service,
        task_id=task_id or record.root_task_id,
        global_task_id=record.global_task_id,
        tenant_id=record.tenant_id,
        seq=seq,
        data=data,
    )


def worker_heartbeat(service: str, job_types: list[str], **fields: Any) -> WorkerHeartbeat:
    """A heartbeat of worker `w-1` of `service` announcing `job_types`; `fields` set or override the rest."""
    defaults: dict[str, Any] = {
        "worker_id": "w-1",
        "concurrency": 1,
        "in_flight": 0,
        "hostname": "h",
        "pid": 7,
        "started_at": utc_now(),
        "interval_seconds": 30,
    }
    return WorkerHeartbeat(service=service, job_types=job_types, **{**defaults, **fields})
