"""Request and response bodies of the HTTP API; the OpenAPI document is generated from them."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from orchestrator.broker.deployment_check import DeploymentHealth
from orchestrator.broker.event_consumer import ConsumerState
from orchestrator.jobs.service import NewJob
from orchestrator.live.update_bus import BusState
from orchestrator.models import JobParent
from protocol.control import MAX_CACHE_TTL_SECONDS
from protocol.envelope import ContextIds
from protocol.events import JobStatus
from protocol.names import JOB_TYPE_PATTERN
from protocol.priorities import MAX_PRIORITY, resolve_priority

MAX_WAIT_SECONDS: Final[float] = 60.0
MAX_BATCH_ITEMS: Final[int] = 1000
MAX_PAGE_SIZE: Final[int] = 200
MAX_TIMEOUT_MS: Final[int] = 7 * 24 * 3600 * 1000
MAX_OFFSET: Final[int] = 1_000_000_000  # past any real listing; Redis refuses offsets beyond 64 bits
# What JSON Schema cannot say about a payload (it cannot tell 10**30 from 1e30).
_PAYLOAD_LIMITS: Final[str] = (
    "integers must lie within -2**63 .. 2**64-1 and strings be Unicode text (else 422 unencodable_payload); "
    "the task message at most BATON_MAX_MESSAGE_BYTES (else 413 payload_too_large)"
)


def _unicode_text(value: str) -> str:
    # JSON may escape a lone surrogate (\ud800); such a string has no UTF-8 form, so it could
    # not become a Redis key or an AMQP message.
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("the string holds a lone surrogate (\\ud800-\\udfff), which is not Unicode text") from None
    return value


Text = Annotated[str, AfterValidator(_unicode_text)]


def _json_number(value: Any) -> Any:
    # pydantic's lax mode reads "5" and true as numbers; JSON, and the OpenAPI document, do not.
    if isinstance(value, str | bool):
        raise ValueError("expected a JSON number")
    return value


# The bounds come before the validator: after it, pydantic documents them as unknown keywords ("gt": 0).
TimeoutMs = Annotated[int, Field(gt=0, le=MAX_TIMEOUT_MS), BeforeValidator(_json_number)]
WaitSeconds = Annotated[float, Field(ge=0), BeforeValidator(_json_number)]


class CacheRequest(BaseModel):
    """Use the result cache for this job, keeping its result `ttl_seconds` once it completes."""

    model_config = ConfigDict(extra="forbid")

    ttl_seconds: Annotated[int, Field(ge=1, le=MAX_CACHE_TTL_SECONDS), BeforeValidator(_json_number)] = Field(
        description=f"seconds the result is kept, 1 to {MAX_CACHE_TTL_SECONDS} (7 days)"
    )


def _cache_choice(value: Any) -> Any:
    # Only false itself: JSON 0 is not a choice (pydantic's Literal[False] would take it).
    if value is not None and value is not False and not isinstance(value, dict | CacheRequest):
        raise ValueError(
            'cache takes {"ttl_seconds": N} to use the result cache or false to skip it; leave it out for the '
            "job type's default"
        )
    return value


Cache = Annotated[
    Literal[False] | CacheRequest | None,
    BeforeValidator(_cache_choice),
    Field(
        description="the result cache: {ttl_seconds} to use it, false to skip it; left out, the job type's default "
        "(off unless its worker declares a cache_ttl; embedding_request: 3600 s). A hit answers 200 at once with "
        "from_cache; a job identical (tenant, type, payload) to one still running attaches to it (coalesced). "
        "Ignored with an idempotency_key, whose job is always its own (its result is still stored)."
    ),
]


def _priority_value(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 6.0 is an integer to JSON Schema, as to the document
    if value is not None and not isinstance(value, int | str):
        raise ValueError("priority must be a name or an integer 0-9")
    return resolve_priority(value)  # refuses booleans, out-of-range numbers and unknown names


Priority = Annotated[
    # The bounds only document the range (resolve_priority enforces it before they are checked).
    Annotated[int, Field(ge=0, le=MAX_PRIORITY)] | Literal["high", "medium", "low"] | None,
    BeforeValidator(_priority_value),
    Field(description="high (9), medium (5, the default), low (1), or an integer 0-9"),
]


class JobSpec(BaseModel):
    """One job as a client describes it (an item of POST /jobs/batch)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(pattern=JOB_TYPE_PATTERN, description="job type, e.g. llm_request")
    payload: dict[str, Any] = Field(default_factory=dict, description=f"the job type's own input; {_PAYLOAD_LIMITS}")
    priority: Priority = None
    session_id: Text | None = Field(default=None, min_length=1, max_length=256)
    context: ContextIds = Field(
        default_factory=ContextIds, description="ids propagated to every task; request_id defaults to X-Request-Id"
    )
    timeout_ms: TimeoutMs | None = Field(default=None, description="deadline, from now")
    idempotency_key: Text | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="the same key and body within the job TTL return the same job; another body answers 409",
    )
    cache: Cache = None

    def to_job(self) -> NewJob:
        return NewJob(
            type=self.type,
            payload=self.payload,
            priority=resolve_priority(self.priority),
            session_id=self.session_id,
            context=self.context,
            timeout_ms=self.timeout_ms,
            idempotency_key=self.idempotency_key,
            cache_ttl=None if self.cache is None else self.cache.ttl_seconds if self.cache else 0,
        )


