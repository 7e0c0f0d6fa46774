"""Retries through the delay queues, dead letters after the last attempt, time limits, poison messages."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aio_pika.abc import AbstractChannel
from pydantic import BaseModel

from protocol.envelope import TaskEnvelope
from protocol.events import ATTEMPT_SEQ_STRIDE, EventType, JobStatus
from protocol.topology import (
    ATTEMPTS_HEADER,
    DEAD_AT_HEADER,
    ERROR_HEADER,
    ERROR_TYPE_HEADER,
    JOB_ID_HEADER,
    REASON_HEADER,
    TENANT_HEADER,
    dead_letter_queue,
    service_queues,
)
from tests.workers.helpers import CODECS, Tap, envelope, publish_task, running
from workers import PermanentError, RetryPolicy, TaskContext, Worker
from workers.errors import CircuitOpenError
from workers.runtime.ledger import TaskLedger

QUICK = RetryPolicy(max_retries=2, initial_delay_seconds=0.1, max_delay_seconds=0.2)


class Count(BaseModel):
    n: int


def flaky(service: str, attempts: list[int], *, fail_times: int, time_limit: float | None = None) -> Worker:
    worker = Worker(service, retry=QUICK)

    @worker.handler("flaky", time_limit=time_limit)
    async def run(payload: dict[str, Any], ctx: TaskContext) -> dict[str, int]:
        attempts.append(ctx.attempt)
        if payload.get("sleep"):
            await asyncio.sleep(float(payload["sleep"]))
        if len(attempts) <= fail_times:
            raise ConnectionError(f"upstream down on attempt {ctx.attempt}")
        return {"attempt": ctx.attempt}

    @worker.handler("strict")
    async def strict(payload: Count, ctx: TaskContext) -> int:
        attempts.append(ctx.attempt)
        if payload.n < 0:
            raise PermanentError("negative")
        return payload.n

    return worker


async def queues_are_empty(channel: AbstractChannel, service: str) -> bool:
    """No message left in the work, dead-letter or any delay queue (a basic.get each: declare-ok counts can lag)."""
    for spec in service_queues(service):
        queue = await channel.declare_queue(spec.name, passive=True)
        if await queue.get(fail=False) is not None:
            return False
    return True


async def test_a_failing_task_is_retried_with_backoff_and_completes_on_attempt_3(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    attempts: list[int] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(flaky(service, attempts, fail_times=2), rabbitmq_url) as runtime:
        task = envelope(service, "flaky", {})
        await publish_task(channel, task)
        events = await tap.task_events(task.task_id)
        assert runtime.stats.retries_scheduled == 2

    assert attempts == [1, 2, 3]
    assert [(e.event, e.data.get("status")) for e in events] == [
        (EventType.TASK_STATUS_UPDATE, "running"),
        (EventType.TASK_STATUS_UPDATE, "retrying"),
        (EventType.TASK_STATUS_UPDATE, "running"),
        (EventType.TASK_STATUS_UPDATE, "retrying"),
        (EventType.TASK_STATUS_UPDATE, "running"),
        (EventType.TASK_COMPLETED, None),
    ]
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs))  # strictly growing across attempts
    assert seqs[0] == ATTEMPT_SEQ_STRIDE + 1 and seqs[2] == 2 * ATTEMPT_SEQ_STRIDE + 1
    first_retry, second_retry = events[1].data, events[3].data
    assert first_retry["attempt"] == 1 and first_retry["next_attempt"] == 2
    assert (first_retry["error_type"], first_retry["error"]) == ("ConnectionError", "upstream down on attempt 1")
    # 0.1 s then 0.2 s, ±20% jitter, each rounded to the nearest delay tier (0.16-0.24 s: 100 or 250 ms).
    assert first_retry["delay_seconds"] == 0.1
    assert second_retry["delay_seconds"] in (0.1, 0.25)
    assert events[-1].data == {"result": {"attempt": 3}}
    assert await queues_are_empty(channel, service)


async def test_exhausted_retries_park_the_task_with_its_story_and_fail_the_job(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    attempts: list[int] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(flaky(service, attempts, fail_times=99), rabbitmq_url) as runtime:
        task = envelope(service, "flaky", {"x": 1}, tenant_id="tenant-r")
        await publish_task(channel, task)
        events = await tap.task_events(task.task_id)
        assert runtime.stats.dead_lettered == 1

    assert attempts == [1, 2, 3]
    assert [e.data.get("status") for e in events].count("retrying") == 2
    final = events[-1]
    assert final.event is EventType.TASK_FAILED and final.status is JobStatus.FAILED
    traceback = final.data.pop("traceback")
    assert final.data == {
        "error": "upstream down on attempt 3",
        "error_type": "ConnectionError",
        "attempts": 3,
        "status": "failed",
    }
    assert 'raise ConnectionError(f"upstream down on attempt' in traceback  # the last attempt's
    dead = await channel.declare_queue(dead_letter_queue(service), passive=True)
    parked = await dead.get(timeout=5, fail=True)
    assert parked is not None
    await parked.ack()
    headers = parked.headers
    assert headers[REASON_HEADER] == "max_retries_exceeded"
    assert headers[ATTEMPTS_HEADER] == 3
    assert headers[ERROR_HEADER] == "upstream down on attempt 3"
    assert headers[ERROR_TYPE_HEADER] == "ConnectionError"
    assert headers[TENANT_HEADER] == "tenant-r"
    assert headers[JOB_ID_HEADER] == task.global_task_id
    assert datetime.fromisoformat(str(headers[DEAD_AT_HEADER])).tzinfo is not None
    body = CODECS.decode(TaskEnvelope, parked.body, parked.content_type)
    assert (body.task_id, body.attempt, body.payload) == (task.task_id, 3, {"x": 1})  # the last attempt, as received
    assert await queues_are_empty(channel, service)


async def test_permanent_and_validation_errors_are_never_retried(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    attempts: list[int] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(flaky(service, attempts, fail_times=0), rabbitmq_url) as runtime:
        permanent = envelope(service, "strict", {"n": -1})
        invalid = envelope(service, "strict", {"n": "many"})
        await publish_task(channel, permanent)
        await publish_task(channel, invalid)
        permanent_events = await tap.task_events(permanent.task_id)
        invalid_events = await tap.task_events(invalid.task_id)
        assert runtime.stats.retries_scheduled == 0 and runtime.stats.dead_lettered == 0

    assert [e.event for e in permanent_events] == [EventType.TASK_STATUS_UPDATE, EventType.TASK_FAILED]
    assert permanent_events[-1].data["error_type"] == "PermanentError"
    assert [e.event for e in invalid_events] == [EventType.TASK_FAILED]
    assert invalid_events[-1].data["error_type"] == "ValidationError"
    assert attempts == [1]  # the permanent one ran once; the invalid one never
    assert await queues_are_empty(channel, service)


async def test_a_handler_past_its_time_limit_is_cancelled_retried_then_failed(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    attempts: list[int] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(flaky(service, attempts, fail_times=0, time_limit=0.2), rabbitmq_url):
        task = envelope(service, "flaky", {"sleep": 30})
        await publish_task(channel, task)
        events = await tap.task_events(task.task_id)

    assert attempts == [1, 2, 3]
    retrying = [e.data for e in events if e.data.get("status") == "retrying"]
    assert [r["error_type"] for r in retrying] == ["TimeLimitExceeded"] * 2
    assert events[-1].data["error_type"] == "TimeLimitExceeded"
    assert events[-1].data["status"] == "failed" and events[-1].data["attempts"] == 3
    assert "time limit of 0.2 s" in events[-1].data["error"]


async def test_a_message_that_crashes_the_pipeline_is_parked_and_its_job_failed(
    rabbitmq_url: str, channel: AbstractChannel, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = envelope(service, "flaky", {})
    real_check = TaskLedger.check

    async def check(self: TaskLedger, env: TaskEnvelope) -> Any:
        if env.task_id == poison.task_id:
            raise RuntimeError("a bug in the runtime")
        return await real_check(self, env)

    monkeypatch.setattr(TaskLedger, "check", check)  # fault injection into the real pipeline
    attempts: list[int] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(flaky(service, attempts, fail_times=0), rabbitmq_url):
        await publish_task(channel, poison)
        poison_events = await tap.task_events(poison.task_id)
        healthy = envelope(service, "flaky", {})
        await publish_task(channel, healthy)
        assert (await tap.task_events(healthy.task_id))[-1].event is EventType.TASK_COMPLETED

    assert [(e.event, e.data["error_type"]) for e in poison_events] == [(EventType.TASK_FAILED, "PipelineError")]
    dead = await channel.declare_queue(dead_letter_queue(service), passive=True)
    parked = await dead.get(timeout=5, fail=True)
    assert parked is not None
    await parked.ack()
    assert parked.headers[REASON_HEADER] == "pipeline_error"
    assert "a bug in the runtime" in str(parked.headers[ERROR_HEADER])
    assert attempts == [1]  # only the healthy task ran


async def test_an_open_circuit_breaker_delays_the_next_attempt_until_its_cooldown_ends(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    """The policy's backoff (0.1 s) is far shorter than the breaker's cooldown: retrying at 0.1 s would
    spend every attempt against a breaker still open. The next attempt waits out the cooldown instead."""
    attempts: list[int] = []
    worker = Worker(service, retry=QUICK)

    @worker.handler("upstream_call")
    async def call(payload: dict[str, Any], ctx: TaskContext) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise CircuitOpenError("http://127.0.0.1:9", datetime.now(UTC) + timedelta(seconds=2))
        return ctx.attempt

    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(worker, rabbitmq_url):
        task = envelope(service, "upstream_call", {})
        await publish_task(channel, task)
        events = await tap.task_events(task.task_id)

    retrying = next(e for e in events if e.data.get("status") == "retrying")
    assert retrying.data["error_type"] == "CircuitOpenError"
    assert retrying.data["delay_seconds"] == 2.0  # the 2,000 ms delay tier, not the policy's 0.1 s
    assert attempts == [1, 2]
    assert events[-1].data == {"result": 2}
