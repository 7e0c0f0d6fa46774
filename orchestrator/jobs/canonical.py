"""The one canonical form of a request's JSON: what makes two requests "the same" for the idempotency
fingerprint and the result cache's key alike."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_digest(value: Any) -> str:
    """sha256 (hex) of `value` as compact JSON with sorted keys: equal for equal JSON, whatever its key order."""
    raw = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a lone surrogate must reach the encoder's clear refusal, not fail here.
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()
