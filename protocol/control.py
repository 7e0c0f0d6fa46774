"""Messages that are not task events: broadcasts to workers and worker announcements."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)

from protocol.envelope import PROTOCOL_VERSION, utc_now
from protocol.names import JOB_TYPE_PATTERN, SERVICE_NAME_PATTERN, TENANT_ID_PATTERN

JobType = Annotated[str, StringConstraints(pattern=JOB_TYPE_PATTERN)]

WORKFLOWS_KIND: Final[str] = "workflows"  # the last part of the announcement's routing key
# A workflow id goes into URLs (`/workflows/{id}`) and Redis hash fields: no slashes, colons or spaces;
# the same rule as the HTTP API's for `PUT /workflows/{id}`, so a declared id is one a client can name.
WORKFLOW_ID_PATTERN: Final[str] = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
MAX_DECLARED_WORKFLOWS: Final[int] = 100  # per service
BREAKERS_KIND: Final[str] = "circuit_breakers"  # the last part of the breaker report's routing key
MAX_REPORTED_BREAKERS: Final[int] = 100  # per worker process
MAX_BREAKER_TARGET_CHARS: Final[int] = 300
# The longest result-cache TTL a worker may declare for a job type (and a client ask for): 7 days.
MAX_CACHE_TTL_SECONDS: Final[int] = 7 * 24 * 3600

CacheTtl = Annotated[int, Field(ge=1, le=MAX_CACHE_TTL_SECONDS)]


class CancelCommand(BaseModel):
    """Broadcast on `baton.control`: stop (or never start) these tasks of a job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["cancel"] = "cancel"
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    global_task_id: str = Field(min_length=1, max_length=128)
    reason: str = "cancelled by client"
    issued_at: datetime = Field(default_factory=utc_now)
    v: Literal[1] = PROTOCOL_VERSION


class LaneOpened(BaseModel):
    """Broadcast on `baton.control` when the orchestrator opens a tenant's lane of a service (protocol
    version 1 addition): the service's running workers start consuming it at once. An older worker
    drops it as undecodable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["lane_opened"] = "lane_opened"
    service: str = Field(pattern=SERVICE_NAME_PATTERN)
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
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
    # Protocol version 1 addition: job type -> result-cache TTL (seconds) its handler declares. Sent only
    # when not empty: an older orchestrator refuses a heartbeat with a field it does not know, so a worker
    # that declares no cache TTL stays readable to it (one that does needs an orchestrator of this release).
    cache_ttls: dict[JobType, CacheTtl] = Field(default_factory=dict, max_length=1000)
    v: Literal[1] = PROTOCOL_VERSION

    @model_serializer(mode="wrap")
    def _without_empty_cache_ttls(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        if isinstance(data, dict) and not data.get("cache_ttls"):
            data.pop("cache_ttls", None)
        return data


class DeclaredWorkflow(BaseModel):
    """One workflow a worker declares: its id and its definition, the body `PUT /workflows/{id}` takes.
    The orchestrator validates the definition (this package has no workflow rules)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workflow_id: str = Field(pattern=WORKFLOW_ID_PATTERN)
    definition: dict[str, Any]


class WorkflowAnnouncement(BaseModel):
    """Published by a worker process that declares workflows, at start and every few heartbeats, on the
    events exchange under `_system.<service>.workflows` (protocol version 1 addition). A message of its
    own rather than a heartbeat field: a heartbeat forbids extra fields, so an older orchestrator would
    refuse the whole heartbeat, while it drops this message alone as undecodable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["workflow_announcement"] = "workflow_announcement"
    worker_id: str = Field(min_length=1, max_length=128)
    service: str = Field(pattern=SERVICE_NAME_PATTERN)
    workflows: list[DeclaredWorkflow] = Field(min_length=1, max_length=MAX_DECLARED_WORKFLOWS)
    timestamp: datetime = Field(default_factory=utc_now)
    v: Literal[1] = PROTOCOL_VERSION


class BreakerStatus(BaseModel):
    """One circuit breaker of a worker process: the upstream it guards (scheme://host:port) and its state."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str = Field(min_length=1, max_length=MAX_BREAKER_TARGET_CHARS)
    state: Literal["closed", "half_open", "open"]
    failures: int = Field(ge=0, description="consecutive failures counted while closed")
    opened_at: datetime | None = Field(default=None, description="when it last opened; null while closed")
    opened_total: int = Field(default=0, ge=0, description="times it opened since the process started")


class CircuitBreakerReport(BaseModel):
    """Published by a worker process with each heartbeat once it has called out through a breaker, on the
    events exchange under `_system.<service>.circuit_breakers` (protocol version 1 addition). A message
    of its own for the reason WorkflowAnnouncement is one: an older orchestrator drops it alone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["circuit_breakers"] = "circuit_breakers"
    worker_id: str = Field(min_length=1, max_length=128)
    service: str = Field(pattern=SERVICE_NAME_PATTERN)
    breakers: list[BreakerStatus] = Field(max_length=MAX_REPORTED_BREAKERS)
    timestamp: datetime = Field(default_factory=utc_now)
    v: Literal[1] = PROTOCOL_VERSION
