"""WorkerHeartbeat.cache_ttls (protocol v1 addition): sent only when a handler declares a TTL, so a worker
that declares none keeps sending what an older orchestrator (which forbids unknown fields) reads."""

from __future__ import annotations

import msgpack
import pytest
from pydantic import ValidationError

from protocol.codec import JSON, MSGPACK, CodecSet
from protocol.control import MAX_CACHE_TTL_SECONDS, WorkerHeartbeat
from tests.records import worker_heartbeat

CODECS = CodecSet()


def heartbeat(**fields: object) -> WorkerHeartbeat:
    return worker_heartbeat("embedding", ["embedding_request"], **fields)


def test_without_a_declared_ttl_the_field_is_not_sent() -> None:
    body = msgpack.unpackb(CODECS.encode(heartbeat()))
    assert "cache_ttls" not in body
    assert WorkerHeartbeat.model_validate(body).cache_ttls == {}


@pytest.mark.parametrize("content_type", [MSGPACK, JSON])
def test_declared_ttls_round_trip_through_both_codecs(content_type: str) -> None:
    sent = heartbeat(cache_ttls={"embedding_request": 3600})
    body = CODECS.encode(sent, CODECS.for_content_type(content_type))
    assert CODECS.decode(WorkerHeartbeat, body, content_type).cache_ttls == {"embedding_request": 3600}


@pytest.mark.parametrize(
    "ttls", [{"embedding_request": 0}, {"embedding_request": MAX_CACHE_TTL_SECONDS + 1}, {"a b": 5}]
)
def test_bad_ttls_are_refused(ttls: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        heartbeat(cache_ttls=ttls)
