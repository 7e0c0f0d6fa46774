"""The event batch message's body: packed and unpacked, and every malformed body refused as a DecodeError."""

from __future__ import annotations

import msgpack
import pytest

from protocol import CodecSet, DecodeError, MessageTooLarge, TaskEvent
from protocol.event_batch import (
    BATCH_HEADER,
    MAX_BATCH_EVENTS,
    is_event_batch,
    pack_event_batch,
    unpack_event_batch,
)
from protocol.events import EventType

CAP = 1024 * 1024


def event(seq: int) -> TaskEvent:
    return TaskEvent(
        event=EventType.TASK_COMPLETED,
        service="query",
        task_id=f"task-{seq}",
        global_task_id=f"job-{seq}",
        tenant_id="acme",
        seq=seq,
    )


def test_a_batch_round_trips_its_encoded_events_in_order() -> None:
    codecs = CodecSet()
    events = [event(seq) for seq in range(1, 4)]
    bodies = [codecs.encode(e) for e in events]
    unpacked = unpack_event_batch(pack_event_batch(bodies), CAP)
    assert unpacked == bodies
    assert [codecs.decode(TaskEvent, body, None) for body in unpacked] == events


def test_a_batch_of_the_most_events_allowed_unpacks() -> None:
    assert len(unpack_event_batch(pack_event_batch([b"e"] * MAX_BATCH_EVENTS), CAP)) == MAX_BATCH_EVENTS


@pytest.mark.parametrize(
    "body",
    [
        msgpack.packb({"events": [b"e"]}),  # not an array
        msgpack.packb(b"e"),
        msgpack.packb([]),  # empty
        msgpack.packb([b"e", "a text, not bytes"]),
        msgpack.packb([b"e", [b"nested"]]),
        msgpack.packb([msgpack.ExtType(1, b"e")]),
        b"\xc1 not msgpack",
        b"\x92\xc4\x05ab",  # cut short
        msgpack.packb([b"e"]) + b"trailing",
        b"",
        pack_event_batch([b"e"] * (MAX_BATCH_EVENTS + 1)),  # more events than a window holds
    ],
)
def test_a_body_that_is_not_a_non_empty_array_of_byte_strings_is_refused(body: bytes) -> None:
    with pytest.raises(DecodeError):
        unpack_event_batch(body, CAP)


def test_a_body_over_the_cap_is_refused_before_it_is_read() -> None:
    body = pack_event_batch([b"x" * 600, b"y" * 600])
    assert len(unpack_event_batch(body, len(body))) == 2
    with pytest.raises(MessageTooLarge):
        unpack_event_batch(body, len(body) - 1)


@pytest.mark.parametrize(
    ("headers", "batch"),
    [(None, False), ({}, False), ({"traceparent": "00-x"}, False), ({BATCH_HEADER: 3}, True)],
)
def test_a_batch_is_told_by_its_header(headers: dict[str, object] | None, batch: bool) -> None:
    assert is_event_batch(headers) is batch
