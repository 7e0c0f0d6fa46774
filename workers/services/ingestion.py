"""The `ingestion` service: `document_processing` -> chunks embedded by the `embedding` service.

The document is split (workers.services.chunking), then embedded through child tasks
(`ctx.call_service("embedding", "embedding_request", ...)`) in batches, with progress
after each batch. Chunking and building the result are CPU work on the whole document: they
run in a thread, so the event loop keeps serving heartbeats, cancels and other handlers.

Result size: full vectors are returned while chunks x dimensions stays within
INLINE_VECTOR_FLOATS (64 chunks of 256 dimensions, about 150 kB of msgpack). Above that
each chunk carries a `vector_digest` (blake2b-128 of its float32 little-endian bytes, to
check a stored copy against) and a text preview instead of the full text, and the result
says `vectors_included: false`: a job result lives in Redis and goes to WebSocket clients,
which is the wrong place for megabytes of floats.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workers.context import TaskContext
from workers.errors import PermanentError
from workers.sdk import Worker
from workers.services import builtin_worker
from workers.services.chunking import Chunk, chunk_text
from workers.services.hashing import DEFAULT_DIMENSIONS

INLINE_VECTOR_FLOATS: Final[int] = 64 * 256
PREVIEW_CHARS: Final[int] = 160
EMBEDDING_TIMEOUT_SECONDS: Final[float] = 30.0


class DocumentProcessingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document: str | None = None
    text: str | None = None
    title: str | None = Field(default=None, max_length=500)
    chunk_size: int = Field(default=1000, ge=100, le=20_000)
    chunk_overlap: int = Field(default=100, ge=0)
    dimensions: int = Field(default=DEFAULT_DIMENSIONS, ge=8, le=4096)
    batch_size: int = Field(default=32, ge=1, le=256)

    @model_validator(mode="after")
    def _check(self) -> DocumentProcessingRequest:
        if (self.document is None) == (self.text is None):
            raise ValueError("give exactly one of `document` or `text`")
        if not self.content.strip():
            raise ValueError("the document is empty")
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self

    @property
    def content(self) -> str:
        return self.document if self.document is not None else self.text or ""


def vector_digest(vector: list[float]) -> str:
    return hashlib.blake2b(struct.pack(f"<{len(vector)}f", *vector), digest_size=16).hexdigest()


def _chunk_entry(chunk: Chunk, vector: list[float], inline: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"index": chunk.index, "start": chunk.start, "end": chunk.end}
    if inline:
        entry["text"] = chunk.text
        entry["vector"] = vector
    else:
        entry["preview"] = chunk.text[:PREVIEW_CHARS]
        entry["vector_digest"] = vector_digest(vector)
    return entry


def _chunk_entries(chunks: list[Chunk], vectors: list[list[float]], inline: bool) -> list[dict[str, Any]]:
    return [_chunk_entry(c, v, inline) for c, v in zip(chunks, vectors, strict=True)]


def make_handler(embedding_service: str) -> Any:
    async def process_document(payload: DocumentProcessingRequest, ctx: TaskContext) -> dict[str, Any]:
        chunks = await asyncio.to_thread(chunk_text, payload.content, payload.chunk_size, payload.chunk_overlap)
        total = len(chunks)
        await ctx.progress(10, f"split into {total} chunks", current_task="chunking")
        vectors: list[list[float]] = []
        model = None
        for first in range(0, total, payload.batch_size):
            batch = chunks[first : first + payload.batch_size]
            answer = await ctx.call_service(
                embedding_service,
                "embedding_request",
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
        inline = total * payload.dimensions <= INLINE_VECTOR_FLOATS
        entries = await asyncio.to_thread(_chunk_entries, chunks, vectors, inline)
        return {
            "title": payload.title,
            "characters": len(payload.content),
            "chunk_count": total,
            "dimensions": payload.dimensions,
            "embedding_model": model,
            "vectors_included": inline,
            "chunks": entries,
        }

    return process_document


def register(worker: Worker, *, embedding_service: str = "embedding") -> None:
    worker.handler("document_processing")(make_handler(embedding_service))


worker = builtin_worker("ingestion")
register(worker)
