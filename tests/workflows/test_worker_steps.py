"""The worker side of workflows on the real RabbitMQ and Redis with real worker runtimes: a step handler
sees its execution through `ctx.workflow`; workflows declared beside a worker's handlers become every
tenant's; the ingestion service's `document_processing` workflow fans its embedding out and joins it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from orchestrator.app import LIVE, WORKFLOWS
from orchestrator.store import keys
from orchestrator.workflows.declared import DECLARED_KEY, DeclaredDefinitions, WorkflowDeclarations
from orchestrator.workflows.definition import WorkflowDefinition
from orchestrator.workflows.engine import WorkflowEngine
from orchestrator.workflows.state import ExecutionState, ExecutionStatus
from orchestrator.workflows.status import progress_view
from protocol.control import WorkflowAnnouncement
from protocol.envelope import utc_now
from tests.api_server import Api, delete_lanes
from tests.polling import poll
from tests.workers.helpers import delete_service_queues, running
from workers import TaskContext, Worker, WorkflowStep, step
from workers.services import document_pipeline, embedding, ingestion
from workers.services.hashing import embed


@pytest.fixture
async def embedding_service(api: Api, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[tuple[str, str]]:
    """A second test service and job type (name, type); its queues, route and entries are removed after."""
    service, job_type = f"emb-{unique}", f"emb_{unique}"
    yield service, job_type
    channel = await api.amqp.channel()
    await delete_service_queues(channel, service)
    await delete_lanes(channel, redis_client, service, (api.tenant_a, api.tenant_b))
    await channel.close()
    await redis_client.hdel(keys.ROUTES, job_type, f"doc_{unique}")
    await redis_client.srem(keys.ANNOUNCED_SERVICES, service)
    await redis_client.zrem(keys.SERVICES_SEEN, service)
    await redis_client.delete(keys.workers(service))


@pytest.fixture
async def declarations(redis_client: aioredis.Redis, api: Api, unique: str) -> AsyncIterator[WorkflowDeclarations]:
    """What the orchestrator's event consumer hands announcements to; the test's declarations are removed."""
    yield WorkflowDeclarations(DeclaredDefinitions(redis_client), api.app[LIVE].directory)
    doomed = [field for field in await redis_client.hkeys(DECLARED_KEY) if unique in str(field)]
    if doomed:
        await redis_client.hdel(DECLARED_KEY, *doomed)


def engine(api: Api) -> WorkflowEngine:
    return api.app[WORKFLOWS]


async def finished(api: Api, tenant_id: str, execution_id: str, within: float = 30.0) -> ExecutionState:
    return await poll(
        lambda: engine(api).get(tenant_id, execution_id),
        lambda state: state.is_finished,
        within=within,
        what=f"execution {execution_id} to finish",
    )


def announcement(worker: Worker) -> WorkflowAnnouncement:
    """What the worker's runtime publishes at start (workers.runtime.announcer)."""
    return WorkflowAnnouncement(
        worker_id=f"{worker.service}-1",
        service=worker.service,
        workflows=[declared.announced() for declared in worker.workflows.values()],
    )


class Recorder:
    def __init__(self, api: Api) -> None:
        self.seen: dict[str, WorkflowStep | None] = {}
        self.worker = Worker(api.service, concurrency=4)
        self.worker.handler(api.job_type)(self.run)

    async def run(self, payload: dict[str, Any], ctx: TaskContext) -> Any:
        self.seen[payload["name"]] = ctx.workflow
        return payload.get("returns", {"name": payload["name"]})


async def test_a_step_handler_sees_its_config_and_the_context_earlier_steps_set(
    api: Api, rabbitmq_url: str, redis_url: str
) -> None:
    t = api.job_type
    definition = WorkflowDefinition.model_validate(
        {
            "name": "context",
            "steps": [
                {"name": "a", "type": t, "payload": {"name": "a", "returns": {"context": {"language": "en"}}}},
                {"name": "b", "type": t, "payload": {"name": "b"}, "config": {"model": "small", "depth": 2}},
            ],
        }
    )
    await engine(api).definitions.put(api.tenant_a, "context", definition, utc_now())
    recorder = Recorder(api)
    async with running(recorder.worker, rabbitmq_url, redis_url=redis_url):
        state, _ = await engine(api).execute(api.tenant_a, "context", {"doc": "d-1"})
        done = await finished(api, api.tenant_a, state.execution_id)

    assert done.status is ExecutionStatus.COMPLETED
    first, second = recorder.seen["a"], recorder.seen["b"]
    assert first is not None and second is not None
    assert dict(first.context.dynamic_properties) == {"doc": "d-1"} and dict(first.config) == {}
    assert (second.execution_id, second.workflow_id, second.step, second.attempt) == (
        state.execution_id,
        "context",
        "b",
        1,
    )
    assert dict(second.config) == {"model": "small", "depth": 2}
    assert second.context.execution_id == state.execution_id
    assert dict(second.context.dynamic_properties) == {"doc": "d-1", "language": "en"}


