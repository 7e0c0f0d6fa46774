"""What the job side needs from the rest of the orchestrator, as small structural interfaces.

`jobs/` depends on these, never on the classes behind them, so a job service, sweeper or replay
can be run on the in-memory fakes of `tests/fakes` as well as on the real ones:

    TaskRegistry      orchestrator.store.registry.RedisTaskRegistry
    UpdateBus         orchestrator.live.update_bus.UpdateBus
    TaskPublisher     orchestrator.broker.publisher.TaskPublisher
    ServiceLookup     orchestrator.store.directory.ServiceDirectory
    DeadLetterSource  orchestrator.broker.dead_letter_queues.DeadLetterQueues
    TaskOwnership     orchestrator.store.task_owners.TaskOwners
    WorkflowStarter   orchestrator.workflows.job_starter.DeclaredWorkflowJobs
    TokenBuckets      orchestrator.store.token_bucket.RedisTokenBucket
    JobCounters       orchestrator.store.job_stats.JobStats

Each port lists only the members the job side calls; `tests/contracts` holds the behaviour every
implementation of the first three must show, run against both the fake and the real one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from orchestrator.broker.dead_letter_queues import DeadLetter
from orchestrator.broker.queue_inspector import QueueStats
from orchestrator.models import CacheSlot, CancelResult, CreateResult, JobRecord, JobUpdate
from orchestrator.rates import Rate
from orchestrator.store.registry import ApplyOutcome
from orchestrator.store.token_bucket import Taken
from protocol.control import CancelCommand, WorkerHeartbeat
from protocol.envelope import TaskEnvelope
from protocol.events import TaskEvent

if TYPE_CHECKING:  # service.py imports this module; the port only names the request type
    from orchestrator.jobs.service import NewJob


class TaskRegistry(Protocol):
    """The GlobalTaskRegistry of jobs. Errors: `orchestrator.errors.RegistryError` and its subclasses."""

    async def create(
        self,
        record: JobRecord,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
        cache: CacheSlot | None = None,
    ) -> CreateResult:
        """Store a new job; with an idempotency key, the same request finds the first job (EXISTING)
        and a different one is refused (CONFLICT), both carrying the stored record. With a cache slot
        (and no key), an identical open job is found (COALESCED) or one that completed within the TTL
        (CACHED); else the new job takes the slot until it ends."""
        ...

    async def get(self, tenant_id: str, job_id: str) -> JobRecord | None: ...

    async def get_with_envelope(self, tenant_id: str, job_id: str) -> JobRecord | None:
        """`get`, and the root task's stored envelope (None when not kept) in the same read."""
        ...

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
        """A page of the tenant's jobs, newest first, and how many match in total."""
        ...

    async def cancel(self, tenant_id: str, job_id: str, reason: str) -> tuple[CancelResult, JobUpdate | None]:
        """Make an open job cancelled (terminal); the update announces it. A terminal job stays as it is."""
        ...

    async def discard(self, tenant_id: str, job_id: str) -> None:
        """Undo a create whose publish certainly failed: the job and its idempotency key go."""
        ...

    async def apply(self, event: TaskEvent) -> ApplyOutcome:
        """Apply one event atomically, in seq order per task: late, repeated and after-terminal events
        are dropped, ones no producer of the job could have sent refused (`ApplyOutcome.dropped` says why)."""
        ...

    async def apply_many(self, events: Sequence[TaskEvent]) -> list[ApplyOutcome]:
        """`apply` for each event in the order given, in one step: one outcome per event (a delivery
        window's events; RegistryError for all of them when the store failed)."""
        ...


class JobCounters(Protocol):
    """Per-minute figures of jobs made and ended (GET /stats, GET /queues): counted without waiting."""

    def job_created(self, tenant_id: str, service: str) -> None: ...

    def job_finished(self, tenant_id: str, service: str, status: str, created_at: str) -> None: ...


