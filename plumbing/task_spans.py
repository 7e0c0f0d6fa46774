"""The span attributes of a task and of a task event, the same in the orchestrator and the workers."""

from __future__ import annotations

from typing import Final

from plumbing.tracing import Attributes
from protocol.envelope import TaskEnvelope
from protocol.events import TaskEvent

MESSAGING_SYSTEM: Final[Attributes] = {"messaging.system": "rabbitmq"}


def task_attributes(envelope: TaskEnvelope) -> Attributes:
    return {
        "baton.service": envelope.service,
        "baton.type": envelope.type,
        "baton.task_id": envelope.task_id,
        "baton.job_id": envelope.global_task_id,
        "baton.tenant_id": envelope.tenant_id,
        "baton.attempt": envelope.attempt,
    }


def event_attributes(event: TaskEvent) -> Attributes:
    return {
        "baton.event": event.event.value,
        "baton.service": event.service,
        "baton.task_id": event.task_id,
        "baton.job_id": event.global_task_id,
        "baton.tenant_id": event.tenant_id,
        "baton.seq": event.seq,
    }
