"""Parsing client JSON (HTTP bodies, WebSocket messages): strict, and bounded in depth.

Python's json accepts NaN and Infinity, but they are not JSON: stored in a job they would poison
every later reader of it (browsers' JSON.parse refuses them). Deep nesting is refused too: the
parser itself raises RecursionError near depth 1,000, and far below that pydantic, msgpack and
every reader of the stored job would recurse as deep.
"""

from __future__ import annotations

import json
from typing import Any, Final

MAX_DEPTH: Final[int] = 64  # containers inside containers; real payloads stay far below


def loads(data: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed document; ValueError for invalid JSON, NaN, Infinity and nesting past `max_depth`."""
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    if _may_be_deeper(data, max_depth):
        check_depth(value, max_depth)
    return value


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """ValueError when lists and objects nest deeper than `max_depth`."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= max_depth:
            raise ValueError(f"nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _may_be_deeper(data: str | bytes | bytearray, max_depth: int) -> bool:
    # Fewer opening brackets than the limit (strings included, so an over-count) cannot nest past it:
    # the walk is skipped for almost every document.
    if isinstance(data, str):
        return data.count("[") + data.count("{") > max_depth
    return data.count(b"[") + data.count(b"{") > max_depth


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
