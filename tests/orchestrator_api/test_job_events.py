"""A job's kept events over HTTP (GET /jobs/{job_id}/events) and WebSocket resume, across two replicas of one
deployment: what one replica applied, the other serves."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import WSMsgType

from protocol.envelope import TaskEnvelope
from protocol.events import (
    ATTEMPT_SEQ_STRIDE,
    JobStatus,
    Progress,
    TaskEvent,
    completed_event,
    status_event,
)
from tests.api_server import Api, Client, serve_api, serve_replica

SEQ = ATTEMPT_SEQ_STRIDE  # first attempt: its events are numbered SEQ + 1, SEQ + 2, ...
HISTORY_MAX = 8


@pytest.fixture
async def api(rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[Api]:
    # Events go in over a service's WebSocket, not the broker: on the shared events queue, orchestrators of other
    # runs (maybe of a release that keeps no history) could apply them first.
    tokens = {f"root-{unique}": f"svc-{unique}", f"child-{unique}": f"svc-{unique}-tools"}
    async with serve_api(
        rabbitmq_url, redis_url, redis_client, unique, service_tokens=tokens, event_history_max=HISTORY_MAX
    ) as api:
        yield api


@pytest.fixture
async def emit(api: Api) -> AsyncIterator[Callable[[TaskEvent], Awaitable[bool]]]:
    """Publish a task event as its service would, over a WebSocket with the service's token; once the
    orchestrator answers, whether it applied it."""
    unique = api.service.removeprefix("svc-")
    sockets: dict[str, aiohttp.ClientWebSocketResponse] = {}
    for token, service in ((f"root-{unique}", api.service), (f"child-{unique}", f"{api.service}-tools")):
        sockets[service] = await api.client.ws_connect("/ws/task_updates", headers={"Authorization": f"Bearer {token}"})
        assert (await receive(sockets[service]))["type"] == "connection_established"

    async def publish(event: TaskEvent) -> bool:
        ws = sockets[event.service]
        await ws.send_str(event.model_dump_json())
        ack = await receive(ws)
        assert ack["type"] == "event_ack", ack
        return bool(ack["applied"])

    yield publish
    for ws in sockets.values():
        await ws.close()


@pytest.fixture
async def replica(api: Api) -> AsyncIterator[Client]:
    async with serve_replica(api) as client:
        yield client


async def started(api: Api) -> tuple[str, TaskEnvelope]:
    response = await api.client.post("/jobs", json={"type": api.job_type, "payload": {}}, headers=api.headers_a)
    assert response.status == 202, await response.text()
    job_id = (await response.json())["job_id"]
    [(_, envelope)] = await api.queued_envelopes()
    return job_id, envelope


async def events(client: Client, api: Api, job_id: str, query: str = "") -> dict[str, Any]:
    response = await client.get(f"/jobs/{job_id}/events{query}", headers=api.headers_a)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=10)
    assert msg.type is WSMsgType.TEXT, msg
    body: dict[str, Any] = json.loads(msg.data)
    return body


Emit = Callable[[TaskEvent], Awaitable[bool]]


async def test_events_of_a_job_with_children_and_a_retry_read_from_the_other_replica(
    api: Api, replica: Client, emit: Emit
) -> None:
    job_id, root = await started(api)
    child = root.model_copy(update={"task_id": f"{root.task_id}-child", "service": f"{api.service}-tools"})
    retry = root.model_copy(update={"attempt": 2})
    for event in (
        status_event(root, JobStatus.RUNNING, SEQ + 1, Progress(percentage=10)),
        status_event(child, JobStatus.RUNNING, SEQ + 1),
        completed_event(child, "child result", SEQ + 2),
        status_event(root, JobStatus.RETRYING, SEQ + 2),
        status_event(retry, JobStatus.RUNNING, 2 * SEQ + 1),
        completed_event(retry, "done", 2 * SEQ + 2),
    ):
        assert await emit(event)
    assert not await emit(completed_event(child, "late", SEQ + 3))  # after the job's end: dropped, not kept
    body = await events(replica, api, job_id)
    assert body["job_id"] == job_id and body["seq"] == 7 and body["complete"] is True
    kept = [(e["seq"], e["event"], e["task_id"], e["job_status"]) for e in body["events"]]
    assert kept == [
        (1, "task_status_update", root.task_id, "queued"),
        (2, "task_status_update", root.task_id, "running"),
        (3, "task_status_update", child.task_id, "running"),
        (4, "task_completed", child.task_id, "running"),  # the child's end: the job runs on
        (5, "task_status_update", root.task_id, "retrying"),
        (6, "task_status_update", root.task_id, "running"),
        (7, "task_completed", root.task_id, "completed"),
    ]
    assert body["events"][1]["data"]["progress"] == {"percentage": 10}


async def test_paging_and_a_history_that_no_longer_reaches_back(api: Api, replica: Client, emit: Emit) -> None:
    job_id, root = await started(api)
    for n in range(1, 11):
        assert await emit(status_event(root, JobStatus.RUNNING, SEQ + n, Progress(percentage=n)))
    assert await emit(completed_event(root, "done", SEQ + 11))

    whole = await events(replica, api, job_id)
    assert whole["seq"] == 12 and whole["complete"] is False, [e["seq"] for e in whole["events"]]  # 8 kept of 12
    assert [e["seq"] for e in whole["events"]] == list(range(5, 13))
    assert whole["events"][-1]["job_status"] == "completed"
    first = await events(replica, api, job_id, "?since=4&limit=3")
    assert first["complete"] is True and [e["seq"] for e in first["events"]] == [5, 6, 7]
    rest = await events(api.client, api, job_id, f"?since={first['events'][-1]['seq']}&limit=500")
    assert rest["complete"] is True and [e["seq"] for e in rest["events"]] == list(range(8, 13))
    assert first["events"] + rest["events"] == whole["events"]
    current = await events(api.client, api, job_id, "?since=12")
    assert current == {"job_id": job_id, "seq": 12, "complete": True, "events": []}


async def test_bad_queries_and_other_tenants_jobs_are_refused(api: Api) -> None:
    job_id, _ = await started(api)
    for query in ("?since=-1", "?since=abc", "?since=1.5", "?limit=0", "?limit=1001", "?after=1"):
        response = await api.client.get(f"/jobs/{job_id}/events{query}", headers=api.headers_a)
        assert response.status == 422, query
        assert (await response.json())["error"] == "validation_error"
    ahead = await api.client.get(f"/jobs/{job_id}/events?since=2", headers=api.headers_a)
    assert ahead.status == 422
    assert await ahead.json() == {
        "error": "since_beyond_job",
        "detail": "since 2 is past the job's seq 1",
        "job_id": job_id,
        "seq": 1,
    }
    for headers, path in ((api.headers_b, job_id), (api.headers_a, "no-such-job")):
        missing = await api.client.get(f"/jobs/{path}/events", headers=headers)
        assert missing.status == 404 and (await missing.json())["error"] == "job_not_found"


async def test_a_socket_resumes_on_the_other_replica_with_exactly_the_missed_events(
    api: Api, replica: Client, emit: Emit
) -> None:
    job_id, root = await started(api)
    ws = await api.client.ws_connect("/ws/task_updates", headers=api.headers_a)
    assert (await receive(ws))["type"] == "connection_established"
    await ws.send_json({"type": "subscribe", "job_ids": [job_id]})
    assert (await receive(ws))["seq"] == 1
    assert await emit(status_event(root, JobStatus.RUNNING, SEQ + 1))
    last = await receive(ws)
    assert last["seq"] == 2
    await ws.close()  # mid-job
    for n in range(2, 5):
        assert await emit(status_event(root, JobStatus.RUNNING, SEQ + n, Progress(percentage=n * 10)))

    ws = await replica.ws_connect("/ws/task_updates", headers=api.headers_a)
    assert (await receive(ws))["type"] == "connection_established"
    await ws.send_json({"type": "subscribe", "job_ids": [job_id], "since": {job_id: last["seq"]}})
    missed = [await receive(ws) for _ in range(3)]
    assert [e["seq"] for e in missed] == [3, 4, 5]
    assert [e["data"]["progress"]["percentage"] for e in missed] == [20, 30, 40]
    assert await emit(completed_event(root, "done", SEQ + 5))
    end = await receive(ws)
    assert (end["seq"], end["event"], end["job_status"]) == (6, "task_completed", "completed")
    await ws.send_json({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}
    await ws.close()
