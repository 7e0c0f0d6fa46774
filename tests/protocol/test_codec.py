import json

import msgpack
import pytest

from protocol import JSON, MSGPACK, CodecSet, DecodeError, MessageTooLarge, TaskEnvelope, TaskEvent, completed_event
from protocol.codec import compact_json


def envelope(**overrides: object) -> TaskEnvelope:
    fields: dict[str, object] = {
        "global_task_id": "job-1",
        "tenant_id": "acme",
        "type": "llm_request",
        "service": "query",
        "payload": {"prompt": "hi", "n": [1, 2.5, None, True]},
    }
    fields.update(overrides)
    return TaskEnvelope.model_validate(fields)


@pytest.mark.parametrize("content_type", [MSGPACK, JSON, "application/json; charset=utf-8"])
def test_envelope_round_trips_through_each_codec(content_type: str) -> None:
    codecs = CodecSet()
    original = envelope(session_id="s1")
    body = codecs.encode(original, codecs.for_content_type(content_type))
    assert codecs.decode(TaskEnvelope, body, content_type) == original


def test_msgpack_is_the_default_codec() -> None:
    codecs = CodecSet()
    body = codecs.encode(envelope())
    assert msgpack.unpackb(body)["tenant_id"] == "acme"
    assert codecs.decode(TaskEnvelope, body, None).tenant_id == "acme"


def test_event_round_trip_keeps_result() -> None:
    codecs = CodecSet()
    event = completed_event(envelope(), {"answer": 42}, seq=1_000_003)
    decoded = codecs.decode(TaskEvent, codecs.encode(event), MSGPACK)
    assert decoded == event
    assert decoded.is_terminal


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"\xc1\xff\x00garbage", MSGPACK, "not valid msgpack"),
        (b"{not json", JSON, "not valid JSON"),
        (msgpack.packb([1, 2, 3]), MSGPACK, "must be a map"),
        (msgpack.packb({"tenant_id": "acme"}), MSGPACK, "invalid TaskEnvelope"),
        (msgpack.packb(msgpack.ExtType(7, b"x")), MSGPACK, "extension type 7"),
        (msgpack.packb({"a": msgpack.Timestamp(1, 0)}), MSGPACK, "Timestamp is not allowed"),
        (b'{"a": NaN}', JSON, "NaN is not allowed"),
        (b"\x80\x03pickle", "application/x-python-pickle", "no codec for content type"),
    ],
)
def test_garbage_is_refused_with_a_reason(body: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        CodecSet().decode(TaskEnvelope, body, content_type)


def test_oversized_message_is_refused_before_parsing() -> None:
    codecs = CodecSet(max_bytes=1024)
    body = json.dumps({"payload": "x" * 2000}).encode()
    with pytest.raises(MessageTooLarge, match="exceeds the 1024-byte cap"):
        codecs.decode(TaskEnvelope, body, JSON)


def test_unknown_envelope_field_is_refused() -> None:
    codecs = CodecSet()
    data = envelope().model_dump(mode="json") | {"surprise": 1}
    with pytest.raises(DecodeError, match="surprise"):
        codecs.decode(TaskEnvelope, msgpack.packb(data), MSGPACK)


def test_compact_json_keeps_text_as_is_and_matches_json_dumps() -> None:
    result = {"text": 'é ✓ "q"\n', "x": [1, 0.5, None, True]}
    event = {"event": "task_completed", "seq": 3, "data": {"result": result}}
    assert compact_json(event) == json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def test_compact_json_escapes_a_lone_surrogate_instead_of_failing() -> None:
    """JSON input may carry one as an escape ("\\ud83d"); the text must still encode as UTF-8."""
    decoded = CodecSet().decode(TaskEvent, _lone_surrogate_event(), JSON)
    text = compact_json(decoded.data)
    text.encode()
    assert json.loads(text) == {"result": "\ud83d"}


def _lone_surrogate_event() -> bytes:
    envelope = TaskEnvelope(global_task_id="job-1", tenant_id="t", type="x", service="s", payload={})
    body = completed_event(envelope, "placeholder", 5)
    return body.model_dump_json().replace('"placeholder"', '"\\ud83d"').encode()
