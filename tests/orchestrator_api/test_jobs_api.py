"""The HTTP API against the real RabbitMQ and Redis."""

from __future__ import annotations

import asyncio
import io
import json
import time
from typing import Any

import aio_pika

from orchestrator.app import LIVE
from protocol.codec import CodecSet
from protocol.control import CancelCommand
from protocol.events import ATTEMPT_SEQ_STRIDE, JobStatus, Progress, completed_event, failed_event, status_event
from protocol.topology import CONTROL_EXCHANGE, lane_queue, task_queue
from tests.api_server import Api
from tests.polling import eventually

SEQ = ATTEMPT_SEQ_STRIDE  # first attempt: its events are numbered SEQ + 1, SEQ + 2, ...


async def _create(api: Api, **body: object) -> dict[str, Any]:
    response = await api.client.post("/jobs", json={"type": api.job_type, **body}, headers=api.headers_a)
    assert response.status == 202, await response.text()
    return await response.json()  # type: ignore[no-any-return]


async def test_create_records_then_publishes_the_envelope(api: Api) -> None:
    response = await api.client.post(
        "/jobs",
        json={
            "type": api.job_type,
            "payload": {"text": "hello"},
            "priority": "high",
            "session_id": "sess-1",
            "context": {"user_id": "user-1", "conversation_id": "conv-1"},
            "timeout_ms": 60_000,
        },
        headers={**api.headers_a, "X-Request-Id": "req-123"},
    )
    assert response.status == 202
    body = await response.json()
    job_id = body["job_id"]
    assert body["status"] == "queued"
    assert body["tracking_url"] == f"/jobs/{job_id}"
    assert body["websocket_url"] == f"/ws/jobs/{job_id}"
    assert body["created_at"]

    record = await (await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)).json()
    assert (record["status"], record["type"], record["service"]) == ("queued", api.job_type, api.service)
    assert (record["tenant_id"], record["session_id"], record["priority"]) == (api.tenant_a, "sess-1", 9)

    [(message, envelope)] = await api.queued_envelopes()
    assert message.content_type == "application/msgpack"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.priority == 9
    assert message.message_id == envelope.task_id == record["root_task_id"]
    assert message.correlation_id == envelope.global_task_id == job_id
    assert (envelope.tenant_id, envelope.session_id, envelope.type) == (api.tenant_a, "sess-1", api.job_type)
    assert envelope.payload == {"text": "hello"}
    assert envelope.context.request_id == "req-123"
    assert envelope.context.conversation_id == "conv-1"
    assert envelope.metadata.source == "api"
    assert envelope.metadata.user_id == "user-1"
    assert envelope.metadata.timeout_ms == 60_000
    assert envelope.deadline is not None and envelope.deadline > envelope.created_at


async def test_result_status_alias_and_wait(api: Api) -> None:
    job_id = (await _create(api))["job_id"]
    result = await api.client.get(f"/jobs/{job_id}/result", headers=api.headers_a)
    assert result.status == 202
    assert (await result.json())["status"] == "queued"
    [(_, envelope)] = await api.queued_envelopes()

    await api.emit(status_event(envelope, JobStatus.RUNNING, SEQ + 1, Progress(percentage=40, message="half")))

    async def running() -> bool:
        body = await (await api.client.get(f"/jobs/{job_id}/status", headers=api.headers_a)).json()
        return bool(body["status"] == "running" and body["progress"]["percentage"] == 40)

    await eventually(running, within=5.0)
    await api.emit(completed_event(envelope, {"answer": 42}, SEQ + 2))

    async def completed() -> bool:
        return (await api.client.get(f"/jobs/{job_id}/result", headers=api.headers_a)).status == 200

    await eventually(completed, within=5.0)
    body = await (await api.client.get(f"/jobs/{job_id}/result", headers=api.headers_a)).json()
    assert body == {"job_id": job_id, "status": "completed", "result": {"answer": 42}, "progress": None}


