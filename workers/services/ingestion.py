"""The `ingestion` service: `document_processing`, as one task or as the stages of a workflow.

As a plain job (`POST /jobs`), one task does it all: the document is split (workers.services.chunking),
then embedded through child tasks (`ctx.call_service("embedding", "embedding_request", ...)`) in
batches, with progress after each batch. The same service also declares the `document_processing`
workflow (workers.services.document_pipeline), whose split and index steps are tasks of this job type
told their stage by their step `config`, and whose embedding runs in parallel steps. Chunking and
building the result are CPU work on the whole document: they run in a thread, so the event loop keeps
serving heartbeats, cancels and other handlers.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from workers.context import TaskContext
from workers.errors import PermanentError
from workers.sdk import Worker
from workers.services import builtin_worker, document_pipeline
from workers.services.chunking import chunk_text
from workers.services.documents import (
    INLINE_VECTOR_FLOATS,
    PREVIEW_CHARS,
    DocumentProcessingRequest,
    chunk_entries,
    vector_digest,
    vectors_inline,
)

__all__ = [
    "INLINE_VECTOR_FLOATS",
    "PREVIEW_CHARS",
    "DocumentProcessingRequest",
    "make_handler",
    "register",
    "vector_digest",
    "worker",
]

EMBEDDING_TIMEOUT_SECONDS: Final[float] = 30.0


def make_handler(embedding_service: str, embedding_type: str = "embedding_request") -> Any:
    async def process_document(
        payload: DocumentProcessingRequest | document_pipeline.IndexRequest, ctx: TaskContext
    ) -> dict[str, Any]:
        stage = document_pipeline.stage_of(ctx)
        if stage == document_pipeline.SPLIT:
            if not isinstance(payload, DocumentProcessingRequest):
                raise PermanentError("the split stage takes a document_processing request")
            return await document_pipeline.split(payload, ctx)
        if stage == document_pipeline.INDEX:
            if not isinstance(payload, document_pipeline.IndexRequest):
                raise PermanentError("the index stage takes the split step's result and the embedded batches")
            return await document_pipeline.index(payload, ctx)
        if not isinstance(payload, DocumentProcessingRequest):
            raise PermanentError("give a document_processing request: `text` or `document`, and options")
        return await _process_whole(payload, ctx, embedding_service, embedding_type)

    return process_document


async def _process_whole(
    payload: DocumentProcessingRequest, ctx: TaskContext, embedding_service: str, embedding_type: str
) -> dict[str, Any]:
    chunks = await asyncio.to_thread(chunk_text, payload.content, payload.chunk_size, payload.chunk_overlap)
    total = len(chunks)
    await ctx.progress(10, f"split into {total} chunks", current_task="chunking")
    vectors: list[list[float]] = []
    model = None
    for first in range(0, total, payload.batch_size):
        batch = chunks[first : first + payload.batch_size]
        answer = await ctx.call_service(
            embedding_service,
            embedding_type,
            {"texts": [c.text for c in batch], "dimensions": payload.dimensions},
            timeout=EMBEDDING_TIMEOUT_SECONDS,
        )
        batch_vectors = answer.get("vectors") if isinstance(answer, dict) else None
        if not isinstance(batch_vectors, list) or len(batch_vectors) != len(batch):
            raise PermanentError(
                f"the embedding service answered {len(batch_vectors or [])} vectors for {len(batch)} chunks"
            )
        vectors.extend(batch_vectors)
        model = answer.get("model")
        await ctx.progress(
            10 + 85 * len(vectors) / total,
            f"embedded {len(vectors)}/{total} chunks",
            current_task="embedding",
            custom_data={"chunks_done": len(vectors), "chunks_total": total},
        )
    inline = vectors_inline(total, payload.dimensions)
    entries = await asyncio.to_thread(chunk_entries, chunks, vectors, inline)
    return {
        "title": payload.title,
        "characters": len(payload.content),
        "chunk_count": total,
        "dimensions": payload.dimensions,
        "embedding_model": model,
        "vectors_included": inline,
        "chunks": entries,
    }


def register(
    worker: Worker,
    *,
    embedding_service: str = "embedding",
    job_type: str = "document_processing",
    embedding_type: str = "embedding_request",
    workflow_id: str = document_pipeline.WORKFLOW_ID,
) -> None:
    """The handler, and the workflow whose steps run it (tests give their own names for both)."""
    worker.handler(job_type)(make_handler(embedding_service, embedding_type))
    worker.workflow(
        workflow_id,
        name="Document processing: split, embed in parallel, index and summarise",
        steps=document_pipeline.steps(job_type, embedding_type),
    )


worker = builtin_worker("ingestion")
register(worker)
