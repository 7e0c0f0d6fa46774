"""The `ingestion` service: `document_processing`, run as the workflow the service declares.

The service declares the `document_processing` workflow (workers.services.document_pipeline): split ->
embed the chunks in parallel steps on the embedding service -> index and summarise. It is declared
under the job type's own id, so the orchestrator runs `POST /jobs {"type": "document_processing"}` as
an execution of it, whose result is the index step's. This handler serves the split and index steps,
told their stage by their step `config`; a `document_processing` task that is no step of the workflow
(an orchestrator that has not seen the declaration yet, or of an earlier release) is refused without
retry, rather than half done. Chunking and building the result are CPU work on the whole document: they
run in a thread, so the event loop keeps serving heartbeats, cancels and other handlers.
"""

from __future__ import annotations

from typing import Any

from workers.context import TaskContext
from workers.errors import PermanentError
from workers.sdk import Worker
from workers.services import builtin_worker, document_pipeline
from workers.services.documents import (
    INLINE_VECTOR_FLOATS,
    PREVIEW_CHARS,
    DocumentProcessingRequest,
    vector_digest,
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

Payload = document_pipeline.SplitRequest | document_pipeline.IndexRequest | DocumentProcessingRequest


def make_handler() -> Any:
    async def process_document(payload: Payload, ctx: TaskContext) -> dict[str, Any]:
        stage = document_pipeline.stage_of(ctx)
        if stage == document_pipeline.SPLIT:
            if isinstance(payload, document_pipeline.IndexRequest):
                raise PermanentError("the split stage takes the workflow's input, a document_processing request")
            return await document_pipeline.split(payload, ctx)
        if stage == document_pipeline.INDEX:
            if not isinstance(payload, document_pipeline.IndexRequest):
                raise PermanentError("the index stage takes the split step's result and the embedded batches")
            return await document_pipeline.index(payload, ctx)
        raise PermanentError(
            "document_processing runs as the workflow the ingestion service declares; this task is no step "
            "of it (the orchestrator had not received the declaration, or predates it): submit it again"
        )

    return process_document


def register(
    worker: Worker,
    *,
    job_type: str = "document_processing",
    embedding_type: str = "embedding_request",
    workflow_id: str | None = None,
) -> None:
    """The handler, and the workflow whose steps run it, declared under the job type's id unless told
    otherwise (tests give their own names; a workflow of another id runs only through execute-async)."""
    worker.handler(job_type)(make_handler())
    worker.workflow(
        workflow_id or job_type,
        name="Document processing: split, embed in parallel, index and summarise",
        steps=document_pipeline.steps(job_type, embedding_type),
        output=document_pipeline.OUTPUT,
    )


worker = builtin_worker("ingestion")
register(worker)