async def test_wait_returns_the_outcome(api: Api) -> None:
    async def worker() -> None:
        async def queued() -> bool:
            return await api.queue_depth() == 1

        await eventually(queued, within=5.0)
        [(_, envelope)] = await api.queued_envelopes()
        await api.emit(completed_event(envelope, {"echo": "x"}, SEQ + 1))

    task = asyncio.create_task(worker())
    started = time.monotonic()
    response = await api.client.post("/jobs", json={"type": api.job_type, "wait": 20}, headers=api.headers_a)
    await task
    assert response.status == 200
    body = await response.json()
    assert (body["status"], body["result"]) == ("completed", {"echo": "x"})
    assert time.monotonic() - started < 10

    # A failure within `wait` is a 200 that says how the job ended; its result is a 409.
    failing = asyncio.create_task(
        api.client.post("/jobs", json={"type": api.job_type, "wait": 20}, headers=api.headers_a)
    )
    await eventually(lambda: _depth_is(api, 1), within=5.0)
    [(_, envelope)] = await api.queued_envelopes()
    await api.emit(failed_event(envelope, error="boom", error_type="ValueError", seq=SEQ + 1))
    response = await failing
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "failed"
    assert body["error"]["error"] == "boom"
    result = await api.client.get(f"/jobs/{body['job_id']}/result", headers=api.headers_a)
    assert result.status == 409
    failed = await result.json()
    assert (failed["error"], failed["detail"], failed["status"]) == ("job_failed", "boom", "failed")

    # Nothing happens within a short wait: 202 with the current state.
    response = await api.client.post("/jobs", json={"type": api.job_type, "wait": 0.3}, headers=api.headers_a)
    assert response.status == 202


async def _depth_is(api: Api, depth: int) -> bool:
    return await api.queue_depth() == depth


async def test_list_filters_and_paging(api: Api) -> None:
    ids = [(await _create(api, session_id="s-even" if i % 2 == 0 else "s-odd"))["job_id"] for i in range(5)]
    response = await api.client.get("/jobs", params={"limit": "2"}, headers=api.headers_a)
    page = await response.json()
    assert (page["total"], page["offset"], page["limit"], len(page["jobs"])) == (5, 0, 2, 2)
    seen = [job["job_id"] for job in page["jobs"]]
    for offset in (2, 4):
        page = await (
            await api.client.get("/jobs", params={"limit": "2", "offset": str(offset)}, headers=api.headers_a)
        ).json()
        seen += [job["job_id"] for job in page["jobs"]]
    assert sorted(seen) == sorted(ids)

    even = await (await api.client.get("/jobs", params={"session_id": "s-even"}, headers=api.headers_a)).json()
    assert even["total"] == 3
    assert {job["session_id"] for job in even["jobs"]} == {"s-even"}
    by_type = await (await api.client.get("/jobs", params={"type": api.job_type}, headers=api.headers_a)).json()
    assert by_type["total"] == 5
    await api.client.post(f"/jobs/{ids[0]}/cancel", headers=api.headers_a)
    cancelled = await (await api.client.get("/jobs", params={"status": "cancelled"}, headers=api.headers_a)).json()
    assert [job["job_id"] for job in cancelled["jobs"]] == [ids[0]]

    too_big = await api.client.get("/jobs", params={"limit": "1000"}, headers=api.headers_a)
    assert too_big.status == 422
    bad_status = await api.client.get("/jobs", params={"status": "sleeping"}, headers=api.headers_a)
    assert bad_status.status == 422


async def test_cancel_broadcasts_and_is_final(api: Api) -> None:
    job_id = (await _create(api))["job_id"]
    channel = await api.amqp.channel()
    control = await channel.declare_queue(exclusive=True, auto_delete=True)
    await control.bind(CONTROL_EXCHANGE)
    try:
        response = await api.client.post(f"/jobs/{job_id}/cancel", headers=api.headers_a)
        assert response.status == 200
        assert await response.json() == {"job_id": job_id, "status": "cancelled"}

        async def broadcast() -> bool:
            while (message := await control.get(no_ack=True, fail=False)) is not None:
                command = CodecSet().decode(CancelCommand, message.body, message.content_type)
                if command.global_task_id == job_id:
                    assert command.tenant_id == api.tenant_a
                    return True
            return False

        await eventually(broadcast, within=5.0)
    finally:
        await channel.close()

    again = await api.client.post(f"/jobs/{job_id}/cancel", headers=api.headers_a)
    assert again.status == 409
    assert (await again.json())["status"] == "cancelled"
    record = await (await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)).json()
    assert record["status"] == "cancelled"
    result = await api.client.get(f"/jobs/{job_id}/result", headers=api.headers_a)
    assert result.status == 409
    assert (await result.json())["error"] == "job_cancelled"
    missing = await api.client.post("/jobs/no-such-job/cancel", headers=api.headers_a)
    assert missing.status == 404


