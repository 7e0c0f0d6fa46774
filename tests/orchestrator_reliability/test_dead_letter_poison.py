"""Any body in a dead-letter queue: listed as undecodable (admin only) with its reason, size and headers,
skipped by replay with a per-item reason and left parked; never a 500, for anybody."""

from __future__ import annotations

import datetime
import decimal
import json
from typing import Any

import msgpack

from protocol.codec import JSON, MSGPACK
from protocol.envelope import TaskEnvelope
from protocol.topology import ERROR_HEADER, REASON_HEADER, TENANT_HEADER, dead_letter_queue
from tests.api_server import Api
from tests.orchestrator_reliability.dead_letters import dead_depth, failed_job, park


def _envelope_json(api: Api, **extra: Any) -> dict[str, Any]:
    fields = {"global_task_id": "job-poison", "tenant_id": api.tenant_a, "type": api.job_type, "service": api.service}
    return {**TaskEnvelope(**fields).model_dump(mode="json"), **extra}


def _poison(api: Api) -> dict[str, tuple[bytes, str | None, dict[str, Any]]]:
    """message id -> (body, content type, headers); every one claims tenant A in a header."""
    claim = {TENANT_HEADER: api.tenant_a}
    deep_payload = _envelope_json(api)
    deep_payload["payload"] = {"a": json.loads("[" * 300 + "]" * 300)}
    huge_int = json.dumps(_envelope_json(api, task_id="huge-int", payload={"n": 2**70})).encode()
    return {
        "deep-json": (b"[" * 100_000 + b"]" * 100_000, JSON, claim),
        "deep-msgpack": (b"\x91" * 1000 + b"\xc0", MSGPACK, claim),
        "deep-payload": (json.dumps(deep_payload).encode(), JSON, claim),
        "huge-int": (huge_int, JSON, claim),
        "bad-json": (b'{"task_id": ', JSON, claim),
        "bad-msgpack": (b"\xc1\xc1", MSGPACK, claim),
        "bad-utf8": (b'{"a": "\xff"}', JSON, claim),
        "foreign": (b"\x80\x04pickle", "application/x-python-pickle", claim),
        "no-type": (b"\x80", None, claim),
        "huge": (b"x" * (5 * 1024 * 1024), MSGPACK, claim),
        "not-a-map": (b"[1, 2, 3]", JSON, claim),
        "missing-fields": (msgpack.packb({"tenant_id": api.tenant_a}), MSGPACK, claim),
        "odd-headers": (
            b"\xc1",
            MSGPACK,
            {
                **claim,
                REASON_HEADER: "x" * 50_000,
                ERROR_HEADER: bytearray(b"\xff\xfe bytes"),
                "x-nested": {"a": {"b": {"c": {"d": 1}}}, "list": list(range(100))},
                "x-decimal": decimal.Decimal("1.5"),
                "x-time": datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
                "x-float": 1.5,
            },
        ),
    }


async def test_poison_bodies_are_listed_to_the_admin_and_never_break_the_api(api: Api) -> None:
    mine = await failed_job(api, api.headers_a)
    poison = _poison(api)
    for message_id, (body, content_type, headers) in poison.items():
        await park(api, message_id, body, content_type, headers)
    admin = {"Authorization": f"Bearer admin-{api.tenant_a.removeprefix('ta-')}"}
    total = len(poison) + 1

    listed = await api.client.get(f"/dead-letters/{api.service}", headers=admin)
    assert listed.status == 200, await listed.text()
    body = await listed.json()
    assert body["scanned"] == total
    entries = {e["task_id"]: e for e in body["entries"]}
    assert set(entries) == {mine.task_id, *poison}
    assert entries[mine.task_id]["decodable"] is True
    for message_id, (raw, _, _) in poison.items():
        entry = entries[message_id]
        assert entry["size"] == len(raw), message_id
        assert entry["headers"][TENANT_HEADER] == api.tenant_a
        if message_id != "huge-int":  # a valid envelope, but msgpack cannot carry its number
            assert entry["decodable"] is False, message_id
            assert entry["decode_error"], message_id
    assert "nested deeper than" in entries["deep-json"]["decode_error"]
    assert "nested deeper than" in entries["deep-payload"]["decode_error"]
    assert "exceeds" in entries["huge"]["decode_error"]
    odd = entries["odd-headers"]
    assert len(odd["reason"]) <= 1000 and len(odd["headers"][REASON_HEADER]) <= 1000
    assert odd["error"].endswith(" bytes")
    assert odd["headers"]["x-nested"]["a"]["b"] == "…"  # three levels shown
    assert odd["headers"]["x-nested"]["list"][-1] == "…"
    assert (odd["headers"]["x-decimal"], odd["headers"]["x-float"]) == ("1.5", 1.5)
    assert odd["headers"]["x-time"].startswith("2026-01-01")

    # A header is not proof of ownership: tenant A sees only its own tasks.
    theirs = await (await api.client.get(f"/dead-letters/{api.service}", headers=api.headers_a)).json()
    assert [e["task_id"] for e in theirs["entries"]] == [mine.task_id, "huge-int"]

    replay = await api.client.post(f"/dead-letters/{api.service}/replay", json={"all": True}, headers=admin)
    assert replay.status == 200, await replay.text()
    report = await replay.json()
    assert [r["task_id"] for r in report["replayed"]] == [mine.task_id]
    errors = {e["task_id"]: e["error"] for e in report["errors"]}
    assert errors.pop("huge-int") == "unsendable"
    assert errors == {message_id: "undecodable" for message_id in poison if message_id != "huge-int"}
    assert await dead_depth(api) == len(poison), "nothing unreplayable leaves the queue"

    named = await api.client.post(
        f"/dead-letters/{api.service}/replay", json={"task_ids": list(poison)}, headers=api.headers_a
    )
    assert named.status == 200, await named.text()
    named_errors = {e["task_id"]: e["error"] for e in (await named.json())["errors"]}
    assert named_errors == {**{message_id: "not_found" for message_id in poison}, "huge-int": "unsendable"}
    assert await dead_depth(api) == len(poison)


async def test_a_forged_attempts_header_does_not_break_the_replay(api: Api) -> None:
    """The attempt a replay numbers comes from the envelope, or from a header only when it is a sane number."""
    parked = await failed_job(api, api.headers_a)
    channel = await api.amqp.channel()
    try:
        queue = await channel.declare_queue(dead_letter_queue(api.service), passive=True)
        message = await queue.get(no_ack=True, fail=True)
        assert message is not None
    finally:
        await channel.close()
    headers = {**(message.headers or {}), "x-baton-attempts": 2**62}
    await park(api, parked.task_id, message.body, message.content_type, headers)

    listed = await (await api.client.get(f"/dead-letters/{api.service}", headers=api.headers_a)).json()
    assert [e["attempts"] for e in listed["entries"]] == [1]  # the envelope's
    replay = await api.client.post(f"/dead-letters/{api.service}/replay", json={"all": True}, headers=api.headers_a)
    assert replay.status == 200, await replay.text()
    assert [r["attempt"] for r in (await replay.json())["replayed"]] == [2]
