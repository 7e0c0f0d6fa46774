"""Feature-hashing text embeddings: local, deterministic, no model to download.

Each text becomes the lower-cased word unigrams and bigrams; each feature is hashed with
blake2b (stable across processes and Python versions, unlike `hash()`) to one of N
dimensions and a sign (signed hashing keeps collisions from biasing the dot product);
bigrams weigh half a unigram. The vector is L2-normalised, so the dot product of two
vectors is their cosine similarity. Texts without words give the zero vector.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Iterable
from typing import Final

MODEL_NAME: Final[str] = "baton-hashing-v1"
DEFAULT_DIMENSIONS: Final[int] = 256
BIGRAM_WEIGHT: Final[float] = 0.5

_WORD_RE = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def features(text: str) -> Iterable[tuple[str, float]]:
    words = tokenize(text)
    for word in words:
        yield word, 1.0
    for first, second in itertools.pairwise(words):
        yield f"{first} {second}", BIGRAM_WEIGHT


def _bucket(feature: str, dimensions: int) -> tuple[int, float]:
    digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
    return digest % dimensions, (1.0 if digest >> 63 else -1.0)


def embed(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    if dimensions < 1:
        raise ValueError("dimensions must be at least 1")
    vector = [0.0] * dimensions
    for feature, weight in features(text):
        index, sign = _bucket(feature, dimensions)
        vector[index] += sign * weight
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:
        return vector
    return [v / norm for v in vector]


def cosine(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two vectors of equal length (0 when either is zero)."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return 0.0 if na == 0.0 or nb == 0.0 else dot / (na * nb)