async def test_idempotency(api: Api) -> None:
    body = {"type": api.job_type, "payload": {"n": 1}, "idempotency_key": "once"}
    first = await api.client.post("/jobs", json=body, headers=api.headers_a)
    second = await api.client.post("/jobs", json=body, headers={**api.headers_a, "X-Request-Id": "another"})
    assert (first.status, second.status) == (202, 202)
    one, two = await first.json(), await second.json()
    assert one["job_id"] == two["job_id"]
    assert (one["created"], two["created"]) == (True, False)

    conflict = await api.client.post("/jobs", json={**body, "payload": {"n": 2}}, headers=api.headers_a)
    assert conflict.status == 409
    assert (await conflict.json())["error"] == "idempotency_conflict"
    # Keys are per tenant: the other tenant's identical request is its own job.
    other = await api.client.post("/jobs", json=body, headers=api.headers_b)
    assert (await other.json())["job_id"] != one["job_id"]
    assert await api.queue_depth() == 2

    storm = {"type": api.job_type, "payload": {"n": 3}, "idempotency_key": "storm"}
    responses = await asyncio.gather(*(api.client.post("/jobs", json=storm, headers=api.headers_a) for _ in range(100)))
    assert {r.status for r in responses} == {202}
    job_ids = {(await r.json())["job_id"] for r in responses}
    assert len(job_ids) == 1
    assert await api.queue_depth() == 3


async def test_batch(api: Api) -> None:
    items: list[object] = [{"type": api.job_type, "payload": {"i": i}} for i in range(300)]
    items[5] = {"type": api.job_type, "priority": "urgent"}
    items[7] = {"payload": {}}
    items[9] = {"type": "nobody_serves_this"}
    items[11] = "not an object"
    started = time.monotonic()
    response = await api.client.post("/jobs/batch", json={"jobs": items}, headers=api.headers_a)
    elapsed = time.monotonic() - started
    assert response.status == 200
    body = await response.json()
    assert (body["accepted"], body["rejected"]) == (296, 4)
    assert [item["index"] for item in body["jobs"]] == list(range(300))
    assert {body["jobs"][i]["error"] for i in (5, 7, 11)} == {"validation_error"}
    assert body["jobs"][9]["error"] == "unknown_job_type"
    assert all(item["status"] == "queued" for item in body["jobs"] if "job_id" in item)
    assert await api.queue_depth() == 296
    assert elapsed < 10  # confirms overlap; one by one this is far slower on a busy machine

    too_many = await api.client.post(
        "/jobs/batch", json={"jobs": [{"type": api.job_type}] * 1001}, headers=api.headers_a
    )
    assert too_many.status == 422
    empty = await api.client.post("/jobs/batch", json={"jobs": []}, headers=api.headers_a)
    assert empty.status == 422


async def test_tenant_isolation_everywhere(api: Api) -> None:
    job_id = (await _create(api))["job_id"]
    for method, path in (
        ("GET", f"/jobs/{job_id}"),
        ("GET", f"/jobs/{job_id}/status"),
        ("GET", f"/jobs/{job_id}/result"),
        ("POST", f"/jobs/{job_id}/cancel"),
    ):
        response = await api.client.request(method, path, headers=api.headers_b)
        assert response.status == 404, (method, path)
        assert (await response.json())["error"] == "job_not_found"
    listing = await (await api.client.get("/jobs", headers=api.headers_b)).json()
    assert listing["total"] == 0 and listing["jobs"] == []
    # Tenant B's cancel attempt changed nothing.
    record = await (await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)).json()
    assert record["status"] == "queued"


async def test_every_protected_route_needs_a_key(api: Api) -> None:
    routes = [
        ("POST", "/jobs"),
        ("GET", "/jobs"),
        ("POST", "/jobs/batch"),
        ("POST", "/jobs/agent/a1/execute"),
        ("GET", "/jobs/x"),
        ("GET", "/jobs/x/status"),
        ("GET", "/jobs/x/result"),
        ("POST", "/jobs/x/cancel"),
        ("GET", f"/dead-letters/{api.service}"),
        ("POST", f"/dead-letters/{api.service}/replay"),
    ]
    for headers in ({}, {"Authorization": "Bearer not-a-key"}):
        for method, path in routes:
            response = await api.client.request(method, path, json={"type": api.job_type}, headers=headers)
            assert response.status == 401, (method, path)
            assert (await response.json())["error"] == "unauthorized"
    for path in ("/health", "/metrics", "/openapi.json", "/"):
        assert (await api.client.get(path)).status == 200, path