class WaitOption(BaseModel):
    wait: WaitSeconds | None = Field(
        default=None,
        description=f"seconds to wait for the outcome (at most {MAX_WAIT_SECONDS:g}; larger values are capped)",
    )

    @field_validator("wait")
    @classmethod
    def _cap_wait(cls, value: float | None) -> float | None:
        return None if value is None else min(value, MAX_WAIT_SECONDS)


class JobCreateRequest(JobSpec, WaitOption):
    """POST /jobs."""


class AgentExecuteRequest(WaitOption):
    """POST /jobs/agent/{agent_id}/execute: an agent_execution job; `agent_id` goes to payload and context."""

    model_config = ConfigDict(extra="forbid")

    input: str | None = Field(default=None, description="the user's message to the agent")
    payload: dict[str, Any] = Field(
        default_factory=dict, description=f"more agent input, merged into the payload; {_PAYLOAD_LIMITS}"
    )
    priority: Priority = None
    session_id: Text | None = Field(default=None, min_length=1, max_length=256)
    context: ContextIds = Field(default_factory=ContextIds)
    timeout_ms: TimeoutMs | None = None
    idempotency_key: Text | None = Field(default=None, min_length=1, max_length=256)

    def to_job(self, agent_id: str) -> NewJob:
        payload = {**self.payload, "agent_id": agent_id}
        if self.input is not None:
            payload["input"] = self.input
        return NewJob(
            type="agent_execution",
            payload=payload,
            priority=resolve_priority(self.priority),
            session_id=self.session_id,
            context=self.context.model_copy(update={"agent_id": agent_id}),
            timeout_ms=self.timeout_ms,
            idempotency_key=self.idempotency_key,
        )


