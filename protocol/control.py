"""Messages that are not task events: broadcasts to workers and worker announcements."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from protocol.envelope import PROTOCOL_VERSION, utc_now
from protocol.names import JOB_TYPE_PATTERN, SERVICE_NAME_PATTERN, TENANT_ID_PATTERN

JobType = Annotated[str, StringConstraints(pattern=JOB_TYPE_PATTERN)]


class CancelCommand(BaseModel):
    """Broadcast on `baton.control`: stop (or never start) these tasks of a job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["cancel"] = "cancel"
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    global_task_id: str = Field(min_length=1, max_length=128)
    reason: str = "cancelled by client"
    issued_at: datetime = Field(default_factory=utc_now)
    v: Literal[1] = PROTOCOL_VERSION


class WorkerHeartbeat(BaseModel):
    """Published by every worker process at start and then periodically, on the events
    exchange under `_system.<service>.worker_heartbeat`; it announces the job types it serves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["worker_heartbeat"] = "worker_heartbeat"
    worker_id: str = Field(min_length=1, max_length=128)
    service: str = Field(pattern=SERVICE_NAME_PATTERN)
    job_types: list[JobType] = Field(max_length=1000)
    concurrency: int = Field(ge=1)
    in_flight: int = Field(ge=0)
    hostname: str
    pid: int
    started_at: datetime
    timestamp: datetime = Field(default_factory=utc_now)
    interval_seconds: float = Field(gt=0)
    stopping: bool = False
    v: Literal[1] = PROTOCOL_VERSION
