"""What the dead-letter tests share: jobs made through the API, envelopes parked as a worker parks them."""

from __future__ import annotations

from typing import Any

import aio_pika

from protocol.codec import MSGPACK
from protocol.envelope import TaskEnvelope
from protocol.events import ATTEMPT_SEQ_STRIDE, JobStatus, failed_event, status_event
from protocol.topology import ATTEMPTS_HEADER, ERROR_HEADER, REASON_HEADER, TENANT_HEADER, dead_letter_queue
from tests.api_server import Api
from tests.polling import eventually

SEQ = ATTEMPT_SEQ_STRIDE


async def create_job(api: Api, headers: dict[str, str]) -> str:
    response = await api.client.post("/jobs", json={"type": api.job_type}, headers=headers)
    assert response.status == 202, await response.text()
    return str((await response.json())["job_id"])


async def job_record(api: Api, job_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = await api.client.get(f"/jobs/{job_id}", headers=headers or api.headers_a)
    assert response.status == 200
    return await response.json()  # type: ignore[no-any-return]


async def park(api: Api, message_id: str, body: bytes, content_type: str | None, headers: dict[str, Any]) -> None:
    """Any body, straight onto the service's dead-letter queue."""
    channel = await api.amqp.channel(publisher_confirms=True)
    try:
        message = aio_pika.Message(
            body,
            content_type=content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            headers=headers,
        )
        await channel.default_exchange.publish(message, dead_letter_queue(api.service))
    finally:
        await channel.close()


async def failed_job(api: Api, headers: dict[str, str]) -> TaskEnvelope:
    """A job whose only attempt failed for good, its envelope parked as a worker would."""
    job_id = await create_job(api, headers)
    [(_, envelope)] = await api.queued_envelopes()
    await api.emit(status_event(envelope, JobStatus.RUNNING, SEQ + 1))
    await api.emit(failed_event(envelope, error="boom", error_type="RuntimeError", seq=SEQ + 2))

    async def failed() -> bool:
        return (await job_record(api, job_id, headers))["status"] == "failed"

    await eventually(failed)
    parked_headers = {
        REASON_HEADER: "max_retries",
        ERROR_HEADER: "boom",
        ATTEMPTS_HEADER: 1,
        TENANT_HEADER: envelope.tenant_id,
        "x-baton-error-type": "RuntimeError",
        "x-baton-job-id": job_id,
        "x-baton-dead-at": "2026-01-01T00:00:00+00:00",
    }
    await park(api, envelope.task_id, api.codecs.encode(envelope), MSGPACK, parked_headers)
    return envelope


async def dead_depth(api: Api) -> int:
    channel = await api.amqp.channel()
    try:
        queue = await channel.declare_queue(dead_letter_queue(api.service), passive=True)
        return queue.declaration_result.message_count or 0
    finally:
        await channel.close()
