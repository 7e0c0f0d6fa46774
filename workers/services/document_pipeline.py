"""The `document_processing` workflow: split -> embed the chunks in parallel -> index and summarise.

A workflow's DAG is fixed before the document is seen, so the parallelism is fixed too: the split step
always answers EMBED_BATCHES batches of chunk texts (the last ones empty when the document has fewer
chunks), and EMBED_BATCHES `embedding_request` steps each embed one (`$steps.split.result.batches.<i>`)
on the embedding service, at once. The index step joins them: it pairs the chunks with their vectors
(the same result a plain `document_processing` job gives) and adds an extractive summary.

The split and index steps are `document_processing` tasks on the ingestion service, told their stage
by their step `config` (`ctx.workflow.config["stage"]`), so the service serves the one job type it
always has. The workflow is declared under that job type's id, so `POST /jobs {"type":
"document_processing"}` runs it, and its `output` is the index step's result: the job's result.
Input: a `document_processing` request (`{"text"|"document": ..., "title"?, "chunk_size"?,
"chunk_overlap"?, "dimensions"?}`; `batch_size` is accepted and unused, the fan-out being fixed); the
split step gets the whole input as its payload, and other keys of it (context for later steps) are
left alone. An execution's progress is its steps': 1 of 6 done after the split, and so on.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workers.context import TaskContext
from workers.errors import PermanentError
from workers.services.chunking import Chunk, chunk_text
from workers.services.documents import DocumentProcessingRequest, chunk_entries, vectors_inline
from workers.workflows import step

WORKFLOW_ID: Final[str] = "document_processing"
EMBED_BATCHES: Final[int] = 4
SPLIT: Final[str] = "split"
INDEX: Final[str] = "index"
SUMMARY_SENTENCES: Final[int] = 3
SUMMARY_MAX_CHARS: Final[int] = 600
# What the split step takes from the execution context besides the text, when a workflow declared by an
# earlier release hands it only the text as its payload (`{"text": "$input.text"}`).
OPTIONS: Final[tuple[str, ...]] = ("title", "chunk_size", "chunk_overlap", "dimensions")
OUTPUT: Final[str] = "$steps.index.result"

_SENTENCE = re.compile(r"[^.!?…]+[.!?…]+[\"')\]]*")


class ChunkSpan(BaseModel):
    model_config = ConfigDict(extra="ignore")

    index: int = Field(ge=0)
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class SplitResult(BaseModel):
    model_config = ConfigDict(extra="ignore")  # its `context` is the engine's

    title: str | None = None
    characters: int = Field(ge=0)
    dimensions: int = Field(ge=1)
    chunks: list[ChunkSpan]
    batches: list[list[str]]


class EmbeddedBatch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    vectors: list[list[float]]


class SplitRequest(BaseModel):
    """The split step's payload: the execution's input, a `document_processing` request."""

    model_config = ConfigDict(extra="forbid")

    input: dict[str, Any]


class IndexRequest(BaseModel):
    """The index step's payload: the split step's result and every embed step's, in batch order."""

    model_config = ConfigDict(extra="forbid")

    split: SplitResult
    embedded: list[EmbeddedBatch]


def steps(job_type: str = "document_processing", embedding_type: str = "embedding_request") -> list[dict[str, Any]]:
    """The workflow's steps; tests name their own job types."""
    embeds = [f"embed_{i}" for i in range(EMBED_BATCHES)]
    return [
        step("split", job_type, payload={"input": "$input"}, config={"stage": SPLIT, "batches": EMBED_BATCHES}),
        *(
            step(
                name,
                embedding_type,
                payload={"texts": f"$steps.split.result.batches.{i}", "dimensions": "$steps.split.result.dimensions"},
                after=["split"],
                retry=3,
            )
            for i, name in enumerate(embeds)
        ),
        step(
            "index",
            job_type,
            payload={"split": "$steps.split.result", "embedded": [f"$steps.{name}.result" for name in embeds]},
            after=embeds,
            config={"stage": INDEX, "summary_sentences": SUMMARY_SENTENCES},
        ),
    ]


def stage_of(ctx: TaskContext) -> str | None:
    """SPLIT or INDEX for this workflow's steps; None for a plain job (or a step of another workflow)."""
    step_info = ctx.workflow
    stage = step_info.config.get("stage") if step_info is not None else None
    return stage if stage in (SPLIT, INDEX) else None


