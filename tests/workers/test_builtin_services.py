"""The built-in services on the real broker, on uuid-named queues (their handlers registered on test Workers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aio_pika.abc import AbstractChannel

from protocol.envelope import ContextIds, TaskEnvelope, TaskMetadata
from protocol.events import EventType
from tests.workers.helpers import Tap, envelope, publish_task, running
from workers import Worker
from workers.services import agent, document_pipeline, embedding, ingestion, query
from workers.services.hashing import embed

DOCUMENT = "\n\n".join(
    f"Paragraph {i}. It talks about topic {i} at some length, so that chunks fill up. " * 3 for i in range(12)
)


def workflow_step(task: TaskEnvelope, step: str, config: dict[str, Any], attempt: int = 1) -> TaskEnvelope:
    """The task as the workflow engine sends one step of an execution (the job id is the execution's)."""
    workflow = {
        "execution_id": task.global_task_id,
        "workflow_id": "document_processing",
        "step": step,
        "attempt": attempt,
        "config": config,
        "context": {"execution_id": task.global_task_id, "dynamic_properties": {}},
    }
    metadata = TaskMetadata.model_validate({"source": "workflow", "workflow": workflow})
    return task.model_copy(update={"metadata": metadata, "task_id": f"{task.global_task_id}:{step}:{attempt}"})


async def test_ingestion_runs_its_workflow_stages_around_the_embedding_service(
    rabbitmq_url: str, channel: AbstractChannel, service_names: Callable[[str], str]
) -> None:
    """The split and index steps on the ingestion worker, the embed steps between them on the embedding
    worker, each published as the workflow engine publishes them (the handler no longer calls the
    embedding service itself: the declared workflow fans out)."""
    ingest_service, embed_service = service_names("ingest"), service_names("embed")
    ingest_worker, embed_worker = Worker(ingest_service), Worker(embed_service)
    ingestion.register(ingest_worker)
    embedding.register(embed_worker)
    ingest_tap = await Tap.open(channel, f"*.{ingest_service}.*")
    embed_tap = await Tap.open(channel, f"*.{embed_service}.*")
    request = {"document": DOCUMENT, "title": "doc", "chunk_size": 300, "chunk_overlap": 60, "dimensions": 64}
    async with running(embed_worker, rabbitmq_url), running(ingest_worker, rabbitmq_url):
        split_task = workflow_step(
            envelope(ingest_service, "document_processing", {"input": request}),
            "split",
            {"stage": document_pipeline.SPLIT, "batches": document_pipeline.EMBED_BATCHES},
        )
        await publish_task(channel, split_task)
        split_events = await ingest_tap.task_events(split_task.task_id, within=20)
        split = split_events[-1].data["result"]
        embedded = []
        for i, batch in enumerate(split["batches"]):
            embed_task = workflow_step(
                envelope(embed_service, "embedding_request", {"texts": batch, "dimensions": 64}),
                f"embed_{i}",
                {},
            )
            await publish_task(channel, embed_task)
            embedded.append((await embed_tap.task_events(embed_task.task_id, within=20))[-1].data["result"])
        index_task = workflow_step(
            envelope(ingest_service, "document_processing", {"split": split, "embedded": embedded}),
            "index",
            {"stage": document_pipeline.INDEX},
        )
        await publish_task(channel, index_task)
        events = await ingest_tap.task_events(index_task.task_id, within=20)

    result = events[-1].data["result"]
    assert split_events[-1].event is EventType.TASK_COMPLETED and events[-1].event is EventType.TASK_COMPLETED
    assert [e.data["progress"]["percentage"] for e in split_events if "progress" in e.data] == [100]
    assert result["chunk_count"] == len(result["chunks"]) > 4
    assert result["title"] == "doc" and result["dimensions"] == 64 and result["vectors_included"] is True
    first = result["chunks"][0]
    assert DOCUMENT[first["start"] : first["end"]] == first["text"]
    assert first["vector"] == pytest.approx(embed(first["text"], 64))


async def test_agent_asks_the_query_service_which_answers_locally_without_a_model(
    rabbitmq_url: str, channel: AbstractChannel, service_names: Callable[[str], str]
) -> None:
    agent_service, query_service = service_names("agent"), service_names("query")
    agent_worker, query_worker = Worker(agent_service), Worker(query_service)
    agent.register(agent_worker, query_service=query_service)
    query.register(query_worker)
    tap = await Tap.open(channel, f"*.{agent_service}.*")
    async with running(query_worker, rabbitmq_url), running(agent_worker, rabbitmq_url):
        task = envelope(
            agent_service,
            "agent_execution",
            {"message": "What is Baton?"},
            context=ContextIds(agent_id="helper", conversation_id="conv-1"),
        )
        await publish_task(channel, task)
        events = await tap.task_events(task.task_id, within=20)

    result = events[-1].data["result"]
    assert result["agent_id"] == "helper" and result["conversation_id"] == "conv-1"
    assert result["model"] == "baton-local" and "LLM_BASE_URL" in result["note"]
    assert "What is Baton?" in result["answer"]
    assert [s["name"] for s in result["steps"]] == ["plan", "llm", "respond"]
    assert [e.data["progress"]["current_task"] for e in events if "progress" in e.data] == ["plan", "llm", "respond"]
