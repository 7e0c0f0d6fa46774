"""Cancellation: the ledger key is set before the broadcast, and cancel racing completion ends in one state."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from orchestrator.app import LIVE, METRICS, PUBLISHER
from orchestrator.jobs.event_sink import EventSink
from orchestrator.jobs.service import JobService, NewJob
from orchestrator.live.update_bus import UpdateBus
from orchestrator.models import CancelStatus
from protocol import ledger
from protocol.codec import CodecSet
from protocol.control import CancelCommand
from protocol.envelope import TaskEnvelope
from protocol.events import ATTEMPT_SEQ_STRIDE, completed_event
from protocol.topology import CONTROL_EXCHANGE
from tests.api_server import Api
from tests.polling import eventually


async def _create(api: Api) -> str:
    response = await api.client.post("/jobs", json={"type": api.job_type}, headers=api.headers_a)
    assert response.status == 202, await response.text()
    return str((await response.json())["job_id"])


async def test_ledger_key_is_set_before_the_cancel_broadcast(api: Api, redis_client: aioredis.Redis) -> None:
    job_id = await _create(api)
    key = ledger.cancelled_key(api.tenant_a, job_id)
    seen: asyncio.Future[tuple[CancelCommand, int]] = asyncio.get_running_loop().create_future()
    channel = await api.amqp.channel()
    try:
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(CONTROL_EXCHANGE)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            command = CodecSet().decode(CancelCommand, message.body, message.content_type)
            # What a worker would check the moment the broadcast reaches it.
            if command.global_task_id == job_id and not seen.done():
                seen.set_result((command, int(await redis_client.exists(key))))

        await queue.consume(on_message, no_ack=True)
        assert await redis_client.exists(key) == 0
        response = await api.client.post(f"/jobs/{job_id}/cancel", headers=api.headers_a)
        assert response.status == 200
        command, existed = await asyncio.wait_for(seen, 10)
    finally:
        await channel.close()
    assert command.tenant_id == api.tenant_a
    assert existed == 1
    assert 0 < await redis_client.ttl(key) <= ledger.LEDGER_TTL_SECONDS
    finished = api.app[METRICS].jobs_finished.labels(type=api.job_type, status="cancelled")._value.get()
    assert finished == 1


async def test_cancel_racing_completion_ends_in_exactly_one_terminal_state(
    api: Api, redis_client: aioredis.Redis
) -> None:
    jobs = [await _create(api) for _ in range(40)]
    envelopes = {envelope.global_task_id: envelope for _, envelope in await api.queued_envelopes()}
    live = api.app[LIVE]
    sink = EventSink(live.registry, live.bus, api.app[METRICS])

    async def race(job_id: str) -> tuple[str, int, dict[str, Any], Any]:
        envelope: TaskEnvelope = envelopes[job_id]
        cancel, applied = await asyncio.gather(
            api.client.post(f"/jobs/{job_id}/cancel", headers=api.headers_a),
            sink.accept(completed_event(envelope, {"done": True}, ATTEMPT_SEQ_STRIDE + 1)),
        )
        return job_id, cancel.status, await cancel.json(), applied

    outcomes = await asyncio.gather(*(race(job_id) for job_id in jobs))
    winners = {"cancelled": 0, "completed": 0}
    for job_id, status, body, applied in outcomes:
        record = await live.registry.get(api.tenant_a, job_id)
        assert record is not None
        cancelled_key_set = await redis_client.exists(ledger.cancelled_key(api.tenant_a, job_id)) == 1
        if status == 200:
            assert body["status"] == "cancelled"
            assert applied is None, "a completion after the cancel must be dropped"
            assert record.status == "cancelled" and cancelled_key_set
        else:
            assert status == 409
            assert body["status"] == "completed", body
            assert applied is not None
            assert record.status == "completed" and record.result == {"done": True}
            assert not cancelled_key_set
        winners[record.status] += 1
    assert sum(winners.values()) == len(jobs)


async def test_a_saved_cancel_is_reported_even_when_its_announcement_fails(
    api: Api, redis_client: aioredis.Redis
) -> None:
    job_id = await _create(api)
    live = api.app[LIVE]
    # Redis answers for the registry but the pub/sub publish fails: a blip between the two calls.
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    bus = UpdateBus(dead)
    try:
        jobs = JobService(live.registry, live.directory, bus, api.app[PUBLISHER], api.app[METRICS])
        result = await jobs.cancel(api.tenant_a, job_id)
    finally:
        await bus.stop()
        await dead.aclose()
    assert result.status is CancelStatus.CANCELLED
    record = await live.registry.get(api.tenant_a, job_id)
    assert record is not None and record.status == "cancelled"
    assert await redis_client.exists(ledger.cancelled_key(api.tenant_a, job_id)) == 1


async def test_a_created_job_is_answered_without_waiting_for_its_announcement(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """The "queued" announcement is not on the POST's path: a failing pub/sub publish is only logged."""
    live = api.app[LIVE]
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    bus = UpdateBus(dead)
    try:
        jobs = JobService(live.registry, live.directory, bus, api.app[PUBLISHER], api.app[METRICS])
        async with asyncio.timeout(0.4):  # less than the dead link's own connect timeout
            submission = await jobs.submit(
                api.tenant_a, NewJob(type=api.job_type, payload={}, priority=5), request_id="r"
            )
        assert submission.created
        record = await live.registry.get(api.tenant_a, submission.record.job_id)
        assert record is not None and record.status == "queued"
        await eventually(lambda: any("not announced" in r.getMessage() for r in caplog.records), within=5.0)
    finally:
        await bus.stop()
        await dead.aclose()
