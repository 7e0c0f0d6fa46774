"""The `embedding` service: `embedding_request` -> feature-hashing vectors (see workers.services.hashing)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from workers.context import TaskContext
from workers.sdk import Worker
from workers.services import builtin_worker
from workers.services.hashing import DEFAULT_DIMENSIONS, MODEL_NAME, embed

MAX_TEXTS = 2048


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(min_length=1, max_length=MAX_TEXTS)
    dimensions: int = Field(default=DEFAULT_DIMENSIONS, ge=8, le=4096)


class EmbeddingResult(BaseModel):
    model: str
    dimensions: int
    count: int
    vectors: list[list[float]]


async def embed_texts(payload: EmbeddingRequest, ctx: TaskContext) -> EmbeddingResult:
    vectors = [embed(text, payload.dimensions) for text in payload.texts]
    return EmbeddingResult(model=MODEL_NAME, dimensions=payload.dimensions, count=len(vectors), vectors=vectors)


def register(worker: Worker) -> None:
    worker.handler("embedding_request")(embed_texts)


worker = builtin_worker("embedding")
register(worker)