class BatchRequest(BaseModel):
    """POST /jobs/batch: items are validated one by one, so one bad item does not reject the rest."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[Any] = Field(
        min_length=1, max_length=MAX_BATCH_ITEMS, description="JobSpec objects (the POST /jobs body without wait)"
    )


def _plus_in_query(value: Any) -> Any:
    # A query string decodes an unescaped "+" as a space: "...T10:00:00+02:00" arrives as "...T10:00:00 02:00".
    if isinstance(value, str) and re.search(r" \d\d(:?\d\d)?$", value):
        return value[: value.rindex(" ")] + "+" + value[value.rindex(" ") + 1 :]
    return value


QueryTime = Annotated[datetime, BeforeValidator(_plus_in_query)]


class JobListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: JobStatus | None = None
    type: str | None = Field(default=None, pattern=JOB_TYPE_PATTERN)
    session_id: Text | None = Field(default=None, min_length=1, max_length=256)
    created_after: QueryTime | None = Field(
        default=None, description="ISO-8601; jobs created at or after it (to the millisecond; no zone: UTC)"
    )
    created_before: QueryTime | None = Field(
        default=None, description="ISO-8601; jobs created before it (to the millisecond; no zone: UTC)"
    )
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    limit: int = Field(default=50, ge=1, le=MAX_PAGE_SIZE)

    @model_validator(mode="after")
    def _ordered_window(self) -> JobListQuery:
        after, before = self.created_after, self.created_before
        if after is not None and before is not None and _utc(after) > _utc(before):
            raise ValueError("created_after is later than created_before")
        return self


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class ErrorBody(BaseModel):
    error: str = Field(description="a stable machine-readable code")
    detail: Any = Field(description="what went wrong, for humans (422: pydantic's error list)")


class UnavailableBody(ErrorBody):
    job_id: str | None = Field(
        default=None,
        description="publish_unconfirmed only: the job was kept and may still run; follow it, or retry with the "
        "same idempotency key to get it back",
    )


class QuotaExceededBody(ErrorBody):
    requested: int = Field(description="the jobs this request would have created (a batch: its item count)")
    available: int = Field(description="the jobs the tenant may create right now")
    burst: int = Field(description="the most the tenant's quota allows at once")


class UnknownJobTypeBody(ErrorBody):
    known_types: dict[str, str] | None = Field(default=None, description="unknown_job_type only: job type -> service")


class JobAccepted(BaseModel):
    """202 while the job runs; 200 once terminal (from the result cache, an idempotent replay or within `wait`)."""

    job_id: str
    status: JobStatus
    tracking_url: str
    websocket_url: str
    created_at: str
    created: bool = Field(description="false when an idempotency key returned an earlier job")
    result: Any = Field(default=None, description="set when status is completed")
    error: dict[str, Any] | None = Field(default=None, description="set when failed, cancelled or timed_out")
    from_cache: bool = Field(
        default=False, description="the result cache answered: job_id names the job that computed the result"
    )
    coalesced: bool = Field(
        default=False, description="an identical job was running: job_id names it, and its outcome is this request's"
    )


class CacheCleared(BaseModel):
    type: str
    removed: int = Field(description="entries removed (expired ones not counted)")


class JobView(BaseModel):
    """The registry record of a job."""

    job_id: str
    global_task_id: str
    tenant_id: str
    session_id: str | None
    type: str
    service: str
    root_task_id: str
    priority: int
    status: JobStatus
    created_at: str
    updated_at: str
    seq: int
    delegated_services: list[dict[str, Any]]
    progress: dict[str, Any] | None
    result: Any
    error: dict[str, Any] | None
    context: dict[str, Any]
    attempt: int = Field(description="the root task's attempt: grows with every retry and replay")
    parent: JobParent | None = Field(
        default=None,
        description="set when a service made the job for one of its tasks (a worker's ctx.submit_job): that "
        "task's job, task id and service",
    )
    retry_of: str | None = Field(
        default=None, description="set on a job made by POST /jobs/{job_id}/retry: the job it runs again"
    )


class JobQuery(BaseModel):
    """GET /jobs/{job_id}: what to add to the record."""

    model_config = ConfigDict(extra="forbid")

    include: Literal["payload"] | None = Field(
        default=None,
        description="payload: the record also carries the job's payload (read with it; costs nothing when not asked)",
    )


class JobDetailView(JobView):
    """GET /jobs/{job_id}: the record; with ?include=payload also the payload."""

    payload: dict[str, Any] | None = Field(
        default=None,
        description="only with ?include=payload: the payload the job was created with; null when it is no longer "
        "kept (a workflow execution's job keeps none)",
    )


class JobList(BaseModel):
    jobs: list[JobView]
    total: int
    offset: int
    limit: int


class JobResult(BaseModel):
    job_id: str
    status: JobStatus
    result: Any = None
    progress: dict[str, Any] | None = None


class JobFailedBody(ErrorBody):
    job_id: str
    status: JobStatus
    job_error: dict[str, Any] | None


class CancelResponse(BaseModel):
    job_id: str
    status: JobStatus


class BatchItem(BaseModel):
    index: int
    job_id: str | None = None
    status: JobStatus | None = None
    created: bool | None = None
    from_cache: bool | None = Field(default=None, description="as in POST /jobs; the item then carries the result")
    coalesced: bool | None = Field(default=None, description="as in POST /jobs")
    result: Any = None
    error: str | None = None
    detail: Any = None


class BatchResponse(BaseModel):
    jobs: list[BatchItem]
    accepted: int
    rejected: int


class BreakerHealth(BaseModel):
    """A circuit breaker of the service's workers on one upstream target, not closed in at least one of them."""

    target: str = Field(description="scheme://host:port")
    state: Literal["half_open", "open"] = Field(description="the worst over the service's live workers")
    failures: int = Field(description="the most consecutive failures any of them counted")
    opened_at: datetime | None = Field(description="when it last opened in any of them")
    workers: int = Field(description="live worker processes whose breaker on this target is not closed")


