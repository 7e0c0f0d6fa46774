"""`POST /jobs` of a job type its service declared a workflow for runs that workflow: the ingestion
service's `document_processing`, on test queues and job types, with real ingestion and embedding workers.
The job keeps its type, its result is the index step's (the shape a plain job had), its progress comes
from the steps, and cancelling the job cancels the execution."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from orchestrator.app import LIVE, WORKFLOWS
from orchestrator.store import keys
from orchestrator.workflows.declared import DECLARED_KEY, DeclaredDefinitions, WorkflowDeclarations
from orchestrator.workflows.definition import WorkflowDefinition
from orchestrator.workflows.state import ExecutionStatus
from protocol.control import WorkflowAnnouncement
from protocol.envelope import utc_now
from protocol.services import WORKFLOW_SERVICE
from tests.api_server import Api, delete_lanes
from tests.polling import poll
from tests.workers.helpers import delete_service_queues, running
from workers import Worker
from workers.services import document_pipeline, embedding, ingestion
from workers.services.hashing import embed

# What a plain document_processing job's result held (tests/e2e, tests/workers read these).
PLAIN_RESULT_KEYS = {
    "title",
    "characters",
    "chunk_count",
    "dimensions",
    "embedding_model",
    "vectors_included",
    "chunks",
}
TEXT = "\n\n".join(f"Paragraph {i}. Baton moves long jobs through RabbitMQ. " * 4 for i in range(9))


class Services:
    """The test's ingestion worker (the api's service) serving `doc_<unique>` and declaring the workflow of
    that id, and an embedding worker on a second test service."""

    def __init__(self, api: Api, unique: str) -> None:
        self.doc_type = f"doc_{unique}"
        self.embed_service, self.embed_type = f"emb-{unique}", f"emb_{unique}"
        self.ingest = Worker(api.service)
        self.embed = Worker(self.embed_service)
        ingestion.register(self.ingest, job_type=self.doc_type, embedding_type=self.embed_type)
        embedding.register(self.embed, job_type=self.embed_type)


@pytest.fixture
async def services(api: Api, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[Services]:
    """Routed and declared as the workers' heartbeats and announcement would; all of it removed after."""
    made = Services(api, unique)
    await api.announce()
    template = (await api.app[LIVE].directory.live_workers(api.service))[0]
    for worker in (made.ingest, made.embed):
        heartbeat = template.model_copy(update={"service": worker.service, "job_types": worker.job_types})
        await api.app[LIVE].directory.record_heartbeat(heartbeat)
    announcement = WorkflowAnnouncement(
        worker_id=f"{api.service}-1",
        service=api.service,
        workflows=[declared.announced() for declared in made.ingest.workflows.values()],
    )
    declarations = WorkflowDeclarations(DeclaredDefinitions(redis_client), api.app[LIVE].directory)
    assert await declarations.record(announcement) == [made.doc_type]
    yield made
    channel = await api.amqp.channel()
    await delete_service_queues(channel, made.embed_service)
    await delete_lanes(channel, redis_client, made.embed_service, (api.tenant_a, api.tenant_b))
    await channel.close()
    await redis_client.hdel(DECLARED_KEY, made.doc_type)
    await redis_client.hdel(keys.ROUTES, made.embed_type, made.doc_type)
    await redis_client.srem(keys.ANNOUNCED_SERVICES, made.embed_service)
    await redis_client.zrem(keys.SERVICES_SEEN, made.embed_service)
    await redis_client.delete(keys.workers(made.embed_service))


