"""protocol.codec's decoding as it was before the plain-data check was made faster (main at 1c93b65):
the oracle the equivalence tests hold the codecs to, and the "today" column of tests/bench/codecs.py;
with the larger envelope both start from."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from protocol.codec import MAX_NESTING, Codec, CodecSet
from protocol.envelope import ContextIds, TaskEnvelope, TaskMetadata, utc_now
from protocol.errors import DecodeError


def large_envelope() -> TaskEnvelope:
    """Every optional part set (session, deadline, context, metadata) and a nested payload."""
    return TaskEnvelope(
        global_task_id="job-1",
        tenant_id="acme",
        session_id="session-1",
        type="llm_request",
        service="query",
        priority=7,
        deadline=utc_now() + timedelta(seconds=30),
        context=ContextIds(user_id="u-1", request_id="r-1", conversation_id="c-1"),
        metadata=TaskMetadata(source="api", user_id="u-1", timeout_ms=30_000),
        payload={"prompt": "hi " * 40, "n": [1, 2.5, None, True], "options": {"temperature": 0.2, "tags": ["a", "b"]}},
    )


def check_plain_before(obj: Any) -> None:
    """The walk as it was: every item tested with isinstance."""
    level = [obj]
    for _ in range(MAX_NESTING + 1):
        deeper: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                deeper.extend(item.values())
            elif isinstance(item, list):
                deeper.extend(item)
            elif isinstance(item, float):
                if not math.isfinite(item):
                    raise DecodeError("non-finite numbers are not allowed")
            elif item is not None and not isinstance(item, str | int | bool):
                raise DecodeError(f"value of type {type(item).__name__} is not allowed")
        if not deeper:
            return
        level = deeper
    raise DecodeError(f"maps and lists nested deeper than {MAX_NESTING} levels are not allowed")


class CodecSetBefore(CodecSet):
    """A CodecSet whose codecs walk as they did (parsing, the map test and validation never changed)."""

    def for_content_type(self, content_type: str | None) -> Codec:
        return _WalkingBefore(super().for_content_type(content_type))


@dataclass(frozen=True)
class _WalkingBefore:
    codec: Codec

    @property
    def content_type(self) -> str:
        return self.codec.content_type

    def dumpb(self, obj: Any) -> bytes:
        return self.codec.dumpb(obj)

    def parse(self, data: bytes) -> Any:
        return self.codec.parse(data)

    def loadb(self, data: bytes) -> Any:
        obj = self.codec.parse(data)
        check_plain_before(obj)
        return obj
