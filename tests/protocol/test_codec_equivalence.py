"""The codecs decide as they did before the plain-data check was made faster (tests/protocol/codec_before.py):
the same good and bad inputs through both give the same model, or DecodeErrors with the same message."""

from __future__ import annotations

import json
import random
from typing import Any

import msgpack
import pytest

from protocol.codec import JSON, MAX_NESTING, MSGPACK, CodecSet, _check_plain
from protocol.envelope import TaskEnvelope, utc_now
from protocol.errors import DecodeError
from protocol.events import JobStatus, TaskEvent, completed_event, failed_event, status_event
from tests.protocol.codec_before import CodecSetBefore, check_plain_before, large_envelope

CODECS = CodecSet(max_bytes=64 * 1024)
BEFORE = CodecSetBefore(max_bytes=64 * 1024)
NAN, INF = float("nan"), float("inf")


def _nested(depth: int, leaf: Any = None, kind: str = "list") -> Any:
    """`leaf` inside `depth` containers (lists, maps or both by turns)."""
    value = leaf
    for level in range(depth):
        as_map = kind == "map" or (kind == "mixed" and level % 2 == 1)
        value = {"k": value} if as_map else [value]
    return value


def _envelope_fields(**changes: Any) -> dict[str, Any]:
    return large_envelope().model_dump(mode="json") | changes


def _event_fields(**changes: Any) -> dict[str, Any]:
    return completed_event(large_envelope(), {"n": 1}, seq=1_000_002).model_dump(mode="json") | changes


# Maps as a peer may send them: each is encoded with both codecs (where the codec can carry it).
MESSAGES: list[tuple[type[Any], Any]] = [
    (TaskEnvelope, _envelope_fields()),
    # Defaults left out, but those drawn per message (task_id, created_at), which would differ by themselves.
    (
        TaskEnvelope,
        {"global_task_id": "j", "tenant_id": "t", "type": "x", "service": "s", "task_id": "1", "created_at": 0},
    ),
    (TaskEnvelope, _envelope_fields(priority="5")),  # lax: both read a numeric string
    (TaskEnvelope, _envelope_fields(priority=10)),
    (TaskEnvelope, _envelope_fields(tenant_id="acme\n")),
    (TaskEnvelope, _envelope_fields(tenant_id="a.b")),
    (TaskEnvelope, _envelope_fields(service="Query")),
    (TaskEnvelope, _envelope_fields(task_id="x" * 129)),
    (TaskEnvelope, _envelope_fields(session_id="s" * 257)),
    (TaskEnvelope, _envelope_fields(attempt=0)),
    (TaskEnvelope, _envelope_fields(v=2)),
    (TaskEnvelope, _envelope_fields(surprise=1)),
    (TaskEnvelope, _envelope_fields(created_at="yesterday")),
    (TaskEnvelope, _envelope_fields(metadata={"timeout_ms": 0})),
    (TaskEnvelope, _envelope_fields(payload={"deep": _nested(MAX_NESTING - 2)})),
    (TaskEnvelope, _envelope_fields(payload={"deep": _nested(MAX_NESTING - 1)})),
    (TaskEnvelope, _envelope_fields(payload={"deep": _nested(MAX_NESTING - 2, kind="map")})),
    (TaskEnvelope, _envelope_fields(payload={"deep": _nested(MAX_NESTING - 1, kind="mixed")})),
    (TaskEnvelope, _envelope_fields(payload={"deep": _nested(MAX_NESTING - 3, leaf=1.5)})),
    (TaskEnvelope, _envelope_fields(payload={"deep": _nested(MAX_NESTING - 2, leaf=[])})),
    (TaskEnvelope, _envelope_fields(payload={"deep": _nested(MAX_NESTING - 2, leaf={})})),
    (TaskEnvelope, _envelope_fields(payload={"deep": _nested(MAX_NESTING + 5, kind="mixed")})),
    (TaskEnvelope, _envelope_fields(payload={"x": NAN})),
    (TaskEnvelope, _envelope_fields(payload={"x": [1, 2, [-INF]]})),
    (TaskEnvelope, _envelope_fields(payload={"a": [NAN], "b": {"c": 1}}, session_id=None)),
    (TaskEnvelope, _envelope_fields(priority=NAN)),
    (TaskEnvelope, _envelope_fields(payload={"big": 2**64 - 1, "neg": -(2**63), "f": 1e308})),
    (TaskEvent, _event_fields()),
    (
        TaskEvent,
        failed_event(large_envelope(), error="e", error_type="E", seq=3, traceback="tb").model_dump(mode="json"),
    ),
    (TaskEvent, status_event(large_envelope(), JobStatus.RUNNING, 1).model_dump(mode="json")),
    (TaskEvent, _event_fields(seq=-1)),
    (TaskEvent, _event_fields(event="task_exploded")),
    (TaskEvent, _event_fields(data={"result": {"x": [INF]}})),
    (TaskEvent, _event_fields(metadata={"m": _nested(MAX_NESTING)})),
    (TaskEvent, _event_fields(timestamp=1_700_000_000)),
    (TaskEvent, _event_fields(data=[1, 2])),
    (TaskEnvelope, [1, 2, 3]),
    (TaskEnvelope, "a string"),
    (TaskEnvelope, None),
]

