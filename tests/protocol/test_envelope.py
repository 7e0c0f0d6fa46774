from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from protocol import (
    ATTEMPT_SEQ_STRIDE,
    ContextIds,
    JobStatus,
    Progress,
    TaskEnvelope,
    TaskMetadata,
    cancelled_event,
    failed_event,
    resolve_priority,
    status_event,
)


def make(**overrides: object) -> TaskEnvelope:
    fields: dict[str, object] = {"global_task_id": "job", "tenant_id": "acme", "type": "t", "service": "svc"}
    fields.update(overrides)
    return TaskEnvelope.model_validate(fields)


def test_defaults_follow_the_contract() -> None:
    env = make()
    assert env.status == "pending"
    assert env.attempt == 1
    assert env.priority == 5
    assert env.v == 1
    assert env.created_at.tzinfo is not None
    assert len(env.task_id) == 36


@pytest.mark.parametrize("tenant", ["", "a.b", "a#", "*", "_system", "a:b", "x" * 65])
def test_tenant_ids_that_would_break_routing_keys_are_refused(tenant: str) -> None:
    with pytest.raises(ValidationError):
        make(tenant_id=tenant)


@pytest.mark.parametrize("priority", [-1, 10])
def test_priority_outside_amqp_range_is_refused(priority: int) -> None:
    with pytest.raises(ValidationError):
        make(priority=priority)


@pytest.mark.parametrize(("name", "value"), [("high", 9), ("medium", 5), ("low", 1), (None, 5), (0, 0), (9, 9)])
def test_priority_names(name: str | int | None, value: int) -> None:
    assert resolve_priority(name) == value


@pytest.mark.parametrize("bad", ["urgent", 10, -1, True])
def test_bad_priorities_raise(bad: object) -> None:
    with pytest.raises(ValueError):
        resolve_priority(bad)  # type: ignore[arg-type]


def test_deadline_and_expiry() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    deadline = TaskEnvelope.deadline_for(1500, now)
    assert deadline == now + timedelta(milliseconds=1500)
    env = make(deadline=deadline)
    assert not env.is_expired(now)
    assert env.is_expired(now + timedelta(seconds=2))
    assert not make().is_expired()


def test_child_propagates_context_and_never_outlives_parent() -> None:
    parent_deadline = datetime.now(UTC) + timedelta(seconds=5)
    parent = make(
        session_id="s",
        context=ContextIds(request_id="r1", agent_id="a1"),
        metadata=TaskMetadata(user_id="u1"),
        deadline=parent_deadline,
        priority=9,
    )
    child = parent.child(service="embedding", type="embedding_request", payload={"texts": ["x"]}, timeout_ms=60_000)
    assert child.global_task_id == parent.global_task_id
    assert child.tenant_id == parent.tenant_id
    assert child.session_id == "s"
    assert child.context == parent.context
    assert child.metadata.parent_task_id == parent.task_id
    assert child.metadata.source == "system"
    assert child.metadata.user_id == "u1"
    assert child.priority == 9
    assert child.deadline == parent_deadline
    assert child.task_id != parent.task_id


def test_context_headers() -> None:
    headers = ContextIds(request_id="r", agent_id="a", conversation_id="c").as_headers()
    assert headers == {"X-Request-Id": "r", "X-Agent-Id": "a", "X-Conversation-Id": "c"}


def test_event_statuses() -> None:
    env = make(attempt=2)
    running = status_event(env, JobStatus.RUNNING, 2 * ATTEMPT_SEQ_STRIDE + 1, Progress(percentage=50, message="half"))
    assert running.status is JobStatus.RUNNING and not running.is_terminal
    assert running.data["progress"] == {"percentage": 50.0, "message": "half"}
    timed_out = failed_event(env, error="late", error_type="DeadlineExceeded", seq=5, status=JobStatus.TIMED_OUT)
    assert timed_out.status is JobStatus.TIMED_OUT and timed_out.is_terminal
    assert timed_out.data["attempts"] == 2
    assert cancelled_event(env, "user", 6).status is JobStatus.CANCELLED


def test_amqp_properties_follow_the_contract() -> None:
    env = make(priority=9)
    assert env.amqp_properties() == {
        "message_id": env.task_id,
        "correlation_id": "job",
        "priority": 9,
        "headers": {"x-baton-tenant": env.tenant_id, "x-baton-attempts": 1},
    }
