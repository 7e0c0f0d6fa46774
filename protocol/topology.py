"""The RabbitMQ topology: every exchange and queue name, and how to declare them.

Everything is durable and declared idempotently by whichever process starts first.
The declaring code talks to a channel through the small `TopologyChannel` protocol so
this package needs no AMQP client; aio-pika's channel satisfies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

from protocol.names import check_service_name, check_tenant_id

TASKS_EXCHANGE: Final[str] = "baton.tasks"
RETRY_EXCHANGE: Final[str] = "baton.retry"
DEAD_LETTER_EXCHANGE: Final[str] = "baton.dlx"
EVENTS_EXCHANGE: Final[str] = "baton.events"
CONTROL_EXCHANGE: Final[str] = "baton.control"

# Shared by every orchestrator replica: each event is applied to the registry by one of them.
ORCHESTRATOR_EVENTS_QUEUE: Final[str] = "baton.orchestrator.events"
QUEUE_MAX_PRIORITY: Final[int] = 10
# Delayed retries wait in one queue per (service, delay tier): a per-message TTL in a single queue
# would let a long delay at the head hold back the short ones behind it. A backoff is rounded to a tier.
RETRY_DELAY_TIERS_MS: Final[tuple[int, ...]] = (
    100,
    250,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
    1_800_000,
)
# Tenant lanes (`baton.<service>.tenant.<tenant_id>`): the orchestrator publishes each job's task to
# its tenant's lane, so one tenant's backlog queues apart from another's; workers consume the service
# queue and every lane of their service, and share their slots fairly among tenants.
LANE_INFIX: Final[str] = "tenant"
SYSTEM_ROUTING_PREFIX: Final[str] = "_system"  # not a valid tenant id, so never a tenant's key

# Headers Baton sets on messages it dead-letters itself.
REASON_HEADER: Final[str] = "x-baton-reason"
ERROR_HEADER: Final[str] = "x-baton-error"
ATTEMPTS_HEADER: Final[str] = "x-baton-attempts"
TENANT_HEADER: Final[str] = "x-baton-tenant"
ERROR_TYPE_HEADER: Final[str] = "x-baton-error-type"
JOB_ID_HEADER: Final[str] = "x-baton-job-id"
DEAD_AT_HEADER: Final[str] = "x-baton-dead-at"


class DeadLetterReason(StrEnum):
    """The `x-baton-reason` header of a message Baton parked in `baton.<service>.dead`."""

    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
    MESSAGE_TOO_LARGE = "message_too_large"
    INVALID_ENVELOPE = "invalid_envelope"
    UNKNOWN_JOB_TYPE = "unknown_job_type"
    WRONG_SERVICE = "wrong_service"
    PIPELINE_ERROR = "pipeline_error"  # a valid envelope whose processing crashed the runtime
    MAX_RETRIES_EXCEEDED = "max_retries_exceeded"


def task_queue(service: str) -> str:
    return f"baton.{check_service_name(service)}"


def lane_routing_key(service: str, tenant_id: str) -> str:
    """The key on `baton.tasks` of a tenant's lane. Neither a service name nor a tenant id holds a
    dot, so it never equals a service's own key, and the parts read back unambiguously."""
    return f"{check_service_name(service)}.{LANE_INFIX}.{check_tenant_id(tenant_id)}"


def lane_queue(service: str, tenant_id: str) -> str:
    """A tenant's lane of a service: at most 6 + 63 + 8 + 64 = 141 bytes, within AMQP's 255."""
    return f"baton.{lane_routing_key(service, tenant_id)}"


def dead_letter_queue(service: str) -> str:
    return f"{task_queue(service)}.dead"


def retry_queue(service: str, delay_ms: int) -> str:
    return f"{task_queue(service)}.retry.{delay_ms}"


def retry_routing_key(service: str, delay_ms: int) -> str:
    return f"{check_service_name(service)}.{delay_ms}"


def retry_tier(delay_seconds: float) -> int:
    """The delay tier (ms) closest to a wanted delay."""
    wanted = max(0.0, delay_seconds * 1000)
    return min(RETRY_DELAY_TIERS_MS, key=lambda tier: abs(tier - wanted))


