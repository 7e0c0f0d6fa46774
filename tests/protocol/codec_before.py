"""protocol.codec's decoding as it was before the plain-data check was made faster (main at 1c93b65):
the oracle the equivalence tests hold the codecs to, and the "today" column of tests/bench/codecs.py."""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError

from protocol.codec import MAX_NESTING, CodecSet, Model
from protocol.errors import DecodeError, UnsupportedContentType, summarise_validation


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


def loadb_before(codecs: CodecSet, body: bytes, content_type: str | None) -> Any:
    """A codec's `loadb` as it was; the parsing itself is unchanged, so it parses with the check switched off."""
    codec = codecs.for_content_type(content_type)
    obj = codec.parse(body)
    check_plain_before(obj)
    return obj


def decode_before(codecs: CodecSet, cls: type[Model], body: bytes, content_type: str | None) -> Model:
    """`CodecSet.decode` as it was."""
    try:
        obj = loadb_before(codecs, body, content_type)
    except UnsupportedContentType as exc:
        raise DecodeError(str(exc)) from exc
    if not isinstance(obj, dict):
        raise DecodeError(f"a {cls.__name__} must be a map, got {type(obj).__name__}")
    try:
        return cls.model_validate(obj)
    except ValidationError as exc:
        raise DecodeError(f"invalid {cls.__name__}: {summarise_validation(exc)}") from exc
