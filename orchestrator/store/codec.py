"""How a JobRecord is laid out in its Redis hash: plain fields as text, structured ones as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import msgpack

from orchestrator.models import JobRecord
from protocol.codec import compact_json

JSON_FIELDS: Final[frozenset[str]] = frozenset(
    {"delegated_services", "progress", "result", "error", "context", "envelope", "parent"}
)


def score(created_at: str) -> int:
    return int(datetime.fromisoformat(created_at).timestamp() * 1000)


def to_hash(record: JobRecord) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in record.model_dump(mode="json").items():
        if name in JSON_FIELDS:
            fields[name] = compact_json(value)
        elif value is not None:
            fields[name] = str(value)
    return fields


def packed_args(args: Sequence[str | int | float]) -> bytes:
    """A script's arguments as one msgpack array of strings, as Redis would have received them
    one by one (numbers in redis-py's text form), for scripts that read it with cmsgpack."""
    packed: bytes = msgpack.packb(text_args(args), use_bin_type=True)
    return packed


def text_args(args: Sequence[str | int | float]) -> list[str]:
    """Arguments in redis-py's text form, for a packed array (`packed_args`, or one nested in another)."""
    return [a if isinstance(a, str) else repr(a) for a in args]


def from_hash(raw: dict[Any, Any]) -> JobRecord:
    data: dict[str, Any] = {}
    for key, value in raw.items():
        name = text(key)
        if name not in JobRecord.model_fields:
            continue  # per-task seqs, idempotency key: registry bookkeeping
        data[name] = json.loads(value) if name in JSON_FIELDS else text(value)
    return JobRecord.model_validate(data)


# A job's fields as readers need them: everything but the stored envelope, which holds the whole
# payload (up to the message cap) and is read only to publish the task again.
READ_FIELDS: Final[tuple[str, ...]] = tuple(name for name in JobRecord.model_fields if name != "envelope")


def from_fields(values: Sequence[Any]) -> JobRecord | None:
    """The record from an HMGET of READ_FIELDS; None when the job does not exist."""
    raw = {name: value for name, value in zip(READ_FIELDS, values, strict=True) if value is not None}
    return from_hash(raw) if raw else None


def pairs(flat: Sequence[Any]) -> dict[Any, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
