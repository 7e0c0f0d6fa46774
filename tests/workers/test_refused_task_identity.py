"""A task the worker refuses unread (too large, undecodable, foreign content type) is still known by the
properties Baton's publishers set (message_id, correlation_id, tenant and attempt headers): it is parked
under its tenant and job, and its job fails at once instead of staying queued."""

from __future__ import annotations

from typing import Any

import aio_pika
import aiormq.abc
import pytest
from aio_pika.abc import AbstractChannel
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from protocol.envelope import TaskEnvelope
from protocol.events import ATTEMPT_SEQ_STRIDE, EventType, JobStatus
from protocol.topology import (
    ATTEMPTS_HEADER,
    JOB_ID_HEADER,
    REASON_HEADER,
    TASKS_EXCHANGE,
    TENANT_HEADER,
    dead_letter_queue,
)
from tests.workers.helpers import CODECS, Tap, envelope, running
from workers import TaskContext, Worker
from workers.runtime.forwarding import Rescheduler

CLAIM = {TENANT_HEADER: "tenant-s", ATTEMPTS_HEADER: 1}


def echo(service: str) -> Worker:
    worker = Worker(service, concurrency=2)

    @worker.handler("echo")
    async def run(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return payload

    return worker


async def _publish(channel: AbstractChannel, service: str, body: bytes, content_type: str, **properties: Any) -> None:
    exchange = await channel.get_exchange(TASKS_EXCHANGE, ensure=False)
    message = aio_pika.Message(
        body, content_type=content_type, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **properties
    )
    await exchange.publish(message, service, mandatory=True)


def test_the_publishers_properties_name_the_tenant_and_attempt() -> None:
    env = envelope("svc", "echo", {}, attempt=3, tenant_id="tenant-p")
    assert env.amqp_properties()["headers"] == {TENANT_HEADER: "tenant-p", ATTEMPTS_HEADER: 3}


async def test_a_refused_task_fails_its_job_and_is_parked_under_its_tenant(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    tap = await Tap.open(channel, f"*.{service}.*")
    big = envelope(service, "echo", {"padding": "x" * 8000}, tenant_id="tenant-q", attempt=2)
    garbage = envelope(service, "echo", {}, tenant_id="tenant-q")
    foreign = envelope(service, "echo", {}, tenant_id="tenant-r")
    async with running(echo(service), rabbitmq_url, max_message_bytes=4096):
        await _publish(channel, service, CODECS.encode(big), "application/msgpack", **big.amqp_properties())
        await _publish(channel, service, b"\xc1 not msgpack", "application/msgpack", **garbage.amqp_properties())
        await _publish(channel, service, b"hello", "text/plain", **foreign.amqp_properties())
        events = {env.task_id: await tap.task_events(env.task_id) for env in (big, garbage, foreign)}

        dead = await channel.declare_queue(dead_letter_queue(service), passive=True)
        parked: dict[str, Any] = {}
        for _ in range(3):
            message = await dead.get(timeout=5, fail=True)
            assert message is not None
            parked[message.message_id or ""] = message
            await message.ack()

    expected = {
        big.task_id: ("MessageTooLarge", "message_too_large", 2),
        garbage.task_id: ("InvalidEnvelope", "invalid_envelope", 1),
        foreign.task_id: ("UnsupportedContentType", "unsupported_content_type", 1),
    }
    for env in (big, garbage, foreign):
        error_type, reason, attempt = expected[env.task_id]
        [failed] = events[env.task_id]
        assert (failed.event, failed.status, failed.data["error_type"]) == (
            EventType.TASK_FAILED,
            JobStatus.FAILED,
            error_type,
        )
        assert (failed.tenant_id, failed.global_task_id, failed.service) == (env.tenant_id, env.global_task_id, service)
        assert failed.data["attempts"] == attempt
        assert failed.seq // ATTEMPT_SEQ_STRIDE == attempt  # in the attempt's own range: not dropped as stale
        headers = parked[env.task_id].headers
        assert headers[REASON_HEADER] == reason
        assert (headers[TENANT_HEADER], headers[JOB_ID_HEADER], headers[ATTEMPTS_HEADER]) == (
            env.tenant_id,
            env.global_task_id,
            attempt,
        )
    assert tap.drain_events() == []


@pytest.mark.parametrize(
    "properties",
    [
        {"message_id": "t-1", "correlation_id": "job-1"},  # no tenant header
        {"message_id": "t-1", "correlation_id": "job-1", "headers": {TENANT_HEADER: "bad:tenant"}},
        {"message_id": "t-1", "correlation_id": "job-1", "headers": {TENANT_HEADER: "tenant-s\n"}},
        {"message_id": "t-1", "headers": CLAIM},  # no job
        {"message_id": "t" * 200, "correlation_id": "job-1", "headers": CLAIM},  # not one of our ids
        {"message_id": "t-1", "correlation_id": "job-1", "headers": {TENANT_HEADER: "tenant-s", ATTEMPTS_HEADER: 0}},
    ],
)
async def test_a_refused_message_without_a_whole_identity_fails_no_job(
    rabbitmq_url: str, channel: AbstractChannel, service: str, properties: dict[str, Any]
) -> None:
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(echo(service), rabbitmq_url):
        await _publish(channel, service, b"\xc1", "application/msgpack", **properties)
        dead = await channel.declare_queue(dead_letter_queue(service), passive=True)
        message = await dead.get(timeout=5, fail=True)
        assert message is not None
        await message.ack()
        ok = envelope(service, "echo", {"k": 1})
        await _publish(channel, service, CODECS.encode(ok), "application/msgpack", **ok.amqp_properties())
        await tap.task_events(ok.task_id)
    assert message.headers[REASON_HEADER] == "invalid_envelope"
    assert JOB_ID_HEADER not in message.headers
    assert tap.drain_events() == []


class _Captured:
    def __init__(self) -> None:
        self.messages: list[aio_pika.Message] = []

    async def publish(self, exchange: str, routing_key: str, message: aio_pika.Message, *, mandatory: bool) -> None:
        self.messages.append(message)


def _delivered(env: TaskEnvelope, headers: dict[str, Any]) -> aio_pika.IncomingMessage:
    properties = {**env.amqp_properties(), "headers": headers}
    raw = aiormq.abc.DeliveredMessage(
        delivery=Basic.Deliver(delivery_tag=1, exchange=TASKS_EXCHANGE, routing_key=env.service),
        header=ContentHeader(properties=Basic.Properties(content_type="application/msgpack", **properties)),
        body=CODECS.encode(env),
        channel=None,  # type: ignore[arg-type]
    )
    return aio_pika.IncomingMessage(raw, no_ack=False)


async def test_the_next_attempt_carries_its_own_attempt_header() -> None:
    """A retry keeps the headers it came with (but the broker's death records) and renumbers the attempt."""
    env = envelope("svc", "echo", {}, tenant_id="tenant-t")
    captured = _Captured()
    rescheduler = Rescheduler(captured, CODECS)  # type: ignore[arg-type]
    inherited = {**env.amqp_properties()["headers"], "x-origin": "test", "x-death": [{"count": 1}]}
    await rescheduler.now(_delivered(env, inherited), env)
    [message] = captured.messages
    assert message.headers == {TENANT_HEADER: "tenant-t", ATTEMPTS_HEADER: 2, "x-origin": "test"}
    assert message.message_id == env.task_id


async def test_json_nested_past_the_parsers_limit_is_refused_with_its_reason(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    """It used to crash intake (RecursionError) and the quarantine after it, leaving the broker to park it bare."""
    tap = await Tap.open(channel, f"*.{service}.*")
    deep = envelope(service, "echo", {}, tenant_id="tenant-d")
    async with running(echo(service), rabbitmq_url):
        body = b"[" * 100_000 + b"]" * 100_000
        await _publish(channel, service, body, "application/json", **deep.amqp_properties())
        [failed] = await tap.task_events(deep.task_id)
        dead = await channel.declare_queue(dead_letter_queue(service), passive=True)
        parked = await dead.get(timeout=5, fail=True)
        assert parked is not None
        await parked.ack()
    assert (failed.data["error_type"], failed.tenant_id) == ("InvalidEnvelope", "tenant-d")
    assert "nested deeper than" in failed.data["error"]
    assert parked.headers[REASON_HEADER] == "invalid_envelope"
    assert "nested deeper than" in str(parked.headers["x-baton-error"])