class FlowLimitsHealth(BaseModel):
    """A service's limits over all its worker processes (`Worker(rate_limit=..., max_concurrency=...)`)."""

    rate_limit: str | None = Field(description="tasks started per window, e.g. `100/m`")
    max_concurrency: int | None
    running: int = Field(description="tasks holding a concurrency lease now")
    waits: dict[str, int] = Field(description="tasks that waited, by limit (`rate`, `concurrency`)")
    wait_seconds: dict[str, float] = Field(description="their total wait, by limit")


class ServiceHealth(BaseModel):
    queue: str
    messages: int | None = Field(
        description="ready messages in the service queue and its tenant lanes; null when unknown "
        "(broker down, queue missing, lanes unreadable)"
    )
    consumers: int | None = Field(description="consumers of the service queue (each worker process has one)")
    dead_letters: int | None = Field(
        default=None, description="messages parked in its dead-letter queue; null when unknown (broker down)"
    )
    live_workers: int | None
    circuit_breakers: list[BreakerHealth] = Field(
        default_factory=list, description="the breakers of its live workers that are open or half-open"
    )
    limits: FlowLimitsHealth | None = Field(default=None, description="null when the service has no flow limits")


class HealthReport(BaseModel):
    status: Literal["ok", "unavailable"]
    broker: Literal["up", "down"]
    redis: Literal["up", "down"]
    down: list[str] = Field(default_factory=list, description="the dependencies that are down: broker, redis")
    event_consumer: ConsumerState = Field(description="this replica's consumer of baton.orchestrator.events")
    update_bus: BusState = Field(description="this replica's Redis pub/sub")
    deployment: DeploymentHealth = Field(default_factory=DeploymentHealth)
    services: dict[str, ServiceHealth]


MAX_DEAD_LETTER_PAGE: Final[int] = 1000


class DeadLetterQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    offset: int = Field(default=0, ge=0, le=MAX_OFFSET, description="visible parked tasks to skip")
    limit: int = Field(default=100, ge=1, le=MAX_DEAD_LETTER_PAGE)


class DeadLetterEntry(BaseModel):
    task_id: str | None
    job_id: str | None
    tenant_id: str | None
    type: str | None
    reason: str | None = Field(description="why it was parked (x-baton-reason, or RabbitMQ's own reason)")
    attempts: int | None
    error: str | None
    error_type: str | None
    dead_at: str | None
    decodable: bool = Field(description="false when the body is not a task envelope: it cannot be replayed")
    decode_error: str | None
    size: int = Field(description="body size in bytes")
    headers: dict[str, Any] = Field(description="the message's AMQP headers (long text clipped, deep values elided)")


class DeadLetterList(BaseModel):
    service: str
    queue: str
    entries: list[DeadLetterEntry]
    matched: int = Field(description="visible parked tasks seen by this scan")
    scanned: int = Field(description="messages read from the queue (all tenants')")
    truncated: bool = Field(description="the scan stopped at its bound; more may be parked")
    offset: int
    limit: int


