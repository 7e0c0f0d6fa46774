"""Which task a message is, from its AMQP properties alone, for a body the worker cannot read.

Baton's publishers set message_id (task id), correlation_id (job id) and the tenant and attempt
headers on every task (TaskEnvelope.amqp_properties). With all four present and well formed, a
refused message (too large, undecodable, foreign content type) still names its job, so the job
can be failed at once instead of staying queued until the sweeper gives up on it.

Headers are claims: anyone who can publish to the work queue can write them. That gives nothing
away: the failure event they lead to is applied only to a job the registry holds under that
tenant, with that task, for this service; and whoever could forge the headers could publish that
event to the events exchange directly.
"""

from __future__ import annotations

from typing import Any, Final, TypeGuard

from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from protocol.envelope import TaskEnvelope
from protocol.names import is_job_type, is_tenant_id
from protocol.priorities import DEFAULT_PRIORITY, MAX_PRIORITY
from protocol.topology import ATTEMPTS_HEADER, TENANT_HEADER

UNREAD_TYPE: Final[str] = "unread"  # the job type of a task known only by its properties


def identified_task(message: AbstractIncomingMessage, service: str) -> TaskEnvelope | None:
    """The task as far as its properties tell (no payload), or None when they do not name it whole."""
    headers = message.headers or {}
    tenant_id, attempt = headers.get(TENANT_HEADER), headers.get(ATTEMPTS_HEADER)
    if not (is_tenant_id(tenant_id) and _is_attempt(attempt) and message.message_id and message.correlation_id):
        return None
    priority = message.priority if message.priority is not None and 0 <= message.priority <= MAX_PRIORITY else None
    try:
        return TaskEnvelope(
            task_id=message.message_id,
            global_task_id=message.correlation_id,
            tenant_id=tenant_id,
            type=message.type if is_job_type(message.type) else UNREAD_TYPE,
            service=service,
            priority=DEFAULT_PRIORITY if priority is None else priority,
            attempt=attempt,
        )
    except ValidationError:
        return None  # an id too long to be one of ours


def _is_attempt(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