async def test_a_declared_workflow_is_every_tenants_unless_a_tenant_has_its_own(
    api: Api, declarations: WorkflowDeclarations, rabbitmq_url: str, redis_url: str, unique: str
) -> None:
    workflow_id = f"declared-{unique}"
    recorder = Recorder(api)
    recorder.worker.workflow(
        workflow_id, name="Declared", steps=[step("only", api.job_type, payload={"name": "declared"})]
    )
    await api.announce()  # the worker's heartbeat: its job type is known before its workflows come
    assert await declarations.record(announcement(recorder.worker)) == [workflow_id]

    definitions = engine(api).definitions
    for tenant in (api.tenant_a, api.tenant_b):
        found = await definitions.get(tenant, workflow_id)
        assert found is not None and found.declared_by == api.service and found.definition.name == "Declared"
    listed = {stored.workflow_id: stored.to_json() for stored in await definitions.all(api.tenant_b)}
    assert listed[workflow_id]["declared_by"] == api.service

    own = WorkflowDefinition.model_validate(
        {"name": "Tenant A's own", "steps": [{"name": "only", "type": api.job_type, "payload": {"name": "own"}}]}
    )
    await definitions.put(api.tenant_a, workflow_id, own, utc_now())
    mine = await definitions.get(api.tenant_a, workflow_id)
    assert mine is not None and mine.declared_by is None and mine.definition.name == "Tenant A's own"
    listed_a = {stored.workflow_id: stored.to_json() for stored in await definitions.all(api.tenant_a)}
    assert listed_a[workflow_id]["name"] == "Tenant A's own" and "declared_by" not in listed_a[workflow_id]
    assert not await definitions.delete(api.tenant_b, workflow_id)  # a tenant cannot delete a declared one

    async with running(recorder.worker, rabbitmq_url, redis_url=redis_url):
        runs = {
            tenant: (await engine(api).execute(tenant, workflow_id, {}))[0] for tenant in (api.tenant_a, api.tenant_b)
        }
        for tenant, state in runs.items():
            assert (await finished(api, tenant, state.execution_id)).status is ExecutionStatus.COMPLETED
    assert set(recorder.seen) == {"own", "declared"}


async def test_an_invalid_or_contested_declaration_is_refused_and_never_stored(
    api: Api, declarations: WorkflowDeclarations, redis_client: aioredis.Redis, unique: str
) -> None:
    await api.announce()
    worker = Worker(api.service)
    worker.workflow(f"unknown-type-{unique}", name="Unknown", steps=[step("a", f"nobody_serves_{unique}")])
    worker.workflow(f"cycle-{unique}", name="Cycle", steps=[step("a", api.job_type, after=["a"])])
    worker.workflow(f"fine-{unique}", name="Fine", steps=[step("a", api.job_type)])
    assert await declarations.record(announcement(worker)) == [f"fine-{unique}"]
    assert not await redis_client.hexists(DECLARED_KEY, f"unknown-type-{unique}")
    assert not await redis_client.hexists(DECLARED_KEY, f"cycle-{unique}")

    # Unchanged, announced again: nothing rewritten.
    before = await DeclaredDefinitions(redis_client).get(f"fine-{unique}")
    assert await declarations.record(announcement(worker)) == [f"fine-{unique}"]
    assert await DeclaredDefinitions(redis_client).get(f"fine-{unique}") == before

    # Another service may not take the id over while the one that declared it is known.
    rival = Worker(f"rival-{unique}")
    rival.workflow(f"fine-{unique}", name="Taken over", steps=[step("a", api.job_type)])
    assert await declarations.record(announcement(rival)) == []
    stored = await DeclaredDefinitions(redis_client).get(f"fine-{unique}")
    assert stored is not None and stored.declared_by == api.service and stored.definition.name == "Fine"


async def test_a_workflow_under_a_job_types_id_belongs_to_the_service_serving_that_type(
    api: Api, declarations: WorkflowDeclarations, redis_client: aioredis.Redis, unique: str
) -> None:
    """A stray service declaring a workflow under another service's job type (a test worker registering
    the ingestion handlers under their default names did, and every `document_processing` job then ran as a
    plain task and failed) is refused; the type's own service takes the id back from whoever holds it."""
    await api.announce()
    stray = Worker(f"stray-{unique}")
    stray.workflow(api.job_type, name="Not yours", steps=[step("a", api.job_type)])
    assert await declarations.record(announcement(stray)) == []
    assert not await redis_client.hexists(DECLARED_KEY, api.job_type)

    # Held by another service (stored before this rule): the owner's announcement replaces it.
    await DeclaredDefinitions(redis_client).put(
        api.job_type, {"name": "Stale", "steps": [{"name": "a", "type": api.job_type}]}, f"stray-{unique}", utc_now()
    )
    owner = Worker(api.service)
    owner.workflow(api.job_type, name="Mine", steps=[step("a", api.job_type)])
    try:
        assert await declarations.record(announcement(owner)) == [api.job_type]
        stored = await DeclaredDefinitions(redis_client).get(api.job_type)
        assert stored is not None and stored.declared_by == api.service and stored.definition.name == "Mine"
    finally:
        await redis_client.hdel(DECLARED_KEY, api.job_type)