async def test_bad_requests(api: Api) -> None:
    malformed = await api.client.post("/jobs", data=b'{"type": ', headers=api.headers_a)
    assert malformed.status == 400
    blob = json.dumps({"type": api.job_type, "payload": {"blob": "x" * (1024 * 1024)}}).encode()
    oversized = await api.client.post("/jobs", data=io.BytesIO(blob), headers=api.headers_a)
    assert oversized.status == 413
    schema = await api.client.post("/jobs", json={"type": api.job_type, "payload": "text"}, headers=api.headers_a)
    assert schema.status == 422
    assert (await schema.json())["detail"][0]["loc"] == ["payload"]
    unknown = await api.client.post("/jobs", json={"type": "nobody_serves_this"}, headers=api.headers_a)
    assert unknown.status == 422
    body = await unknown.json()
    assert body["error"] == "unknown_job_type"
    assert body["known_types"][api.job_type] == api.service
    assert body["known_types"]["llm_request"] == "query"
    assert await api.queue_depth() == 0


async def test_deleted_lane_fails_once_then_is_declared_again(api: Api) -> None:
    await _create(api)
    channel = await api.amqp.channel()
    await channel.queue_delete(lane_queue(api.service, api.tenant_a))
    await channel.close()
    lost = await api.client.post("/jobs", json={"type": api.job_type}, headers=api.headers_a)
    assert lost.status == 503
    assert (await lost.json())["error"] == "publish_failed"
    assert "Retry-After" in lost.headers
    await _create(api)
    assert await api.queue_depth() == 1
    listing = await (await api.client.get("/jobs", headers=api.headers_a)).json()
    assert listing["total"] == 2  # the unroutable job was discarded


async def test_health_and_metrics(api: Api) -> None:
    await _create(api)
    response = await api.client.get("/health")
    assert response.status == 200
    health = await response.json()
    assert (health["status"], health["broker"], health["redis"]) == ("ok", "up", "up")
    ours = health["services"][api.service]
    expected = {"queue": task_queue(api.service), "messages": 1, "consumers": 0, "live_workers": 1}
    assert ours == {**expected, "dead_letters": 0, "circuit_breakers": [], "limits": None}
    assert "query" in health["services"]

    text = await (await api.client.get("/metrics")).text()
    assert f'baton_jobs_created_total{{type="{api.job_type}"}} 1.0' in text
    assert f'baton_queue_depth_messages{{queue="{task_queue(api.service)}"}} 1.0' in text
    assert f'baton_live_workers{{service="{api.service}"}} 1.0' in text
    assert f'baton_dead_letter_depth{{service="{api.service}"}} 0.0' in text
    assert 'baton_http_requests_total{method="POST",route="/jobs",status="202"} 1.0' in text


async def test_dashboard_and_openapi_are_served(api: Api) -> None:
    page = await api.client.get("/")
    assert page.content_type == "text/html"
    html = await page.text()
    assert '<script type="module" src="/static/dashboard-app.js">' in html and "https://" not in html
    doc = await (await api.client.get("/openapi.json")).json()
    assert "/jobs/{job_id}/result" in doc["paths"]


async def test_broker_unreachable_fails_fast_and_leaves_nothing(api_without_broker: Api) -> None:
    api = api_without_broker
    assert api.app[LIVE] is not None  # the app started without RabbitMQ
    for path, body in (
        ("/jobs", {"type": api.job_type}),
        ("/jobs", {"type": api.job_type, "idempotency_key": "k1", "wait": 5}),
        ("/jobs/agent/agent-1/execute", {"input": "hi"}),
        ("/jobs/batch", {"jobs": [{"type": api.job_type}, {"type": api.job_type}]}),
    ):
        started = time.monotonic()
        response = await api.client.post(path, json=body, headers=api.headers_a)
        assert time.monotonic() - started < 2, path
        assert response.status == 503, path
        assert (await response.json())["error"] == "broker_unavailable"
        assert int(response.headers["Retry-After"]) > 0
    listing = await (await api.client.get("/jobs", headers=api.headers_a)).json()
    assert listing["total"] == 0

    started = time.monotonic()
    health = await api.client.get("/health")
    assert time.monotonic() - started < 3
    assert health.status == 503
    body = await health.json()
    assert (body["status"], body["broker"], body["redis"]) == ("unavailable", "down", "up")
