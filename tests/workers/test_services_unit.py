"""Built-in handlers without a broker: a TaskContext over in-memory seams (progress, child calls)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from protocol.envelope import TaskEnvelope, TaskMetadata
from protocol.events import Progress
from workers import LlmSettings, TaskContext, WorkerSettings
from workers.breaker import CircuitBreakers
from workers.errors import PermanentError
from workers.http import ContextHttpClient, HttpPolicy, context_headers
from workers.runtime.child_jobs import OrchestratorJobs
from workers.services import document_pipeline, embedding, ingestion, query
from workers.services.hashing import embed


class Recorder:
    """The progress seam: keeps what a handler reported."""

    def __init__(self) -> None:
        self.updates: list[Progress] = []

    async def __call__(self, progress: Progress) -> None:
        self.updates.append(progress)


class EmbeddingCaller:
    """The child-call seam, answering embedding requests with the real embedding handler."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    async def call(
        self,
        parent: TaskEnvelope,
        service: str,
        job_type: str,
        payload: Mapping[str, Any],
        *,
        timeout_seconds: float,
        retries: int,
        priority: int | None,
    ) -> Any:
        self.calls.append((service, job_type, len(payload["texts"])))
        request = embedding.EmbeddingRequest.model_validate(payload)
        return (await embedding.embed_texts(request, context(parent, {}))).model_dump()


def envelope(job_type: str, payload: dict[str, Any]) -> TaskEnvelope:
    return TaskEnvelope(global_task_id="job-1", tenant_id="tenant-a", type=job_type, service="svc", payload=payload)


def context(
    env: TaskEnvelope,
    session: Any,
    settings: WorkerSettings | None = None,
    recorder: Recorder | None = None,
    caller: EmbeddingCaller | None = None,
) -> TaskContext:
    return TaskContext(
        env,
        settings=settings or WorkerSettings(),
        http=ContextHttpClient(session, context_headers(env), HttpPolicy(), breakers=CircuitBreakers()),
        report_progress=recorder or Recorder(),
        caller=caller or EmbeddingCaller(),
        # The built-in services make no jobs of their own: without a token, submit_job would refuse.
        jobs=OrchestratorJobs("http://orchestrator.invalid", env.service, None),
    )


async def _longest_stall(done: asyncio.Event) -> float:
    """Ticks on the event loop until `done`; the longest gap between two ticks (s)."""
    loop = asyncio.get_running_loop()
    worst, last = 0.0, loop.time()
    while not done.is_set():
        await asyncio.sleep(0.005)
        now = loop.time()
        worst, last = max(worst, now - last), now
    return worst


async def test_embedding_a_large_request_leaves_the_event_loop_free() -> None:
    """Heartbeats, cancels and acks of the process run on the loop while the hashing runs."""
    texts = [" ".join(f"word{i} token{j}" for j in range(30)) for i in range(600)]
    request = embedding.EmbeddingRequest(texts=texts, dimensions=4096)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    ticker = asyncio.create_task(_longest_stall(done))
    await asyncio.sleep(0)  # the ticker is running before the embedding starts
    started = loop.time()
    result = await embedding.embed_texts(request, context(envelope("embedding_request", {}), None))
    elapsed = loop.time() - started
    done.set()
    stall = await ticker

    assert result.count == 600 and result.vectors[599] == pytest.approx(embed(texts[599], 4096))
    assert elapsed > 0.2  # enough work to tell a blocked loop from a free one
    # Run on the loop itself, the stall would be the whole embedding; a busy machine (other
    # processes on both cores) can delay a free loop's ticks by tens of milliseconds.
    assert stall < elapsed / 2, f"the loop stalled {stall:.3f} s in {elapsed:.3f} s of embedding"


def step_envelope(
    payload: dict[str, Any], step: str, config: dict[str, Any], properties: dict[str, Any]
) -> TaskEnvelope:
    """A task of one step of the document_processing workflow, as the engine sends it."""
    workflow = {
        "execution_id": "job-1",
        "workflow_id": "document_processing",
        "step": step,
        "attempt": 1,
        "config": config,
        "context": {"execution_id": "job-1", "dynamic_properties": properties},
    }
    env = envelope("document_processing", payload)
    metadata = TaskMetadata.model_validate({"source": "workflow", "workflow": workflow})
    return env.model_copy(update={"metadata": metadata, "task_id": f"job-1:{step}:1"})


