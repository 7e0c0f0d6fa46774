"""What the contract tests share: a pair of replicas' buses, the message cap they use, records and events to feed in."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from orchestrator.jobs.ports import UpdateBus
from orchestrator.models import JobRecord
from protocol.envelope import new_id, utc_now
from protocol.events import EventType, TaskEvent

# Small enough that a test payload crosses it cheaply.
CONTRACT_MAX_MESSAGE_BYTES = 64 * 1024

BusPair = tuple[UpdateBus, UpdateBus]  # two replicas' buses on one channel


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


def event_for(
    record: JobRecord, kind: EventType, seq: int, *, task_id: str | None = None, service: str | None = None, **data: Any
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
