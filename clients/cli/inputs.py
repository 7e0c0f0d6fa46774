"""What users type, checked before anything is sent: JSON objects (inline, `@file` or `@-` for stdin)
and priorities. Each bad value is a BadInput naming the option."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

from clients.cli.errors import BadInput

PRIORITY_NAMES: Final[frozenset[str]] = frozenset({"high", "medium", "low"})


def json_object(option: str, text: str) -> dict[str, Any]:
    """The JSON object of `text`: inline JSON, `@path` for a file's, `@-` for standard input's."""
    source = "inline"
    if text.startswith("@"):
        source = text[1:]
        text = _read(option, source)
    try:
        value = json.loads(text)
    except ValueError as exc:
        where = "" if source == "inline" else f" in {source}"
        raise BadInput(f"{option} is not valid JSON{where}: {exc}") from None
    if not isinstance(value, dict):
        raise BadInput(f"{option} must be a JSON object ({{...}}), got {type(value).__name__}")
    return value


def priority(text: str | None) -> str | int | None:
    """high, medium, low or an integer 0-9, as the API takes it."""
    if text is None:
        return None
    value = text.strip().lower()
    if value in PRIORITY_NAMES:
        return value
    if value.isdigit() and 0 <= int(value) <= 9:
        return int(value)
    raise BadInput(f"--priority must be high, medium, low or an integer 0-9, got {text!r}")


def _read(option: str, source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{option}: cannot read {source}: {getattr(exc, 'strerror', None) or exc}") from None
