"""The `embedding` service: `embedding_request` -> feature-hashing vectors (see workers.services.hashing).

Hashing is pure-Python CPU work (up to 2048 texts x 4096 dimensions per request): each batch runs
in a thread, so the event loop keeps serving heartbeats, cancels, acks and other handlers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from workers.context import TaskContext
from workers.sdk import Worker
from workers.services import builtin_worker
from workers.services.hashing import DEFAULT_DIMENSIONS, MODEL_NAME, embed

MAX_TEXTS = 2048
# Small enough that a cancel waits for at most one batch (a few ms to ~0.1 s at 4096 dimensions).
TEXTS_PER_THREAD_BATCH: Final[int] = 32


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Empty is allowed: a workflow's fixed fan-out may hand a parallel step no chunks.
    texts: list[str] = Field(max_length=MAX_TEXTS)
    dimensions: int = Field(default=DEFAULT_DIMENSIONS, ge=8, le=4096)


class EmbeddingResult(BaseModel):
    model: str
    dimensions: int
    count: int
    vectors: list[list[float]]


def _embed_batch(texts: Sequence[str], dimensions: int) -> list[list[float]]:
    return [embed(text, dimensions) for text in texts]


async def embed_texts(payload: EmbeddingRequest, ctx: TaskContext) -> EmbeddingResult:
    vectors: list[list[float]] = []
    for first in range(0, len(payload.texts), TEXTS_PER_THREAD_BATCH):
        batch = payload.texts[first : first + TEXTS_PER_THREAD_BATCH]
        vectors.extend(await asyncio.to_thread(_embed_batch, batch, payload.dimensions))
    return EmbeddingResult(model=MODEL_NAME, dimensions=payload.dimensions, count=len(vectors), vectors=vectors)


def register(worker: Worker, *, job_type: str = "embedding_request") -> None:
    worker.handler(job_type)(embed_texts)


worker = builtin_worker("embedding")
register(worker)