async def split(payload: SplitRequest | DocumentProcessingRequest, ctx: TaskContext) -> dict[str, Any]:
    request = _request_of(payload.input) if isinstance(payload, SplitRequest) else _with_options(payload, ctx)
    chunks = await asyncio.to_thread(chunk_text, request.content, request.chunk_size, request.chunk_overlap)
    count = _config_int(ctx, "batches", EMBED_BATCHES)
    n = len(chunks)
    # Contiguous and as even as can be: no batch is empty while there are as many chunks as batches.
    batches = [[c.text for c in chunks[i * n // count : (i + 1) * n // count]] for i in range(count)]
    await ctx.progress(100, f"split into {len(chunks)} chunks", current_task="chunking")
    # The document's text is consumed here: nulled in the execution context, it is not carried again in
    # every later step's message (each carries the context), which would shrink the largest document
    # that fits the message cap by its own size once per step.
    properties = ctx.workflow.context.dynamic_properties if ctx.workflow is not None else {}
    consumed = {key: None for key in ("document", "text") if properties.get(key) is not None}
    return {
        "title": request.title,
        "characters": len(request.content),
        "dimensions": request.dimensions,
        "chunks": [{"index": c.index, "start": c.start, "end": c.end} for c in chunks],
        "batches": batches,
        "context": {"chunk_count": len(chunks), **consumed},
    }


async def index(payload: IndexRequest, ctx: TaskContext) -> dict[str, Any]:
    texts = [text for batch in payload.split.batches for text in batch]
    vectors = [vector for batch in payload.embedded for vector in batch.vectors]
    spans = payload.split.chunks
    if not len(spans) == len(texts) == len(vectors):
        raise PermanentError(f"{len(spans)} chunks, {len(texts)} texts and {len(vectors)} vectors do not pair up")
    chunks = [Chunk(s.index, s.start, s.end, text) for s, text in zip(spans, texts, strict=True)]
    dimensions = payload.split.dimensions
    inline = vectors_inline(len(chunks), dimensions)
    entries = await asyncio.to_thread(chunk_entries, chunks, vectors, inline)
    summary = summarise(texts, _config_int(ctx, "summary_sentences", SUMMARY_SENTENCES))
    return {
        "title": payload.split.title,
        "characters": payload.split.characters,
        "chunk_count": len(chunks),
        "dimensions": dimensions,
        "embedding_model": next((b.model for b in payload.embedded if b.model), None),
        "vectors_included": inline,
        "chunks": entries,
        "summary": summary,
        "context": {"summary": summary, "indexed_chunks": len(chunks)},
    }


def summarise(texts: list[str], sentences: int) -> str:
    """The document's first sentences (extractive: no model needed), at most SUMMARY_MAX_CHARS."""
    found: list[str] = []
    for text in texts:
        for match in _SENTENCE.finditer(text):
            sentence = " ".join(match.group().split())
            if sentence not in found:
                found.append(sentence)
            if len(found) >= sentences:
                return " ".join(found)[:SUMMARY_MAX_CHARS]
    return " ".join(found or [" ".join(" ".join(texts).split())])[:SUMMARY_MAX_CHARS]


def _request_of(data: Mapping[str, Any]) -> DocumentProcessingRequest:
    """The request in the execution's input; its other keys are the caller's, for later steps."""
    fields = {name: value for name, value in data.items() if name in DocumentProcessingRequest.model_fields}
    try:
        return DocumentProcessingRequest.model_validate(fields)
    except ValidationError as exc:
        raise PermanentError(f"the workflow's input is not a document_processing request: {exc}") from exc


def _with_options(payload: DocumentProcessingRequest, ctx: TaskContext) -> DocumentProcessingRequest:
    properties: Mapping[str, Any] = ctx.workflow.context.dynamic_properties if ctx.workflow is not None else {}
    options = {name: properties[name] for name in OPTIONS if properties.get(name) is not None}
    try:
        return DocumentProcessingRequest.model_validate({**payload.model_dump(exclude_unset=True), **options})
    except ValidationError as exc:
        raise PermanentError(f"the workflow's input is not a document_processing request: {exc}") from exc


def _config_int(ctx: TaskContext, name: str, default: int) -> int:
    value = ctx.workflow.config.get(name) if ctx.workflow is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default
