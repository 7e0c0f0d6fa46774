"""Event sequence numbers and failure classification."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel, ValidationError

from protocol.envelope import TaskEnvelope
from protocol.events import ATTEMPT_SEQ_STRIDE, JobStatus
from workers import PermanentError
from workers.runtime.failures import Failure, FailurePolicy
from workers.runtime.sequence import EventSequence


def make(attempt: int = 1) -> TaskEnvelope:
    return TaskEnvelope(global_task_id="job", tenant_id="t", type="x", service="svc", attempt=attempt)


def test_first_delivery_counts_from_the_attempt_base() -> None:
    seq = EventSequence.for_delivery(make(attempt=2), redelivered=False)
    assert [seq.next(), seq.next()] == [2 * ATTEMPT_SEQ_STRIDE + 1, 2 * ATTEMPT_SEQ_STRIDE + 2]


def test_redeliveries_start_above_earlier_runs_of_the_same_attempt() -> None:
    envelope = make()
    first_run = EventSequence.for_delivery(envelope, redelivered=False)
    last_of_first = max(first_run.next() for _ in range(50))
    early = EventSequence.for_delivery(envelope, redelivered=True, now=envelope.created_at + timedelta(seconds=2))
    later = EventSequence.for_delivery(envelope, redelivered=True, now=envelope.created_at + timedelta(seconds=9))
    early_first, later_first = early.next(), later.next()
    assert last_of_first < early_first < later_first < 2 * ATTEMPT_SEQ_STRIDE
    far = EventSequence.for_delivery(envelope, redelivered=True, now=envelope.created_at + timedelta(days=30))
    assert far.next() < 2 * ATTEMPT_SEQ_STRIDE  # never spills into the next attempt's range


class Model(BaseModel):
    n: int


def test_failures_from_exceptions_and_validation() -> None:
    assert Failure.from_exception(RuntimeError("x")) == Failure("x", "RuntimeError", JobStatus.FAILED, True)
    assert not Failure.from_exception(PermanentError("no")).retryable
    assert Failure.from_exception(KeyError("k")).error == "'k'"
    assert len(Failure.from_exception(ValueError("e" * 5000)).error) == 2000
    with pytest.raises(ValidationError) as caught:
        Model.model_validate({"n": "x"})
    failure = Failure.invalid_payload(Model, caught.value)
    assert (failure.error_type, failure.retryable) == ("ValidationError", False)
    assert failure.error == (
        "payload does not match Model: n: Input should be a valid integer, unable to parse string as an integer"
    )


def test_policy_reports_a_final_failure_event() -> None:
    envelope = make(attempt=3)
    event = FailurePolicy().outcome(envelope, Failure.deadline("too late"), seq=7)
    assert event.data == {"error": "too late", "error_type": "DeadlineExceeded", "attempts": 3, "status": "timed_out"}
    assert event.status is JobStatus.TIMED_OUT and event.seq == 7