@pytest.mark.parametrize(("dimensions", "inline"), [(64, True), (1024, False)])
async def test_ingestion_splits_and_indexes_as_the_workflow_steps_it_declares(dimensions: int, inline: bool) -> None:
    """The split and index stages, with the embed steps between them run by the real embedding handler
    (the workflow's fan-out replaced the handler's own calls to the embedding service)."""
    text = "\n\n".join(f"Section {i}. " + "Some words about the section. " * 8 for i in range(20))
    data = {"text": text, "chunk_size": 300, "chunk_overlap": 50, "dimensions": dimensions, "batch_size": 8}
    handler = ingestion.make_handler()
    split_config = {"stage": document_pipeline.SPLIT, "batches": document_pipeline.EMBED_BATCHES}
    split_env = step_envelope({"input": data}, "split", split_config, data)
    recorder = Recorder()
    split_payload = document_pipeline.SplitRequest.model_validate(split_env.payload)
    split = await handler(split_payload, context(split_env, None, recorder=recorder))
    assert [p.percentage for p in recorder.updates] == [100]

    embedded = []
    for batch in split["batches"]:
        request = embedding.EmbeddingRequest(texts=batch, dimensions=dimensions)
        embedded.append(
            (await embedding.embed_texts(request, context(envelope("embedding_request", {}), None))).model_dump()
        )
    index_payload = document_pipeline.IndexRequest.model_validate({"split": split, "embedded": embedded})
    index_env = step_envelope(index_payload.model_dump(), "index", {"stage": document_pipeline.INDEX}, data)
    result = await handler(index_payload, context(index_env, None))

    count = result["chunk_count"]
    assert count == len(result["chunks"]) > 16
    assert sum(len(batch) for batch in split["batches"]) == count
    assert result["vectors_included"] is inline
    first = result["chunks"][0]
    vector = embed(text[first["start"] : first["end"]], dimensions)
    if inline:
        assert first["vector"] == pytest.approx(vector)
    else:
        assert "vector" not in first and first["vector_digest"] == ingestion.vector_digest(vector)
        assert len(first["preview"]) <= ingestion.PREVIEW_CHARS


async def test_a_document_processing_task_that_is_no_workflow_step_is_refused_without_retry() -> None:
    request = ingestion.DocumentProcessingRequest(text="One sentence. Another one.")
    handler = ingestion.make_handler()
    with pytest.raises(PermanentError, match="runs as the workflow"):
        await handler(request, context(envelope("document_processing", request.model_dump()), None))


def test_ingestion_payload_rules() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ingestion.DocumentProcessingRequest(text="a", document="b")
    with pytest.raises(ValueError, match="empty"):
        ingestion.DocumentProcessingRequest(text="   ")
    with pytest.raises(ValueError, match="smaller than chunk_size"):
        ingestion.DocumentProcessingRequest(text="a", chunk_size=100, chunk_overlap=100)


@pytest.fixture
async def llm_server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    requests: list[dict[str, Any]] = []

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        requests.append(
            {"body": body, "auth": request.headers.get("Authorization"), "tenant": request.headers.get("X-Tenant-Id")}
        )
        if body["model"] == "broken":
            return web.json_response({"error": "no such model"}, status=404)
        return web.json_response(
            {
                "model": body["model"],
                "usage": {"total_tokens": 3},
                "choices": [{"message": {"role": "assistant", "content": "42"}, "finish_reason": "stop"}],
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/v1", requests
    await runner.cleanup()


async def test_query_calls_an_openai_compatible_endpoint(llm_server: tuple[str, list[dict[str, Any]]]) -> None:
    base_url, requests = llm_server
    settings = WorkerSettings(llm=LlmSettings(base_url=base_url, api_key="k", model="m-default"))
    request = query.LlmRequest(prompt="meaning of life?", system="be brief", temperature=0.1)
    async with aiohttp.ClientSession() as session:
        answer = await query.answer_query(request, context(envelope("llm_request", {}), session, settings))
        with pytest.raises(query.LlmError, match="answered 404"):
            await query.answer_query(
                query.LlmRequest(prompt="x", model="broken"), context(envelope("llm_request", {}), session, settings)
            )

    assert answer == {"answer": "42", "model": "m-default", "finish_reason": "stop", "usage": {"total_tokens": 3}}
    sent = requests[0]
    assert sent["auth"] == "Bearer k" and sent["tenant"] == "tenant-a"
    assert sent["body"] == {
        "model": "m-default",
        "temperature": 0.1,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "meaning of life?"}],
    }


async def test_query_without_a_model_answers_locally_and_says_so() -> None:
    request = query.LlmRequest(messages=[{"role": "user", "content": "hello there"}])  # type: ignore[list-item]
    answer = await query.answer_query(request, context(envelope("llm_request", {}), None))
    assert answer["model"] == "baton-local" and "LLM_BASE_URL" in answer["note"]
    assert "hello there" in answer["answer"]
    assert answer == await query.answer_query(request, context(envelope("llm_request", {}), None))
    with pytest.raises(ValueError, match="exactly one"):
        query.LlmRequest()
