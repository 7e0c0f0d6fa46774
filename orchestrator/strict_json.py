"""Parsing client JSON (HTTP bodies, WebSocket messages) without NaN and Infinity.

Python's json accepts them, but they are not JSON: stored in a job they would poison every
later reader of it (browsers' JSON.parse refuses them).
"""

from __future__ import annotations

import json
from typing import Any


def loads(data: str | bytes | bytearray) -> Any:
    """The parsed document; ValueError for invalid JSON, NaN and Infinity included."""
    return json.loads(data, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
