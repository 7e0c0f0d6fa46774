"""What the ingestion service's stages share: the `document_processing` request and the chunk entries of
its result.

Result size: full vectors are returned while chunks x dimensions stays within INLINE_VECTOR_FLOATS
(64 chunks of 256 dimensions, about 150 kB of msgpack). Above that each chunk carries a
`vector_digest` (blake2b-128 of its float32 little-endian bytes, to check a stored copy against) and a
text preview instead of the full text, and the result says `vectors_included: false`: a job result
lives in Redis and goes to WebSocket clients, which is the wrong place for megabytes of floats.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workers.services.chunking import Chunk
from workers.services.hashing import DEFAULT_DIMENSIONS

INLINE_VECTOR_FLOATS: Final[int] = 64 * 256
PREVIEW_CHARS: Final[int] = 160


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


def vectors_inline(chunk_count: int, dimensions: int) -> bool:
    return chunk_count * dimensions <= INLINE_VECTOR_FLOATS


def chunk_entry(chunk: Chunk, vector: list[float], inline: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"index": chunk.index, "start": chunk.start, "end": chunk.end}
    if inline:
        entry["text"] = chunk.text
        entry["vector"] = vector
    else:
        entry["preview"] = chunk.text[:PREVIEW_CHARS]
        entry["vector_digest"] = vector_digest(vector)
    return entry


def chunk_entries(chunks: Sequence[Chunk], vectors: Sequence[list[float]], inline: bool) -> list[dict[str, Any]]:
    return [chunk_entry(c, v, inline) for c, v in zip(chunks, vectors, strict=True)]
