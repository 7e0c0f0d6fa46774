"""Event sequence numbers, failure classification, RetryPolicy backoff and time limit resolution."""

from __future__ import annotations

import logging
import re

import pytest
from pydantic import BaseModel, ValidationError

from protocol.envelope import TaskEnvelope
from protocol.events import ATTEMPT_SEQ_STRIDE, JobStatus
from protocol.services import BUILTIN_SERVICES
from protocol.topology import retry_tier
from workers import ConfigurationError, PermanentError, RetryPolicy, Worker
from workers.runtime.attempt import EventSequence, Failure
from workers.runtime.executions import TimeLimits
from workers.runtime.handler_traceback import MAX_BYTES, MAX_FRAMES, handler_traceback
from workers.services import builtin_worker


def make(attempt: int = 1) -> TaskEnvelope:
    return TaskEnvelope(global_task_id="job", tenant_id="t", type="x", service="svc", attempt=attempt)


def test_a_delivery_counts_from_its_attempt_base_and_a_redelivery_from_the_next() -> None:
    seq = EventSequence.for_delivery(make(attempt=2), redelivered=False)
    assert [seq.next(), seq.next()] == [2 * ATTEMPT_SEQ_STRIDE + 1, 2 * ATTEMPT_SEQ_STRIDE + 2]
    # Events for a redelivered attempt (cancelled, dead-lettered) land above anything its interrupted run emitted.
    assert EventSequence.for_delivery(make(attempt=2), redelivered=True).next() == 3 * ATTEMPT_SEQ_STRIDE + 1


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
    assert (Failure.time_limit("slow").error_type, Failure.time_limit("slow").retryable) == ("TimeLimitExceeded", True)
    assert not Failure.deadline("late").retryable


def _raise_deep(depth: int, size: int = 10) -> None:
    if depth == 0:
        raise ValueError("bottom " + "x" * size)
    _raise_deep(depth - 1, size)


def _caught(depth: int, size: int = 10) -> BaseException:
    try:
        _raise_deep(depth, size)
    except ValueError as exc:
        return exc
    raise AssertionError("did not raise")


def test_a_handler_exception_carries_its_traceback_and_runtime_failures_none() -> None:
    line = _raise_deep.__code__.co_firstlineno + 2  # the raise
    failure = Failure.from_exception(_caught(2))
    assert failure.traceback is not None
    assert failure.traceback.startswith("Traceback (most recent call last):\n")
    assert f'line {line}, in _raise_deep\n    raise ValueError("bottom " + "x" * size)' in failure.traceback
    assert failure.traceback.endswith("ValueError: bottom xxxxxxxxxx\n")
    event = failure.event(make(), seq=3)
    assert event.data["traceback"] == failure.traceback
    # An exception never raised has no traceback; nor do the failures the runtime decides.
    assert Failure.from_exception(RuntimeError("x")).traceback is None
    assert Failure.deadline("late").traceback is None and Failure.time_limit("slow").traceback is None
    assert "traceback" not in Failure.permanent("no", "ResultTooLarge").event(make(), seq=3).data


def test_a_traceback_keeps_the_last_frames_and_bytes() -> None:
    deep = handler_traceback(_caught(100))
    assert deep is not None
    # The innermost 30 frames, where it failed (Python folds a recursion's repeated lines into one).
    repeated = re.search(r"\[Previous line repeated (\d+) more times\]", deep)
    assert repeated is not None
    assert deep.count(", in _raise_deep\n") + int(repeated.group(1)) == MAX_FRAMES
    assert ", in _caught\n" not in deep
    huge = handler_traceback(_caught(0, size=20_000))
    assert huge is not None
    assert len(huge.encode()) <= MAX_BYTES
    assert huge.startswith("…(earlier lines cut)\n") and huge.endswith("x" * 100 + "\n")
    assert handler_traceback(_caught(0).with_traceback(None)) is None


def test_failure_event_is_final_and_counts_the_attempts() -> None:
    event = Failure.deadline("too late").event(make(attempt=3), seq=7)
    assert event.data == {"error": "too late", "error_type": "DeadlineExceeded", "attempts": 3, "status": "timed_out"}
    assert event.status is JobStatus.TIMED_OUT and event.seq == 7


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    policy = RetryPolicy(max_retries=5, initial_delay_seconds=0.5, max_delay_seconds=3.0)
    assert [policy.delay_seconds(a, rand=lambda: 0.5) for a in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay_seconds(1, rand=lambda: 0.0) == pytest.approx(0.4)
    assert policy.delay_seconds(1, rand=lambda: 1.0) == pytest.approx(0.6)
    assert policy.delay_seconds(10**6, rand=lambda: 0.5) == 3.0  # no overflow on absurd attempt numbers
    assert all(0.4 <= policy.delay_seconds(1) <= 0.6 for _ in range(200))
    assert retry_tier(policy.delay_seconds(1, rand=lambda: 0.0)) == 500  # ±20% of a tier stays on that tier
    assert [policy.allows_another_attempt(a) for a in (1, 5, 6)] == [True, True, False]
    assert not RetryPolicy(max_retries=0).allows_another_attempt(1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"initial_delay_seconds": 0},
        {"initial_delay_seconds": 2, "max_delay_seconds": 1},
        {"jitter": 1.0},
    ],
)
def test_unusable_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_and_time_limit_resolve_handler_then_worker_then_defaults() -> None:
    worker = Worker("svc", retry=RetryPolicy(max_retries=7), time_limit=50)
    plain = Worker("plain")

    @worker.handler("own", retry=RetryPolicy(max_retries=1), time_limit=5)
    @plain.handler("own")
    async def own(payload: dict[str, int], ctx: object) -> None:
        return None

    @worker.handler("inherits")
    async def inherits(payload: dict[str, int], ctx: object) -> None:
        return None

    assert worker.retry_for(worker.handlers["own"]).max_retries == 1
    assert worker.retry_for(worker.handlers["inherits"]).max_retries == 7
    assert (worker.time_limit_for(worker.handlers["own"]), worker.time_limit_for(worker.handlers["inherits"])) == (
        5,
        50,
    )
    assert plain.retry_for(plain.handlers["own"]) == RetryPolicy(3, 0.5, 10.0)
    assert plain.time_limit_for(plain.handlers["own"]) == 300.0
    with pytest.raises(ConfigurationError, match="time_limit"):
        worker.handler("bad", time_limit=0)


def test_builtin_services_take_their_profile() -> None:
    worker = builtin_worker("ingestion")
    profile = BUILTIN_SERVICES["ingestion"]
    assert worker.retry == RetryPolicy(
        profile.retry.max_retries, profile.retry.initial_delay_seconds, profile.retry.max_delay_seconds
    )
    assert worker.time_limit == profile.time_limit_seconds


def test_time_limits_are_capped_below_the_consumer_timeout(caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker("svc", time_limit=100)

    @worker.handler("long", time_limit=5000)
    async def long(payload: dict[str, int], ctx: object) -> None:
        return None

    @worker.handler("short")
    async def short(payload: dict[str, int], ctx: object) -> None:
        return None

    with caplog.at_level(logging.WARNING, logger="workers.runtime.executions"):
        limits = TimeLimits(worker, consumer_timeout_seconds=1800)
    assert (limits.for_job_type("long"), limits.for_job_type("short")) == (1740, 100)
    assert len(caplog.records) == 1 and "capped to 1740 s" in caplog.records[0].getMessage()
    # A delivery that waited for a slot has that much less before the broker's timeout.
    assert limits.budget("long", received_at=-1e9) == 0.0
