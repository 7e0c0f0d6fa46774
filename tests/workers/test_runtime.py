"""The worker runtime against the real RabbitMQ: events, failures, deadlines, dead letters, heartbeats."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest
from aio_pika import DeliveryMode
from aio_pika.abc import AbstractChannel
from pydantic import BaseModel

from protocol.codec import JSON, MSGPACK
from protocol.envelope import utc_now
from protocol.events import ATTEMPT_SEQ_STRIDE, EventType, JobStatus
from protocol.topology import (
    ATTEMPTS_HEADER,
    ERROR_HEADER,
    JOB_ID_HEADER,
    REASON_HEADER,
    TENANT_HEADER,
    dead_letter_queue,
    task_queue,
)
from tests.workers.helpers import CODECS, Tap, envelope, publish_raw, publish_task, running
from workers import PermanentError, RetryPolicy, TaskContext, Worker


class Numbers(BaseModel):
    a: int
    b: int


class Sum(BaseModel):
    total: int


def adder(service: str, calls: list[Any] | None = None) -> Worker:
    worker = Worker(service, concurrency=4)

    @worker.handler("add", cache_ttl=30)
    async def add(payload: Numbers, ctx: TaskContext) -> Sum:
        if calls is not None:
            calls.append(payload)
        await ctx.progress(25, "started", current_task="adding")
        await ctx.progress(75, "almost", estimated_remaining_seconds=0.1, custom_data={"k": 1})
        return Sum(total=payload.a + payload.b)

    @worker.handler("explode", retry=RetryPolicy(max_retries=0))  # retries: see test_retries.py
    async def explode(payload: dict[str, Any], ctx: TaskContext) -> None:
        if payload.get("permanent"):
            raise PermanentError("not with this input")
        raise RuntimeError("boom: " + str(payload.get("why")))

    @worker.handler("sleep")
    async def sleep(payload: dict[str, Any], ctx: TaskContext) -> str:
        await asyncio.sleep(float(payload["seconds"]))
        return "slept"

    return worker


SOURCE = Path(__file__).read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("content_type", [MSGPACK, JSON])
async def test_completed_task_emits_running_progress_completed_in_seq_order(
    rabbitmq_url: str, channel: AbstractChannel, service: str, content_type: str
) -> None:
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(adder(service), rabbitmq_url):
        task = envelope(service, "add", {"a": 2, "b": 3}, tenant_id="tenant-x")
        await publish_task(channel, task, content_type=content_type)
        events = await tap.task_events(task.task_id)

    assert [e.event for e in events] == [EventType.TASK_STATUS_UPDATE] * 3 + [EventType.TASK_COMPLETED]
    assert [e.data.get("status") for e in events[:3]] == ["running"] * 3
    assert "progress" not in events[0].data
    assert events[1].data["progress"] == {"percentage": 25.0, "message": "started", "current_task": "adding"}
    assert events[2].data["progress"]["custom_data"] == {"k": 1}
    assert events[3].data == {"result": {"total": 5}}
    seqs = [e.seq for e in events]
    assert seqs == [ATTEMPT_SEQ_STRIDE + n for n in (1, 2, 3, 4)]
    assert {(e.tenant_id, e.service, e.global_task_id) for e in events} == {("tenant-x", service, task.global_task_id)}
    queue = await channel.declare_queue(task_queue(service), passive=True)
    assert queue.declaration_result.message_count == 0  # acked


async def test_every_event_is_keyed_by_its_task_and_job_and_only_the_outcome_is_persistent(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    """The orchestrator's consumer spreads events over lanes by correlation_id (the job); running and
    progress are transient (workers.runtime.event_publisher)."""
    tap = await Tap.open(channel, f"tenant-props.{service}.*")  # task events only, no heartbeats
    async with running(adder(service), rabbitmq_url):
        task = envelope(service, "add", {"a": 2, "b": 3}, tenant_id="tenant-props")
        await publish_task(channel, task)
        messages = [await tap.next_message() for _ in range(4)]  # running, two progress reports, completed

    modes = [message.delivery_mode for message in messages]
    assert modes == [DeliveryMode.NOT_PERSISTENT] * 3 + [DeliveryMode.PERSISTENT]
    for message in messages:
        assert message.content_type == MSGPACK
        assert (message.message_id, message.correlation_id) == (task.task_id, task.global_task_id)
    assert msgpack.unpackb(messages[-1].body)["event"] == EventType.TASK_COMPLETED.value


async def test_payload_failing_its_model_fails_with_validation_error(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    calls: list[Any] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(adder(service, calls), rabbitmq_url):
        task = envelope(service, "add", {"a": "not a number"})
        await publish_task(channel, task)
        events = await tap.task_events(task.task_id)

    assert [e.event for e in events] == [EventType.TASK_FAILED]
    data = events[0].data
    assert data["error_type"] == "ValidationError"
    assert data["status"] == "failed"
    assert data["attempts"] == 1
    assert "payload does not match Numbers" in data["error"]
    assert "a: Input should be a valid integer" in data["error"] and "b: Field required" in data["error"]
    assert calls == []
    assert "traceback" not in data  # the runtime refused the payload: no handler failed


@pytest.mark.parametrize(
    ("payload", "error_type", "error"),
    [({"why": "bad luck"}, "RuntimeError", "boom: bad luck"), ({"permanent": True}, "PermanentError", "not with")],
)
async def test_handler_exception_fails_the_task(
    rabbitmq_url: str, channel: AbstractChannel, service: str, payload: dict[str, Any], error_type: str, error: str
) -> None:
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(adder(service), rabbitmq_url):
        task = envelope(service, "explode", payload)
        await publish_task(channel, task)
        events = await tap.task_events(task.task_id)

    assert [e.event for e in events] == [EventType.TASK_STATUS_UPDATE, EventType.TASK_FAILED]
    assert events[-1].data["error_type"] == error_type
    assert events[-1].data["error"].startswith(error)
    assert events[-1].status is JobStatus.FAILED
    # Where the handler raised: its function and line, from the handler's frame on, the exception last.
    trace = events[-1].data["traceback"]
    raising = next(n for n, text in enumerate(SOURCE, 1) if f"raise {error_type}(" in text)
    assert trace.startswith("Traceback (most recent call last):\n")
    assert f'{Path(__file__).name}", line {raising}, in explode\n' in trace
    assert trace.endswith(f"{error_type}: {events[-1].data['error']}\n")
    assert "workers/runtime/" not in trace
    dead = await channel.declare_queue(dead_letter_queue(service), passive=True)
    parked = await dead.get(fail=False)
    # A retryable error with no retries left is parked; a permanent one is not.
    assert (parked is not None) == (error_type == "RuntimeError")


async def test_expired_task_times_out_without_running(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    calls: list[Any] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(adder(service, calls), rabbitmq_url):
        task = envelope(service, "add", {"a": 1, "b": 1}, deadline=utc_now() - timedelta(seconds=1))
        await publish_task(channel, task)
        events = await tap.task_events(task.task_id)

    assert [e.event for e in events] == [EventType.TASK_FAILED]
    assert events[0].data["status"] == "timed_out"
    assert events[0].data["error_type"] == "DeadlineExceeded"
    assert "traceback" not in events[0].data  # the runtime's own verdict, not a handler's exception
    assert calls == []


async def test_deadline_passing_while_running_times_out(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(adder(service), rabbitmq_url):
        task = envelope(service, "sleep", {"seconds": 30}, deadline=utc_now() + timedelta(milliseconds=700))
        await publish_task(channel, task)
        events = await tap.task_events(task.task_id)

    assert [e.event for e in events] == [EventType.TASK_STATUS_UPDATE, EventType.TASK_FAILED]
    assert events[-1].status is JobStatus.TIMED_OUT
    assert "traceback" not in events[-1].data  # stopped by the runtime: the handler raised nothing


async def test_undeliverable_messages_are_parked_with_reasons_and_the_worker_keeps_serving(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(adder(service), rabbitmq_url, max_message_bytes=4096):
        await publish_raw(channel, service, b"\xc1\xc1 definitely not msgpack", message_id="garbage")
        await publish_raw(channel, service, msgpack.packb({"tenant_id": "tenant-z", "nope": 1}), message_id="schema")
        await publish_raw(
            channel, service, b"hello", content_type="text/plain", message_id="foreign", headers={"x-origin": "test"}
        )
        big = envelope(service, "add", {"a": 1, "b": 2, "padding": "x" * 8000})
        await publish_raw(channel, service, CODECS.encode(big), message_id="big")
        unknown = envelope(service, "no_such_type", {}, tenant_id="tenant-u")
        await publish_task(channel, unknown, reply_to=f"baton.reply.caller-{service}", priority=7)
        wrong = envelope("elsewhere", "add", {"a": 1, "b": 2})
        await publish_raw(channel, service, CODECS.encode(wrong), message_id="wrong")

        good = envelope(service, "add", {"a": 20, "b": 22})
        await publish_task(channel, good)
        events = await tap.task_events(good.task_id)
        assert events[-1].data == {"result": {"total": 42}}
        # A valid envelope nobody here can run is parked, and its job failed.
        unknown_events = await tap.task_events(unknown.task_id)

        dead = await channel.declare_queue(dead_letter_queue(service), passive=True)
        parked: dict[str, Any] = {}
        for _ in range(6):
            message = await dead.get(timeout=5, fail=True)
            assert message is not None
            parked[message.message_id or ""] = message
            await message.ack()

    reasons = {key: m.headers[REASON_HEADER] for key, m in parked.items()}
    assert reasons == {
        "garbage": "invalid_envelope",
        "schema": "invalid_envelope",
        "foreign": "unsupported_content_type",
        "big": "message_too_large",
        unknown.task_id: "unknown_job_type",
        "wrong": "wrong_service",
    }
    assert parked["schema"].headers[TENANT_HEADER] == "tenant-z"
    assert parked[unknown.task_id].headers[TENANT_HEADER] == "tenant-u"
    assert TENANT_HEADER not in parked["garbage"].headers
    assert "not valid msgpack" in str(parked["garbage"].headers[ERROR_HEADER])
    assert parked["foreign"].headers["x-origin"] == "test"
    assert parked["foreign"].body == b"hello" and parked["foreign"].content_type == "text/plain"
    assert [(e.event, e.data["error_type"], e.data["status"]) for e in unknown_events] == [
        (EventType.TASK_FAILED, "UnknownJobType", "failed")
    ]
    assert parked[unknown.task_id].headers[JOB_ID_HEADER] == unknown.global_task_id
    assert parked[unknown.task_id].headers[ATTEMPTS_HEADER] == 1
    # A replay restores the properties too: a child task's answer still finds its caller.
    assert (parked[unknown.task_id].reply_to, parked[unknown.task_id].priority) == (f"baton.reply.caller-{service}", 7)
    assert tap.drain_events() == []  # nothing else was published for the parked messages


async def test_heartbeat_announces_job_types_and_says_goodbye(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    tap = await Tap.open(channel, f"_system.{service}.worker_heartbeat")
    async with running(adder(service), rabbitmq_url, heartbeat_seconds=0.3) as runtime:
        first = await tap.next_heartbeat()
        second = await tap.next_heartbeat()
    last = await tap.next_heartbeat()
    while not last.stopping:
        last = await tap.next_heartbeat()

    assert first.worker_id == runtime.worker_id == second.worker_id == last.worker_id
    assert sorted(first.job_types) == ["add", "explode", "sleep"]
    assert first.cache_ttls == {"add": 30}  # the orchestrator's result-cache default for the type
    assert (first.service, first.concurrency, first.in_flight, first.stopping) == (service, 4, 0, False)
    assert second.timestamp > first.timestamp
