"""Several task events in one message on the events exchange: the outcomes a worker finished together.

A batch message is opt-in on the worker (`Worker(batch_outcomes=True)`); Baton's orchestrator reads
both forms. It differs from a single event only in its body and one header:

- routing key `<tenant_id>.<service>.<event>`, shared by every event inside (a batch never mixes
  tenants, services or event kinds, so topic bindings select it exactly as they would its events);
- header `x-baton-batch`: how many events it carries;
- content type: that of each event inside (msgpack or JSON, as a single event would be sent);
- body: a msgpack array of the events' own encoded bodies, as byte strings, in publish order.

Persistent and confirmed like the outcomes it carries: one confirm answers for all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgpack

from protocol.errors import DecodeError, MessageTooLarge

BATCH_HEADER: Final[str] = "x-baton-batch"
MAX_BATCH_EVENTS: Final[int] = 256  # the orchestrator's prefetch: one message never holds more than a window


def is_event_batch(headers: Mapping[str, Any] | None) -> bool:
    return bool(headers) and BATCH_HEADER in headers  # type: ignore[operator]


def pack_event_batch(bodies: Sequence[bytes]) -> bytes:
    """The body of a batch message carrying these encoded events, in this order."""
    packed: bytes = msgpack.packb(list(bodies), use_bin_type=True)
    return packed


def unpack_event_batch(body: bytes, max_bytes: int) -> list[bytes]:
    """The encoded events of a batch body; DecodeError when it is not an array of byte strings."""
    if len(body) > max_bytes:
        raise MessageTooLarge(f"batch of {len(body)} bytes exceeds the {max_bytes}-byte cap")
    try:
        items = msgpack.unpackb(body, raw=False, use_list=True, max_array_len=MAX_BATCH_EVENTS)
    except ValueError as exc:  # msgpack's every unpacking error, the array cap's too
        raise DecodeError(f"not a batch of events: {exc}") from exc
    if not isinstance(items, list) or not items:
        raise DecodeError("a batch of events must be a non-empty array")
    if not all(isinstance(item, bytes) for item in items):
        raise DecodeError("every item of a batch of events must be an encoded event (a byte string)")
    return items
