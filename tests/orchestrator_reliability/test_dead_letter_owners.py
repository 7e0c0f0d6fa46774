"""A task a worker refuses unread: its job fails at once with the reason, and its tenant sees the parked
message because the registry has that task in its job; a header alone proves nothing to anybody."""

from __future__ import annotations

from typing import Any

import aio_pika

from protocol.topology import REASON_HEADER, TASKS_EXCHANGE, TENANT_HEADER
from tests.api_server import Api
from tests.orchestrator_reliability.dead_letters import create_job, job_record, park
from tests.polling import eventually
from tests.workers.helpers import running
from workers import TaskContext, Worker


def _worker(api: Api) -> Worker:
    worker = Worker(api.service, concurrency=1)

    @worker.handler(api.job_type)
    async def run(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return payload

    return worker


async def _listed(api: Api, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await api.client.get(f"/dead-letters/{api.service}", headers=headers)
    assert response.status == 200, await response.text()
    return list((await response.json())["entries"])


async def test_a_task_refused_unread_fails_its_job_and_its_tenant_sees_it(api: Api, rabbitmq_url: str) -> None:
    job_id = await create_job(api, api.headers_a)
    [(message, envelope)] = await api.queued_envelopes()
    # The task as the orchestrator published it, its body mangled on the way (or over the workers' cap).
    channel = await api.amqp.channel(publisher_confirms=True)
    try:
        exchange = await channel.get_exchange(TASKS_EXCHANGE, ensure=False)
        corrupt = aio_pika.Message(
            b"\xc1" + message.body[1:],
            content_type=message.content_type,
            headers=message.headers,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            priority=message.priority,
            type=message.type,
        )
        await exchange.publish(corrupt, api.service, mandatory=True)
    finally:
        await channel.close()

    async with running(_worker(api), rabbitmq_url):

        async def failed() -> bool:
            return (await job_record(api, job_id))["status"] == "failed"

        await eventually(failed)
    record = await job_record(api, job_id)
    assert record["error"]["error_type"] == "InvalidEnvelope"
    assert "not valid msgpack" in record["error"]["error"]

    [entry] = await _listed(api, api.headers_a)
    assert (entry["task_id"], entry["job_id"], entry["tenant_id"]) == (envelope.task_id, job_id, api.tenant_a)
    assert (entry["decodable"], entry["reason"], entry["error_type"]) == (False, "invalid_envelope", "InvalidEnvelope")
    assert await _listed(api, api.headers_b) == []

    # Copies claiming the task for tenant B, or for A under a job of B's: nobody's but the admin's.
    other_job = await create_job(api, api.headers_b)
    forged = {
        "forged-1": (envelope.task_id, job_id, api.tenant_b),
        "forged-2": (envelope.task_id, other_job, api.tenant_a),
        "forged-3": ("no-such-task", job_id, api.tenant_a),
    }
    for message_id, (task_id, forged_job, tenant) in forged.items():
        await park(
            api,
            task_id,
            b"\xc1",
            "application/msgpack",
            {TENANT_HEADER: tenant, "x-baton-job-id": forged_job, REASON_HEADER: message_id},
        )
    assert [e["reason"] for e in await _listed(api, api.headers_a)] == ["invalid_envelope"]
    assert await _listed(api, api.headers_b) == []
    admin = {"Authorization": f"Bearer admin-{api.tenant_a.removeprefix('ta-')}"}
    assert {e["reason"] for e in await _listed(api, admin)} == {"invalid_envelope", *forged}

    replay = await api.client.post(f"/dead-letters/{api.service}/replay", json={"all": True}, headers=api.headers_a)
    assert [(e["task_id"], e["error"]) for e in (await replay.json())["errors"]] == [(envelope.task_id, "undecodable")]
