"""The task envelope (protocol version 1): what travels on a service queue."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from protocol.names import JOB_TYPE_PATTERN, SERVICE_NAME_PATTERN, TENANT_ID_PATTERN
from protocol.priorities import DEFAULT_PRIORITY, MAX_PRIORITY
from protocol.topology import ATTEMPTS_HEADER, TENANT_HEADER

PROTOCOL_VERSION: Literal[1] = 1

JobSource = Literal["api", "scheduled", "system", "workflow"]


def new_id() -> str:
    return str(uuid.uuid4())


def utc_now() -> datetime:
    return datetime.now(UTC)


class ContextIds(BaseModel):
    """Ids propagated to every child task and every outgoing HTTP call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_id: str | None = None
    conversation_id: str | None = None
    collection_id: str | None = None
    user_id: str | None = None
    request_id: str | None = None

    def as_headers(self) -> dict[str, str]:
        """HTTP headers that carry these ids (X-Agent-Id, X-Request-Id, ...)."""
        return {
            "X-" + name.replace("_id", "-Id").replace("_", "-").title(): value
            for name, value in self.model_dump().items()
            if value is not None
        }


class TaskMetadata(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    source: JobSource = "api"
    user_id: str | None = None
    timeout_ms: int | None = Field(default=None, gt=0)
    parent_task_id: str | None = None


class TaskEnvelope(BaseModel):
    """One unit of work on one service queue; `task_id` is also the AMQP message_id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: str = Field(default_factory=new_id, min_length=1, max_length=128)
    global_task_id: str = Field(min_length=1, max_length=128)
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    session_id: str | None = Field(default=None, max_length=256)
    type: str = Field(pattern=JOB_TYPE_PATTERN)
    service: str = Field(pattern=SERVICE_NAME_PATTERN)
    priority: int = Field(default=DEFAULT_PRIORITY, ge=0, le=MAX_PRIORITY)
    status: Literal["pending"] = "pending"
    created_at: datetime = Field(default_factory=utc_now)
    attempt: int = Field(default=1, ge=1)
    deadline: datetime | None = None
    context: ContextIds = Field(default_factory=ContextIds)
    metadata: TaskMetadata = Field(default_factory=TaskMetadata)
    payload: dict[str, Any] = Field(default_factory=dict)
    v: Literal[1] = PROTOCOL_VERSION

    @staticmethod
    def deadline_for(timeout_ms: int | None, now: datetime | None = None) -> datetime | None:
        if timeout_ms is None:
            return None
        return (now or utc_now()) + timedelta(milliseconds=timeout_ms)

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.deadline is not None and (now or utc_now()) >= self.deadline

    def child(
        self,
        *,
        service: str,
        type: str,
        payload: dict[str, Any],
        priority: int | None = None,
        timeout_ms: int | None = None,
    ) -> TaskEnvelope:
        """A child task of the same job: same tenant, session and context ids."""
        deadline = self.deadline_for(timeout_ms)
        if self.deadline is not None and (deadline is None or deadline > self.deadline):
            deadline = self.deadline  # a child never outlives its parent's deadline
        return TaskEnvelope(
            global_task_id=self.global_task_id,
            tenant_id=self.tenant_id,
            session_id=self.session_id,
            type=type,
            service=service,
            priority=self.priority if priority is None else priority,
            deadline=deadline,
            context=self.context,
            metadata=TaskMetadata(
                source="system",
                user_id=self.metadata.user_id,
                timeout_ms=timeout_ms,
                parent_task_id=self.task_id,
            ),
            payload=payload,
        )

    def amqp_properties(self) -> dict[str, Any]:
        """The AMQP properties every message carrying this task has (DESIGN: message_id is the task id,
        correlation_id the job id, and the priority is the AMQP priority). The tenant and attempt ride
        in headers too, so a worker that cannot read the body (too large, corrupt) can still tell the
        job its task failed. They are claims, proof of nothing: readers check them against the registry."""
        return {
            "message_id": self.task_id,
            "correlation_id": self.global_task_id,
            "priority": self.priority,
            "headers": {TENANT_HEADER: self.tenant_id, ATTEMPTS_HEADER: self.attempt},
        }

    def next_attempt(self) -> TaskEnvelope:
        return self.model_copy(update={"attempt": self.attempt + 1})
