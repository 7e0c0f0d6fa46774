"""Request validation and envelope building, without services."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from orchestrator.http.schemas import MAX_WAIT_SECONDS, AgentExecuteRequest, JobCreateRequest, JobListQuery, JobSpec
from orchestrator.jobs.service import NewJob, build_envelope, record_for
from protocol.envelope import ContextIds


@pytest.mark.parametrize(("given", "expected"), [(None, 5), ("high", 9), ("low", 1), ("medium", 5), (0, 0), (9, 9)])
def test_priority_accepts_names_and_numbers(given: object, expected: int) -> None:
    body = JobCreateRequest.model_validate({"type": "llm_request", "priority": given})
    assert body.to_job().priority == expected


@pytest.mark.parametrize("given", [True, 10, -1, "urgent", "5", 2.5, [1]])
def test_priority_refuses_anything_else(given: object) -> None:
    with pytest.raises(ValidationError) as info:
        JobCreateRequest.model_validate({"type": "llm_request", "priority": given})
    assert info.value.errors()[0]["loc"][0] == "priority"


def test_wait_is_capped_not_refused() -> None:
    assert JobCreateRequest.model_validate({"type": "t", "wait": 3600}).wait == MAX_WAIT_SECONDS
    assert JobCreateRequest.model_validate({"type": "t", "wait": 2.5}).wait == 2.5
    with pytest.raises(ValidationError):
        JobCreateRequest.model_validate({"type": "t", "wait": -1})


@pytest.mark.parametrize(
    "body",
    [
        {},  # no type
        {"type": "bad type"},  # not a job type name
        {"type": "t", "payload": []},  # payload must be an object
        {"type": "t", "unknown": 1},  # unknown field
        {"type": "t", "context": {"tenant_id": "x"}},  # unknown context id
        {"type": "t", "timeout_ms": 0},
        {"type": "t", "session_id": ""},
        {"type": "t", "idempotency_key": "k" * 257},
    ],
)
def test_invalid_bodies(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        JobCreateRequest.model_validate(body)


def test_batch_items_have_no_wait() -> None:
    with pytest.raises(ValidationError):
        JobSpec.model_validate({"type": "t", "wait": 1})


def test_list_query_bounds() -> None:
    assert JobListQuery.model_validate({}).limit == 50
    assert JobListQuery.model_validate({"limit": "200", "offset": "3", "status": "queued"}).offset == 3
    for bad in ({"limit": "0"}, {"limit": "201"}, {"offset": "-1"}, {"status": "nope"}, {"sort": "x"}):
        with pytest.raises(ValidationError):
            JobListQuery.model_validate(bad)


def test_agent_request_sets_type_payload_and_context() -> None:
    body = AgentExecuteRequest.model_validate({"input": "hi", "payload": {"k": 1}, "context": {"user_id": "u"}})
    job = body.to_job("agent-7")
    assert job.type == "agent_execution"
    assert job.payload == {"k": 1, "agent_id": "agent-7", "input": "hi"}
    assert job.context == ContextIds(agent_id="agent-7", user_id="u")


def test_fingerprint_ignores_request_id_but_not_the_request() -> None:
    base = NewJob(type="t", payload={"a": 1, "b": [1, 2]}, priority=5, context=ContextIds(request_id="r1"))
    same = NewJob(type="t", payload={"b": [1, 2], "a": 1}, priority=5, context=ContextIds(request_id="r2"))
    assert base.fingerprint() == same.fingerprint()
    assert base.fingerprint() != NewJob(type="t", payload={"a": 2, "b": [1, 2]}, priority=5).fingerprint()
    assert base.fingerprint() != NewJob(type="t", payload={"a": 1, "b": [1, 2]}, priority=9).fingerprint()


def test_envelope_and_record_follow_the_contract() -> None:
    job = NewJob(
        type="echo_request",
        payload={"text": "x"},
        priority=9,
        session_id="s1",
        context=ContextIds(user_id="u1"),
        timeout_ms=1500,
    )
    envelope = build_envelope("tenant-a", "job-1", "echo", job, request_id="req-1")
    assert envelope.global_task_id == "job-1"
    assert (envelope.tenant_id, envelope.session_id, envelope.service) == ("tenant-a", "s1", "echo")
    assert envelope.context.request_id == "req-1"
    assert envelope.context.user_id == "u1"
    assert envelope.metadata.source == "api"
    assert envelope.metadata.user_id == "u1"
    assert envelope.metadata.timeout_ms == 1500
    assert envelope.deadline == envelope.created_at + timedelta(milliseconds=1500)
    # A request id the client put in the context wins over the header's.
    own = build_envelope("tenant-a", "job-1", "echo", NewJob("t", {}, 5, context=ContextIds(request_id="mine")), "hdr")
    assert own.context.request_id == "mine"

    record = record_for(envelope)
    assert record.job_id == "job-1"
    assert record.root_task_id == envelope.task_id
    assert (record.status, record.seq, record.priority) == ("queued", 1, 9)
    assert record.context == {"user_id": "u1", "request_id": "req-1"}
