"""Input that once broke the orchestrator (issue 9): each is refused with a clear 4xx and leaves no
job behind, or is that batch item's own error, while the rest of the request goes through."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from orchestrator import strict_json
from orchestrator.auth import Authenticator
from orchestrator.http.request import MAX_BATCH_BODY_BYTES
from tests.api_server import Api, serve_api

BIG_INT = 18446744073709551616  # 2**64: outside what msgpack carries
JSON = {"Content-Type": "application/json"}


def _raw_job(job_type: str, payload_json: str) -> bytes:
    return f'{{"type": "{job_type}", "payload": {payload_json}}}'.encode()


def _json_headers(api: Api) -> dict[str, str]:
    return {**api.headers_a, **JSON}


async def _tenant_has_no_jobs(api: Api) -> None:
    listing = await (await api.client.get("/jobs", headers=api.headers_a)).json()
    assert listing["total"] == 0, listing
    assert await api.queue_depth() == 0


async def test_a_payload_that_cannot_be_sent_is_422_and_leaves_no_job(api: Api) -> None:
    for payload_json in (
        f'{{"prompt": "x", "n": {BIG_INT}}}',  # an int over 64 bits
        '{"prompt": "\\ud800x"}',  # a lone surrogate
        f'{{"deep": [[{-BIG_INT}]]}}',  # a negative one, nested
    ):
        response = await api.client.post("/jobs", data=_raw_job(api.job_type, payload_json), headers=_json_headers(api))
        assert response.status == 422, (payload_json, await response.text())
        body = await response.json()
        assert body["error"] == "unencodable_payload"
        assert "cannot be sent to a worker" in body["detail"]
    await _tenant_has_no_jobs(api)


async def test_other_unsendable_text_fields_are_422(api: Api) -> None:
    for field in ("session_id", "idempotency_key"):
        raw = f'{{"type": "{api.job_type}", "{field}": "k\\udc80"}}'.encode()
        response = await api.client.post("/jobs", data=raw, headers={**api.headers_a, **JSON})
        assert response.status == 422, (field, await response.text())
        assert (await response.json())["detail"][0]["loc"] == [field]
    context = f'{{"type": "{api.job_type}", "context": {{"agent_id": "\\ud800"}}}}'.encode()
    response = await api.client.post("/jobs", data=context, headers={**api.headers_a, **JSON})
    assert response.status == 422
    await _tenant_has_no_jobs(api)


async def test_a_batch_reports_an_unsendable_item_as_its_own_error(api: Api) -> None:
    good = json.dumps({"type": api.job_type, "payload": {"i": 1}})
    big_int = _raw_job(api.job_type, '{"n": ' + str(BIG_INT) + "}").decode()
    surrogate = _raw_job(api.job_type, '{"p": "\\ud800"}').decode()
    body = '{"jobs": [' + ", ".join([good, big_int, surrogate, good]) + "]}"
    response = await api.client.post("/jobs/batch", data=body.encode(), headers={**api.headers_a, **JSON})
    assert response.status == 200, await response.text()
    result = await response.json()
    assert (result["accepted"], result["rejected"]) == (2, 2)
    errors = [item.get("error") for item in result["jobs"]]
    assert errors == [None, "unencodable_payload", "unencodable_payload", None]
    job_ids = [item["job_id"] for item in result["jobs"] if "job_id" in item]
    assert len(job_ids) == 2
    listing = await (await api.client.get("/jobs", headers=api.headers_a)).json()
    assert sorted(job["job_id"] for job in listing["jobs"]) == sorted(job_ids)
    assert await api.queue_depth() == 2


@pytest.fixture
async def small_cap_api(
    rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str
) -> AsyncIterator[Api]:
    async with serve_api(rabbitmq_url, redis_url, redis_client, unique, max_message_bytes=64 * 1024) as api:
        yield api


async def test_a_job_over_the_message_cap_is_413_and_a_batch_item_over_it_is_its_error(small_cap_api: Api) -> None:
    api = small_cap_api
    big = {"type": api.job_type, "payload": {"text": "x" * 70_000}}
    response = await api.client.post("/jobs", json=big, headers=api.headers_a)
    assert response.status == 413
    body = await response.json()
    assert body["error"] == "payload_too_large" and "65536-byte cap" in body["detail"]
    batch = await api.client.post("/jobs/batch", json={"jobs": [{"type": api.job_type}, big]}, headers=api.headers_a)
    assert batch.status == 200
    items = (await batch.json())["jobs"]
    assert "job_id" in items[0] and items[1]["error"] == "payload_too_large"
    assert await api.queue_depth() == 1


async def test_deep_nesting_is_refused_not_500(api: Api) -> None:
    for depth in (63, 300, 1000, 100_000):
        payload = '{"a": ' + "[" * depth + "]" * depth + "}"
        response = await api.client.post("/jobs", data=_raw_job(api.job_type, payload), headers=_json_headers(api))
        assert response.status == 400, (depth, await response.text())
        assert "nested deeper than 64 levels" in (await response.json())["detail"]
    await _tenant_has_no_jobs(api)


async def test_nesting_up_to_the_limit_is_accepted(api: Api) -> None:
    payload = '{"a": ' + "[" * 62 + "]" * 62 + "}"  # 64 levels: the body, the payload and 62 lists
    response = await api.client.post("/jobs", data=_raw_job(api.job_type, payload), headers=_json_headers(api))
    assert response.status == 202, await response.text()


async def test_a_huge_or_bad_offset_is_422(api: Api) -> None:
    for offset in ("9223372036854775808", "1000000001", "-1", "1e3"):
        response = await api.client.get(f"/jobs?offset={offset}", headers=api.headers_a)
        assert response.status == 422, offset
        assert (await response.json())["detail"][0]["loc"] == ["offset"]


async def test_a_token_in_the_url_is_refused_on_http_routes(api: Api) -> None:
    job_id = (await (await api.client.post("/jobs", json={"type": api.job_type}, headers=api.headers_a)).json())[
        "job_id"
    ]
    key = api.headers_a["Authorization"].removeprefix("Bearer ")
    for path in (f"/jobs/{job_id}?token={key}", f"/jobs?token={key}"):
        response = await api.client.get(path)
        assert response.status == 401, path
    assert (await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)).status == 200


async def test_non_ascii_tokens_are_wrong_keys_not_errors(api: Api) -> None:
    response = await api.client.get("/jobs", headers={"Authorization": "Bearer \u00e9t\u00e9"})
    assert response.status == 401
    socket = await api.client.get("/ws/task_updates?token=%C3%A9")  # a plain GET: refused before the upgrade
    assert socket.status == 401
    ws = await api.client.ws_connect("/ws/task_updates")
    await ws.send_json({"type": "auth", "token": "\u00e9\ud800"})
    message = await ws.receive()
    assert ws.close_code == 4401, message


def test_the_authenticator_compares_any_text() -> None:
    auth = Authenticator({"k\u00e9y": "t1"}, admin_key="adm\u00efn", service_tokens={"s\u00e9rvice": "ocr"})
    assert auth.principal_for("\u00e9") is None
    assert auth.principal_for("\ud800") is None
    assert auth.principal_for("adm\u00efn") is not None and auth.principal_for("adm\u00efn").is_admin  # type: ignore[union-attr]
    service = auth.principal_for("s\u00e9rvice")
    assert service is not None and service.service == "ocr" and service.tenant_id is None
    assert auth.principal_for("k\u00e9y") is not None


async def test_a_deep_websocket_message_is_an_error_message_and_the_socket_stays(api: Api) -> None:
    ws = await api.client.ws_connect("/ws/task_updates", headers=api.headers_a)
    assert (await ws.receive_json())["type"] == "connection_established"
    await ws.send_str("[" * 100_000 + "]" * 100_000)
    error: dict[str, Any] = await ws.receive_json()
    assert error["type"] == "error" and error["error"] == "bad_message"
    assert "nested deeper" in error["detail"]
    await ws.send_json({"type": "ping"})
    assert await ws.receive_json() == {"type": "pong"}
    await ws.close()


async def test_a_batch_body_over_its_cap_is_413_before_it_is_read(api: Api) -> None:
    body = b'{"jobs": [' + b"0," * (MAX_BATCH_BODY_BYTES // 2) + b"0]}"
    response = await api.client.post("/jobs/batch", data=io.BytesIO(body), headers=_json_headers(api))
    assert response.status == 413
    assert (await response.json())["error"] == "body_too_large"
    await _tenant_has_no_jobs(api)


def test_the_depth_check_visits_only_containers() -> None:
    strict_json.check_depth({"values": [0] * 1_000_000, "nested": [[[1]]]})
    with pytest.raises(ValueError, match="deeper than 3"):
        strict_json.check_depth({"a": [0, 1, [2, {"b": 3}]]}, max_depth=3)
    strict_json.check_depth({"a": [0, 1, [2, 3]]}, max_depth=3)
