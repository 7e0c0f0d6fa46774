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
_CONTAINERS: Final[frozenset[type]] = frozenset({dict, list})  # all that json.loads builds


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
    """ValueError when lists and objects nest deeper than `max_depth`.

    Level by level; a container's children are typed by `map` (C speed), and only those that are
    containers themselves are visited: a list of a million numbers costs one pass in C, not a
    million steps of Python.
    """
    level = [value] if type(value) in _CONTAINERS else []
    depth = 0
    while level:
        if depth >= max_depth:
            raise ValueError(f"nested deeper than {max_depth} levels")
        deeper: list[Any] = []
        for container in level:
            children = container.values() if type(container) is dict else container
            if not _CONTAINERS.isdisjoint(map(type, children)):
                deeper.extend(child for child in children if type(child) in _CONTAINERS)
        level = deeper
        depth += 1


def _may_be_deeper(data: str | bytes | bytearray, max_depth: int) -> bool:
    # Fewer opening brackets than the limit (strings included, so an over-count) cannot nest past it:
    # the walk is skipped for almost every document.
    if isinstance(data, str):
        return data.count("[") + data.count("{") > max_depth
    return data.count(b"[") + data.count(b"{") > max_depth


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
