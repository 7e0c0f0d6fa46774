"""Deep nesting is a DecodeError in both codecs, below where any encoder or parser gives up."""

from __future__ import annotations

import json

import msgpack
import pytest

from protocol.codec import JSON, MAX_NESTING, MSGPACK, CodecSet
from protocol.envelope import TaskEnvelope
from protocol.errors import DecodeError

CODECS = CodecSet()


def _nested_list(depth: int) -> object:
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("content_type", [JSON, MSGPACK])
@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 300, 1000])
def test_deeper_than_the_cap_is_refused(content_type: str, depth: int) -> None:
    codec = CODECS.for_content_type(content_type)
    if content_type == JSON:
        body = b'{"payload": ' + b"[" * depth + b"]" * depth + b"}"
    else:
        body = msgpack.packb({"payload": None})[:-1] + b"\x91" * (depth - 1) + b"\x90"
    with pytest.raises(DecodeError, match="nested deeper than"):
        codec.loadb(body)


def test_json_past_the_interpreters_recursion_limit_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="nested deeper than"):
        CODECS.decode(TaskEnvelope, b"[" * 100_000 + b"]" * 100_000, JSON)


def test_msgpack_past_its_own_stack_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        CODECS.decode(TaskEnvelope, b"\x91" * 100_000 + b"\xc0", MSGPACK)


@pytest.mark.parametrize("content_type", [JSON, MSGPACK])
def test_an_envelope_at_the_cap_decodes_and_encodes_again(content_type: str) -> None:
    codec = CODECS.for_content_type(content_type)
    fields = {"global_task_id": "job", "tenant_id": "acme", "type": "t", "service": "s"}
    # The envelope map is level 0, its payload level 1: the payload's content may nest MAX_NESTING - 1 more.
    envelope = TaskEnvelope(**fields, payload={"a": _nested_list(MAX_NESTING - 2)})
    decoded = CODECS.decode(TaskEnvelope, CODECS.encode(envelope, codec), content_type)
    assert decoded == envelope
    assert json.loads(decoded.model_dump_json())["payload"] == envelope.payload
    assert msgpack.unpackb(CODECS.encode(decoded)) is not None