class TerminalWatch(Protocol):
    """One job's terminal update, awaited; entered before the job is created so none is missed."""

    def __enter__(self) -> TerminalWatch: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def terminal(self, timeout: float) -> JobUpdate | None:
        """The terminal update, or None when none came within `timeout` seconds."""
        ...


class UpdateBus(Protocol):
    """JobUpdates shared by every replica: delivered to this replica's listeners and watches at once."""

    def announce(self, update: JobUpdate) -> Awaitable[None]:
        """Deliver now and send on without waiting; the result is for callers that want to know."""
        ...

    def announce_many(self, updates: Sequence[JobUpdate]) -> Awaitable[None]:
        """`announce` for each update in order, sent on together as one message (a delivery window's)."""
        ...

    async def publish(self, update: JobUpdate) -> None:
        """Deliver now and return once sent on (RegistryError when it could not be)."""
        ...

    def add_listener(self, fn: Callable[[JobUpdate], None]) -> Callable[[], None]:
        """Call `fn` with every update; returns the remover."""
        ...

    def watch(self, tenant_id: str, job_id: str) -> TerminalWatch: ...


class TaskPublisher(Protocol):
    """Task envelopes and cancel broadcasts to the broker. Errors: `orchestrator.errors.BrokerError`."""

    @property
    def connected(self) -> bool: ...

    def encode_task(self, envelope: TaskEnvelope) -> bytes:
        """The message body, or UnpublishableJob (not encodable, or over the message cap)."""
        ...

    async def publish_task(
        self, envelope: TaskEnvelope, *, reply_to: str | None = None, body: bytes | None = None
    ) -> None:
        """Publish to the service's queue; returns once the broker confirmed it."""
        ...

    async def publish_cancel(self, command: CancelCommand) -> None: ...

    async def queue_stats(self, queues: Sequence[str]) -> dict[str, QueueStats | None]:
        """Ready messages and consumers per queue; None for a queue that does not exist."""
        ...

    async def lane_queues(self, services: Sequence[str]) -> dict[str, list[str]]:
        """The tenant lanes (queue names) of each service. Errors: `orchestrator.errors.RegistryError`."""
        ...


class ServiceLookup(Protocol):
    """Which service serves a job type, and which of its workers are alive."""

    async def service_for(self, job_type: str) -> str | None: ...

    async def known_job_types(self) -> dict[str, str]: ...

    async def live_workers(self, service: str) -> list[WorkerHeartbeat]: ...


class DeadLetterBrowse(Protocol):
    """One pass over a service's parked tasks."""

    scanned: int
    truncated: bool

    def letters(self) -> AsyncIterator[DeadLetter]: ...

    async def ack(self, letter: DeadLetter) -> None: ...


class DeadLetterSource(Protocol):
    def browse(self, service: str) -> AbstractAsyncContextManager[DeadLetterBrowse | None]:
        """A browse of the service's dead letters (None when its queue does not exist)."""
        ...


class TaskOwnership(Protocol):
    async def owns(self, tenant_id: str, job_id: str | None, task_id: str | None) -> bool:
        """Whether the tenant's job has that task (proves an undecodable parked message is its own)."""
        ...


class WorkflowStarter(Protocol):
    """Runs a job as the workflow that a worker declared for its job type, instead of as one task."""

    async def start(
        self, tenant_id: str, job_id: str, service: str, job: NewJob, request_id: str
    ) -> tuple[JobRecord, bool] | None:
        """Start the workflow declared under `job.type` by `service` (the one that serves the type) as
        job `job_id`: (its record, True), or (the job an idempotency key found, False); None when no
        such workflow is declared, and the job runs as one task. IdempotencyConflict as for any job."""
        ...


class TokenBuckets(Protocol):
    """Token buckets by key, shared by every replica."""

    async def take(self, key: str, rate: Rate, cost: int) -> Taken:
        """Spend `cost` tokens if the bucket holds them; RegistryError when the store failed."""
        ...