class ReplayRequest(BaseModel):
    """Exactly one of `task_ids` and `all`."""

    # The rule of _one_selection, in the document, so that clients and fuzzers know it.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {"required": ["task_ids"], "properties": {"task_ids": {"type": "array"}, "all": {"const": False}}},
                {"required": ["all"], "properties": {"all": {"const": True}, "task_ids": {"type": "null"}}},
            ]
        },
    )

    task_ids: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None, min_length=1, max_length=MAX_BATCH_ITEMS
    )
    all: bool = Field(default=False, strict=True)

    @model_validator(mode="after")
    def _one_selection(self) -> ReplayRequest:
        if (self.task_ids is not None) == self.all:
            raise ValueError('give either "task_ids": [...] or "all": true')
        return self


class ReplayedTask(BaseModel):
    task_id: str
    job_id: str
    attempt: int


class ReplayItemError(BaseModel):
    task_id: str | None
    error: str = Field(
        description="not_found, undecodable, duplicate, job_not_found, job_<status>, task_<status>, "
        "publish_failed, publish_unconfirmed"
    )
    detail: str


class ReplayResponse(BaseModel):
    replayed: list[ReplayedTask]
    errors: list[ReplayItemError]
    truncated: bool = Field(description="the scan stopped at its bound; run the replay again for the rest")


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minutes: int = Field(default=60, ge=1, le=1440, description="how many minutes, up to now, 1 to 1440 (a day)")


class LatencyFigures(BaseModel):
    latency_p50_ms: float | None = Field(
        description="median time from creation to the end (completed, failed, timed out or cancelled), from the "
        "latency histogram; null when no job ended"
    )
    latency_p95_ms: float | None = Field(description="95th percentile of the same")


class StatsCounts(LatencyFigures):
    created: int = Field(description="jobs made")
    completed: int
    failed: int = Field(description="jobs that ended failed (timed out and cancelled ones are counted apart)")
    timed_out: int
    cancelled: int


class StatsMinute(StatsCounts):
    minute: datetime = Field(description="the minute's start (UTC)")


class StatsReport(BaseModel):
    tenant_id: str | None = Field(description="the key's tenant; null for the admin key (every tenant summed)")
    minutes: int
    latency_bucket_bounds_ms: list[int] = Field(
        description="the histogram's upper bounds, ms; a percentile is interpolated inside its bucket, and one past "
        "the last bound reads as the last bound"
    )
    buckets: list[StatsMinute] = Field(description="one per minute, oldest first, the current (partial) one last")
    totals: StatsCounts = Field(description="over every bucket (percentiles from the summed histograms)")


class QueueRates(BaseModel):
    """Jobs per second over about the last minute (this minute's count plus the share of the previous
    minute still inside the window)."""

    published_per_second: float
    completed_per_second: float
    failed_per_second: float


class WorkerView(BaseModel):
    worker_id: str
    host: str | None
    pid: int | None
    concurrency: int | None
    in_flight: int | None = Field(description="tasks running as of its last heartbeat")
    last_heartbeat: datetime
    age_seconds: float = Field(description="since its last heartbeat")


class QueueView(BaseModel):
    service: str
    queue: str
    depth: int | None = Field(
        description="ready messages: the admin key, the service queue and every tenant lane; a tenant key, its own "
        "lane; null when the broker or Redis cannot say"
    )
    consumers: int | None = Field(description="consumers of the service queue (each worker process has one)")
    dead_letters: int | None = Field(
        description="parked tasks in baton.<service>.dead: all of them for the admin key, the tenant's own for a "
        "tenant key (a bounded scan, as GET /dead-letters/{service}); null when unknown"
    )
    rates: QueueRates = Field(description="the admin key: every tenant's jobs of the service; a tenant key: its own")
    workers: list[WorkerView] = Field(description="the live worker processes of the service (shared by every tenant)")


class QueuesReport(BaseModel):
    tenant_id: str | None = Field(description="the key's tenant; null for the admin key")
    services: list[QueueView] = Field(
        description="the built-in services and every announced service with a live worker, by name"
    )
