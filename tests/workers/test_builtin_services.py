"""The built-in services on the real broker, on uuid-named queues (their handlers registered on test Workers)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aio_pika.abc import AbstractChannel

from protocol.envelope import ContextIds
from protocol.events import EventType
from tests.workers.helpers import Tap, envelope, publish_task, running
from workers import Worker
from workers.services import agent, embedding, ingestion, query
from workers.services.hashing import embed

DOCUMENT = "\n\n".join(
    f"Paragraph {i}. It talks about topic {i} at some length, so that chunks fill up. " * 3 for i in range(12)
)


async def test_ingestion_embeds_chunks_through_the_embedding_service(
    rabbitmq_url: str, channel: AbstractChannel, service_names: Callable[[str], str]
) -> None:
    ingest_service, embed_service = service_names("ingest"), service_names("embed")
    ingest_worker, embed_worker = Worker(ingest_service), Worker(embed_service)
    ingestion.register(ingest_worker, embedding_service=embed_service)
    embedding.register(embed_worker)
    tap = await Tap.open(channel, f"*.{ingest_service}.*")
    async with running(embed_worker, rabbitmq_url), running(ingest_worker, rabbitmq_url):
        task = envelope(
            ingest_service,
            "document_processing",
            {
                "document": DOCUMENT,
                "title": "doc",
                "chunk_size": 300,
                "chunk_overlap": 60,
                "dimensions": 64,
                "batch_size": 4,
            },
        )
        await publish_task(channel, task)
        events = await tap.task_events(task.task_id, within=20)

    result = events[-1].data["result"]
    progress = [e.data["progress"]["percentage"] for e in events if "progress" in e.data]
    assert events[-1].event is EventType.TASK_COMPLETED
    assert result["chunk_count"] == len(result["chunks"]) > 4
    assert result["dimensions"] == 64 and result["vectors_included"] is True
    assert progress == sorted(progress) and progress[-1] == pytest.approx(95)
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