# Bodies only msgpack can carry, and bodies that are not messages at all.
RAW: list[tuple[type[Any], bytes, str]] = [
    (TaskEnvelope, msgpack.packb(_envelope_fields(payload={"b": b"bytes"}), use_bin_type=True), MSGPACK),
    (TaskEnvelope, msgpack.packb(_envelope_fields(tenant_id=b"acme"), use_bin_type=True), MSGPACK),
    (TaskEnvelope, msgpack.packb({**_envelope_fields(), b"raw": 1}, use_bin_type=True), MSGPACK),
    (TaskEnvelope, msgpack.packb({1: "int key"}), MSGPACK),
    (TaskEnvelope, msgpack.packb(_envelope_fields(payload={"t": msgpack.Timestamp(1, 0)})), MSGPACK),
    (TaskEnvelope, msgpack.packb(_envelope_fields(payload={"x": msgpack.ExtType(5, b"x")})), MSGPACK),
    (TaskEnvelope, msgpack.packb(_envelope_fields(payload={"x": [b"b", NAN]}), use_bin_type=True), MSGPACK),
    (TaskEnvelope, msgpack.packb(_envelope_fields(payload={"x": [NAN, b"b"]}), use_bin_type=True), MSGPACK),
    (TaskEnvelope, msgpack.packb(_envelope_fields(payload={"x": 1.5}), use_single_float=True), MSGPACK),
    (TaskEnvelope, msgpack.packb(_envelope_fields()) + b"\x00", MSGPACK),
    (TaskEnvelope, b"\xc1\xff\x00garbage", MSGPACK),
    (TaskEnvelope, b"\x91" * 100_000 + b"\xc0", MSGPACK),
    (TaskEnvelope, b"x" * (64 * 1024 + 1), MSGPACK),
    (TaskEnvelope, b'{"payload": {"x": NaN}}', JSON),
    (TaskEnvelope, b'{"payload": {"x": 1e400}}', JSON),
    (TaskEnvelope, b'{"payload": {"x": 123456789012345678901234567890}}', JSON),
    (TaskEnvelope, b"[" * 100_000 + b"]" * 100_000, JSON),
    (TaskEnvelope, b"{not json", JSON),
    (TaskEnvelope, b"{}", "application/x-python-pickle"),
]


def _bodies() -> list[tuple[type[Any], bytes, str]]:
    bodies = list(RAW)
    for cls, message in MESSAGES:
        bodies.append((cls, msgpack.packb(message, use_bin_type=True), MSGPACK))
        bodies.append((cls, json.dumps(message).encode(), JSON))  # NaN and Infinity as JSON's extension spells them
    return bodies


def _outcome(decode: Any) -> tuple[str, Any]:
    try:
        return "decoded", decode()
    except DecodeError as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize(
    ("cls", "body", "content_type"), [pytest.param(*case, id=f"{case[2]}-{i}") for i, case in enumerate(_bodies())]
)
def test_decode_gives_what_it_gave_before(cls: type[Any], body: bytes, content_type: str) -> None:
    now = _outcome(lambda: CODECS.decode(cls, body, content_type))
    before = _outcome(lambda: BEFORE.decode(cls, body, content_type))
    assert now == before


def test_the_corpus_holds_good_and_bad_messages() -> None:
    """Guards the test above against a corpus that only ever fails (or only passes)."""
    kinds = [_outcome(lambda b=b, c=c, t=t: CODECS.decode(c, b, t))[0] for c, b, t in _bodies()]  # type: ignore[misc]
    assert kinds.count("decoded") >= 10
    assert kinds.count("DecodeError") >= 30
    assert "MessageTooLarge" in kinds


def _random_value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth < MAX_NESTING + 3 and roll < 0.35:
        items = [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
        return items if rng.random() < 0.5 else {f"k{i}": item for i, item in enumerate(items)}
    scalars: list[Any] = ["s", 1, -7, True, False, None, 0.5, 2**70]
    rare: list[Any] = [NAN, INF, -INF, b"b", msgpack.Timestamp(0, 0), (1, 2), 1j]
    return rng.choice(rare) if rng.random() < 0.02 else rng.choice(scalars)


def _deep_random_value(rng: random.Random) -> Any:
    """Down one long path to about the cap, with random siblings along the way."""
    value = _random_value(rng, MAX_NESTING)
    for level in range(rng.randrange(MAX_NESTING - 3, MAX_NESTING + 3), 0, -1):
        siblings = [_random_value(rng, level) for _ in range(rng.randrange(3))]
        if rng.random() < 0.5:
            value = [*siblings, value]
        else:
            value = {**{f"s{i}": s for i, s in enumerate(siblings)}, "path": value}
    return value


@pytest.mark.parametrize("seed", range(8))
def test_the_walk_decides_random_trees_as_before(seed: int) -> None:
    rng = random.Random(seed)
    outcomes = set()
    for index in range(400):
        tree = _deep_random_value(rng) if index % 4 == 0 else _random_value(rng, 0)
        now, before = _outcome(lambda t=tree: _check_plain(t)), _outcome(lambda t=tree: check_plain_before(t))  # type: ignore[misc]
        assert now == before, tree
        outcomes.add(now[1] if now[0] == "DecodeError" else "ok")
    assert "ok" in outcomes and len(outcomes) >= 3


def _models() -> list[Any]:
    envelope = large_envelope()
    return [
        envelope,
        TaskEnvelope(global_task_id="j", tenant_id="t", type="x", service="s", metadata={"extra": {"k": [1.5]}}),
        status_event(envelope, JobStatus.RUNNING, 1),
        completed_event(envelope, {"text": "é ✓", "n": [1, 2.5, None, True], "when": utc_now(), "big": 2**63}, 2),
        failed_event(envelope, error="e", error_type="E", seq=3, traceback="tb", status=JobStatus.TIMED_OUT),
    ]


@pytest.mark.parametrize("model", _models())
@pytest.mark.parametrize("content_type", [MSGPACK, JSON])
def test_encode_writes_the_bytes_it_wrote_before(model: Any, content_type: str) -> None:
    codec = CODECS.for_content_type(content_type)
    assert CODECS.encode(model, codec) == codec.dumpb(model.model_dump(mode="json"))