async def get_job(api: Api, job_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def test_a_document_processing_job_runs_its_declared_workflow(
    api: Api, services: Services, rabbitmq_url: str, redis_url: str
) -> None:
    payload = {"document": TEXT, "title": "Baton", "chunk_size": 300, "dimensions": 32, "batch_size": 4}
    body = {"type": services.doc_type, "payload": payload, "wait": 30, "context": {"request_id": "req-doc"}}
    async with (
        running(services.embed, rabbitmq_url, redis_url=redis_url),
        running(services.ingest, rabbitmq_url, redis_url=redis_url),
    ):
        response = await api.client.post("/jobs", json=body, headers=api.headers_a)
        answer = await response.json()

    assert response.status == 200, answer
    assert answer["status"] == "completed", answer
    result = answer["result"]
    assert PLAIN_RESULT_KEYS <= set(result)
    assert result["title"] == "Baton" and result["dimensions"] == 32 and result["vectors_included"] is True
    assert result["characters"] == len(TEXT) and result["chunk_count"] == len(result["chunks"]) > 4
    for chunk in result["chunks"]:
        assert TEXT[chunk["start"] : chunk["end"]] == chunk["text"]
        assert chunk["vector"] == pytest.approx(embed(chunk["text"], 32))

    job_id = answer["job_id"]
    record = await get_job(api, job_id)
    assert record["type"] == services.doc_type and record["service"] == WORKFLOW_SERVICE
    assert record["root_task_id"] == job_id and record["result"] == result
    assert record["context"]["request_id"] == "req-doc"
    # Its progress came from its steps: 6 of 6 done.
    assert record["progress"]["percentage"] == 100.0
    assert record["progress"]["custom_data"]["completed_steps"] == 6
    steps = {t["task_id"].split(":")[1]: t for t in record["delegated_services"] if t["task_id"] != job_id}
    embeds = {f"embed_{i}" for i in range(document_pipeline.EMBED_BATCHES)}
    assert set(steps) == {"split", "index", *embeds}
    assert all(t["status"] == "completed" for t in steps.values()), record["delegated_services"]
    assert {steps[name]["service"] for name in embeds} == {services.embed_service}

    execution = await api.app[WORKFLOWS].get(api.tenant_a, job_id)
    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.workflow_id == services.doc_type
    listed = await api.client.get(f"/jobs?type={services.doc_type}", headers=api.headers_a)
    assert [job["job_id"] for job in (await listed.json())["jobs"]] == [job_id]


async def test_cancelling_the_job_cancels_its_execution(api: Api, services: Services) -> None:
    """No worker runs: the split step waits in its queue until the job is cancelled."""
    body = {"type": services.doc_type, "payload": {"text": TEXT}}
    response = await api.client.post("/jobs", json=body, headers=api.headers_a)
    assert response.status == 202, await response.text()
    job_id = (await response.json())["job_id"]
    assert (await api.app[WORKFLOWS].get(api.tenant_a, job_id)).status is ExecutionStatus.RUNNING

    cancelled = await api.client.post(f"/jobs/{job_id}/cancel", headers=api.headers_a)
    assert cancelled.status == 200, await cancelled.text()
    execution = await api.app[WORKFLOWS].get(api.tenant_a, job_id)
    assert execution.status is ExecutionStatus.CANCELLED
    assert execution.steps["split"].status.value == "cancelled"
    record = await poll(
        lambda: get_job(api, job_id), lambda job: job["status"] == "cancelled", what="the job to end cancelled"
    )
    assert record["type"] == services.doc_type
    again = await api.client.post(f"/jobs/{job_id}/cancel", headers=api.headers_a)
    assert again.status == 409


async def test_an_idempotency_key_finds_the_job_and_refuses_another_request(api: Api, services: Services) -> None:
    body = {"type": services.doc_type, "payload": {"text": TEXT}, "idempotency_key": "doc-once"}
    first = await (await api.client.post("/jobs", json=body, headers=api.headers_a)).json()
    again = await api.client.post("/jobs", json=body, headers=api.headers_a)
    assert again.status == 202 and (await again.json())["job_id"] == first["job_id"]
    other = {**body, "payload": {"text": TEXT + " More."}}
    conflict = await api.client.post("/jobs", json=other, headers=api.headers_a)
    assert conflict.status == 409 and (await conflict.json())["job_id"] == first["job_id"]
    # The other tenant's key space is its own.
    theirs = await api.client.post("/jobs", json=body, headers=api.headers_b)
    assert theirs.status == 202 and (await theirs.json())["job_id"] != first["job_id"]
    for headers, job_id in ((api.headers_a, first["job_id"]), (api.headers_b, (await theirs.json())["job_id"])):
        # No worker runs their steps: ended here, they leave nothing unfinished in the shared Redis.
        assert (await api.client.post(f"/jobs/{job_id}/cancel", headers=headers)).status == 200


async def test_a_tenants_own_workflow_never_takes_a_job_type_over(api: Api) -> None:
    """Only a workflow declared by the service that serves the type runs its jobs."""
    own = WorkflowDefinition.model_validate(
        {"name": "Hijack", "steps": [{"name": "only", "type": api.job_type, "payload": {"x": 1}}]}
    )
    await api.app[WORKFLOWS].definitions.put(api.tenant_a, api.job_type, own, utc_now())
    response = await api.client.post("/jobs", json={"type": api.job_type, "payload": {"n": 1}}, headers=api.headers_a)
    assert response.status == 202
    record = await get_job(api, (await response.json())["job_id"])
    assert record["service"] == api.service and record["type"] == api.job_type
    [(_, envelope)] = await api.queued_envelopes()
    assert envelope.payload == {"n": 1}