async def test_document_processing_runs_as_a_workflow_with_its_embedding_fanned_out(
    api: Api,
    declarations: WorkflowDeclarations,
    embedding_service: tuple[str, str],
    rabbitmq_url: str,
    redis_url: str,
    unique: str,
) -> None:
    """The ingestion service's workflow, on test queues: its split and index stages on an ingestion
    worker, its embed steps in parallel on an embedding worker."""
    embed_service, embed_type = embedding_service
    doc_type, workflow_id = f"doc_{unique}", f"documents-{unique}"
    ingest_worker, embed_worker = Worker(api.service), Worker(embed_service)
    ingestion.register(ingest_worker, job_type=doc_type, embedding_type=embed_type, workflow_id=workflow_id)
    embedding.register(embed_worker, job_type=embed_type)
    for worker in (ingest_worker, embed_worker):
        heartbeat = (await _heartbeat(api)).model_copy(
            update={"service": worker.service, "job_types": worker.job_types}
        )
        await api.app[LIVE].directory.record_heartbeat(heartbeat)
    assert await declarations.record(announcement(ingest_worker)) == [workflow_id]

    text = "\n\n".join(f"Paragraph {i}. Baton moves long jobs through RabbitMQ. " * 4 for i in range(9))
    data = {"text": text, "title": "Baton", "chunk_size": 300, "dimensions": 32}
    async with (
        running(embed_worker, rabbitmq_url, redis_url=redis_url),
        running(ingest_worker, rabbitmq_url, redis_url=redis_url),
    ):
        state, _ = await engine(api).execute(api.tenant_b, workflow_id, data)
        done = await finished(api, api.tenant_b, state.execution_id)

    assert done.status is ExecutionStatus.COMPLETED, done.steps
    split = done.steps["split"].result
    batches = split["batches"]
    assert len(batches) == document_pipeline.EMBED_BATCHES and all(batches)  # every parallel step had chunks
    embeds = [done.steps[f"embed_{i}"].result for i in range(document_pipeline.EMBED_BATCHES)]
    assert [e["count"] for e in embeds] == [len(batch) for batch in batches]
    result = done.steps["index"].result
    assert result["title"] == "Baton" and result["dimensions"] == 32 and result["vectors_included"] is True
    assert result["chunk_count"] == len(result["chunks"]) == len(split["chunks"]) > document_pipeline.EMBED_BATCHES
    for chunk in result["chunks"]:
        assert text[chunk["start"] : chunk["end"]] == chunk["text"]
        assert chunk["vector"] == pytest.approx(embed(chunk["text"], 32))
    assert result["summary"].startswith("Paragraph 0. Baton moves long jobs through RabbitMQ.")
    properties = done.context.dynamic_properties
    assert properties["chunk_count"] == result["chunk_count"] and properties["summary"] == result["summary"]
    assert progress_view(done).percentage == 100.0 and progress_view(done).completed_steps == 6
    # The job follows once the engine's events are applied (just after the state is stored).
    await poll(
        lambda: api.app[LIVE].registry.get(api.tenant_b, state.execution_id),
        lambda job: job is not None and job.status == "completed",
        what="the execution's job to complete",
    )


async def _heartbeat(api: Api) -> Any:
    await api.announce()
    return (await api.app[LIVE].directory.live_workers(api.service))[0]


async def test_a_job_type_another_replica_just_routed_is_known_to_the_declaration(
    api: Api, declarations: WorkflowDeclarations, redis_client: aioredis.Redis, unique: str
) -> None:
    """The worker's heartbeat reached another replica a moment before its announcement reached this one:
    this replica's copy of the routes does not have the type yet, Redis does."""
    fresh_type = f"fresh_{unique}"
    await api.app[LIVE].directory.known_job_types()  # this replica's copy, read now
    await redis_client.hset(keys.ROUTES, fresh_type, api.service)
    try:
        worker = Worker(api.service)
        worker.workflow(f"fresh-{unique}", name="Fresh", steps=[step("a", fresh_type)])
        assert await declarations.record(announcement(worker)) == [f"fresh-{unique}"]
    finally:
        await redis_client.hdel(keys.ROUTES, fresh_type)