def event_routing_key(tenant_id: str, service: str, event: str) -> str:
    return f"{check_tenant_id(tenant_id)}.{check_service_name(service)}.{event}"


def system_routing_key(service: str, kind: str) -> str:
    """Routing key of worker announcements and heartbeats on the events exchange."""
    return f"{SYSTEM_ROUTING_PREFIX}.{check_service_name(service)}.{kind}"


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    kind: str  # direct, topic or fanout


@dataclass(frozen=True)
class Binding:
    exchange: str
    routing_key: str


@dataclass(frozen=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    bindings: tuple[Binding, ...] = ()


EXCHANGES: Final[tuple[ExchangeSpec, ...]] = (
    ExchangeSpec(TASKS_EXCHANGE, "direct"),
    ExchangeSpec(RETRY_EXCHANGE, "direct"),
    ExchangeSpec(DEAD_LETTER_EXCHANGE, "direct"),
    ExchangeSpec(EVENTS_EXCHANGE, "topic"),
    ExchangeSpec(CONTROL_EXCHANGE, "fanout"),
)


def _work_queue_arguments(service: str) -> dict[str, Any]:
    return {
        "x-queue-type": "classic",  # priorities need classic queues on RabbitMQ 3.x
        "x-max-priority": QUEUE_MAX_PRIORITY,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": service,
    }


def service_queues(service: str) -> tuple[QueueSpec, ...]:
    """The work queue of a service, the queue its dead letters are parked in, and its retry delay queues."""
    return (
        QueueSpec(task_queue(service), _work_queue_arguments(service), (Binding(TASKS_EXCHANGE, service),)),
        QueueSpec(
            dead_letter_queue(service),
            {"x-queue-type": "classic"},
            (Binding(DEAD_LETTER_EXCHANGE, service),),
        ),
        *(
            QueueSpec(
                retry_queue(service, delay_ms),
                {
                    "x-queue-type": "classic",
                    "x-message-ttl": delay_ms,
                    "x-dead-letter-exchange": TASKS_EXCHANGE,
                    "x-dead-letter-routing-key": service,
                },
                (Binding(RETRY_EXCHANGE, retry_routing_key(service, delay_ms)),),
            )
            for delay_ms in RETRY_DELAY_TIERS_MS
        ),
    )


def lane_queue_spec(service: str, tenant_id: str) -> QueueSpec:
    """A tenant's lane: a work queue like the service's own, dead-lettering under the service's key.
    No `x-expires`: an expiring queue would drop the messages it holds."""
    return QueueSpec(
        lane_queue(service, tenant_id),
        _work_queue_arguments(service),
        (Binding(TASKS_EXCHANGE, lane_routing_key(service, tenant_id)),),
    )


ORCHESTRATOR_QUEUES: Final[tuple[QueueSpec, ...]] = (
    QueueSpec(
        ORCHESTRATOR_EVENTS_QUEUE,
        {"x-queue-type": "classic"},
        (Binding(EVENTS_EXCHANGE, "#"),),
    ),
)


class TopologyQueue(Protocol):
    async def bind(self, exchange: Any, routing_key: str | None = ...) -> Any: ...


class TopologyChannel(Protocol):
    async def declare_exchange(self, name: str, type: Any = ..., *, durable: bool = ...) -> Any: ...

    async def declare_queue(
        self, name: str | None = ..., *, durable: bool = ..., arguments: Any = ...
    ) -> TopologyQueue: ...


async def declare_exchanges(channel: TopologyChannel) -> None:
    for exchange in EXCHANGES:
        await channel.declare_exchange(exchange.name, exchange.kind, durable=True)


async def declare_queues(channel: TopologyChannel, queues: tuple[QueueSpec, ...]) -> None:
    for spec in queues:
        queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
        for binding in spec.bindings:
            await queue.bind(binding.exchange, routing_key=binding.routing_key)


async def declare_service(channel: TopologyChannel, service: str) -> None:
    """Exchanges plus a service's queues; safe to call from every process, any number of times."""
    await declare_exchanges(channel)
    await declare_queues(channel, service_queues(service))


async def declare_lane(channel: TopologyChannel, service: str, tenant_id: str) -> None:
    """A tenant's lane of a service (its exchange must exist: `declare_service` first)."""
    await declare_queues(channel, (lane_queue_spec(service, tenant_id),))
