"""The workflow HTTP API on the real RabbitMQ and Redis, with a real worker runtime running the steps:
definitions, runs (and the older /execute-async/), following, controls, external step reports with
the tenant's key and with a scoped service token, and the execution's job on the jobs API and socket."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from orchestrator.store.keys import PREFIX
from orchestrator.workflows.storage import ExecutionStore
from tests.api_server import Api, serve_api
from tests.polling import poll
from tests.redis_keys import keys_matching
from tests.workers.helpers import running
from workers import TaskContext, Worker

STATUS_KEYS = {
    "execution_id",
    "workflow_id",
    "workflow_name",
    "status",
    "mode",
    "created_at",
    "updated_at",
    "context",
    "current_steps",
    "progress",
    "steps_history",
    "tracking_urls",
}
ACCEPTED_KEYS = {"execution_id", "workflow_id", "status", "tracking_url", "websocket_url", "created_at"}
REVIEWERS = "reviewers"


@pytest.fixture
async def api(rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[Api]:
    tokens = {f"tok-rev-{unique}": REVIEWERS, f"tok-svc-{unique}": f"svc-{unique}", f"tok-other-{unique}": "others"}
    async with serve_api(rabbitmq_url, redis_url, redis_client, unique, service_tokens=tokens) as api:
        yield api
    # The owner index is keyed by execution, not tenant: the tenants' cleanup does not see it.
    owned = [
        key
        for key in await keys_matching(redis_client, f"{PREFIX}:execution_owners:*")
        if (await redis_client.get(key) or b"").decode() in {api.tenant_a, api.tenant_b}
    ]
    if owned:
        await redis_client.delete(*owned)


def token(api: Api, which: str) -> dict[str, str]:
    return {"Authorization": f"Bearer tok-{which}-{api.service.removeprefix('svc-')}"}


def admin(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer admin-{api.service.removeprefix('svc-')}"}


@pytest.fixture
async def worker(api: Api, rabbitmq_url: str, redis_url: str) -> AsyncIterator[Worker]:
    steps = Worker(api.service, concurrency=4)

    @steps.handler(api.job_type)
    async def run(payload: dict[str, Any], ctx: TaskContext) -> Any:
        return {"name": payload.get("name"), "x": payload.get("x"), "context": {f"seen_{payload.get('name')}": True}}

    async with running(steps, rabbitmq_url, redis_url=redis_url):
        yield steps


async def put(api: Api, workflow_id: str, steps: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    response = await api.client.put(
        f"/workflows/{workflow_id}", json={"name": f"wf {workflow_id}", "steps": steps, **fields}, headers=api.headers_a
    )
    assert response.status in (200, 201), await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def start(api: Api, workflow_id: str, status: int = 202, **fields: Any) -> dict[str, Any]:
    response = await api.client.post(
        f"/workflows/{workflow_id}/execute-async", json={"data": {}, **fields}, headers=api.headers_a
    )
    assert response.status == status, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def status_of(api: Api, execution_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/executions/{execution_id}/status", headers=api.headers_a)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def until_status(api: Api, execution_id: str, wanted: str) -> dict[str, Any]:
    return await poll(
        lambda: status_of(api, execution_id),
        lambda body: body["status"] == wanted,
        within=20,
        what=f"execution {execution_id} to be {wanted}",
    )


async def job_once(api: Api, job_id: str, status: str) -> dict[str, Any]:
    """GET /jobs/{job_id} once it has `status`: the job follows the execution's stored state by an event
    the engine performs right after storing it (a moment later when another call is performing)."""

    async def probe() -> dict[str, Any]:
        response = await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)
        body: dict[str, Any] = await response.json()
        return body

    return await poll(probe, lambda job: job.get("status") == status, what=f"job {job_id} to be {status}")


def json_stream(body: Any) -> io.BytesIO:
    # A stream: aiohttp warns (an error here) about large bodies given as bytes.
    return io.BytesIO(json.dumps(body).encode())


def external(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": "human_review", "kind": "external", **fields}


async def test_definitions_are_stored_listed_read_and_deleted_per_tenant(api: Api) -> None:
    t = api.job_type
    steps = [{"name": "a", "type": t}, {"name": "b", "type": t, "after": ["a"], "retry": 2}]
    first = await api.client.put("/workflows/wf-b", json={"name": "B", "steps": steps}, headers=api.headers_a)
    assert first.status == 201
    stored = await first.json()
    assert stored["workflow_id"] == "wf-b" and stored["name"] == "B" and stored["on_failure"] == "stop"
    assert [s["name"] for s in stored["steps"]] == ["a", "b"] and stored["steps"][1]["retry"] == {"max_attempts": 2}
    again = await api.client.put(
        "/workflows/wf-b", json={"name": "B2", "steps": steps, "on_failure": "continue"}, headers=api.headers_a
    )
    assert again.status == 200
    replaced = await again.json()
    assert replaced["name"] == "B2" and replaced["created_at"] == stored["created_at"]
    await put(api, "wf-a", [{"name": "only", "type": t}])

    # Workflows declared by workers (the built-in ingestion service's, once any ran on this Redis) are
    # listed for every tenant too, marked declared_by: the tenant's own are the rest.
    listed = await (await api.client.get("/workflows", headers=api.headers_a)).json()
    own = [w["workflow_id"] for w in listed["workflows"] if w.get("declared_by") is None]
    assert own == ["wf-a", "wf-b"] and listed["total"] == len(listed["workflows"])
    assert (await (await api.client.get("/workflows/wf-b", headers=api.headers_a)).json()) == replaced
    other = await (await api.client.get("/workflows", headers=api.headers_b)).json()
    assert [w for w in other["workflows"] if w.get("declared_by") is None] == []
    assert (await api.client.get("/workflows/wf-b", headers=api.headers_b)).status == 404
    assert (await api.client.delete("/workflows/wf-b", headers=api.headers_b)).status == 404

    assert (await api.client.delete("/workflows/wf-b", headers=api.headers_a)).status == 204
    gone = await api.client.get("/workflows/wf-b", headers=api.headers_a)
    assert gone.status == 404 and (await gone.json())["error"] == "workflow_not_found"
    assert (await api.client.delete("/workflows/wf-b", headers=api.headers_a)).status == 404

    assert (await api.client.get("/workflows")).status == 401
    assert (await api.client.get("/workflows", headers=admin(api))).status == 403
    assert (await api.client.put("/workflows/x", json={}, headers=token(api, "rev"))).status == 403


async def test_bad_definitions_are_refused_with_every_reason(api: Api) -> None:
    t = api.job_type

    async def refused(body: Any, status: int = 422, path: str = "/workflows/bad") -> dict[str, Any]:
        response = await api.client.put(path, json=body, headers=api.headers_a)
        assert response.status == status, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer

    cycle = await refused(
        {"name": "c", "steps": [{"name": "a", "type": t, "after": ["b"]}, {"name": "b", "type": t, "after": ["a"]}]}
    )
    assert cycle["error"] == "invalid_workflow" and [p["type"] for p in cycle["detail"]] == ["cycle"]
    assert "a -> b -> a" in cycle["detail"][0]["msg"]
    unknown = await refused({"name": "u", "steps": [{"name": "a", "type": "no_such_type_anywhere"}]})
    assert unknown["detail"] == [
        {
            "loc": ["steps", 0, "type"],
            "msg": "no service serves job type 'no_such_type_anywhere' (step 'a')",
            "type": "unknown_job_type",
        }
    ]
    duplicate = await refused({"name": "d", "steps": [{"name": "a", "type": t}, {"name": "a", "type": t}]})
    assert [(p["loc"], p["type"]) for p in duplicate["detail"]] == [(["steps", 1, "name"], "duplicate_step")]
    unknown_step = await refused({"name": "s", "steps": [{"name": "a", "type": t, "after": ["ghost"]}]})
    assert [p["type"] for p in unknown_step["detail"]] == ["unknown_step"]
    shapeless = await refused({"steps": [{"name": "a", "type": t, "colour": "red"}]})
    assert {p["type"] for p in shapeless["detail"]} == {"missing", "extra_forbidden"}
    assert (await refused({"name": "x", "steps": [{"name": "a", "type": t}]}, path="/workflows/bad:id"))[
        "error"
    ] == "validation_error"

    not_json = await api.client.put("/workflows/bad", data=b"{", headers=api.headers_a)
    assert not_json.status == 400
    huge = {"name": "h", "steps": [{"name": "a", "type": t, "payload": {"blob": "x" * (1024 * 1024)}}]}
    assert (await api.client.put("/workflows/bad", data=json_stream(huge), headers=api.headers_a)).status == 413
    assert (await api.client.get("/workflows/bad", headers=api.headers_a)).status == 404


async def test_an_execution_runs_to_completion_and_is_followed_over_http(api: Api, worker: Worker) -> None:
    t = api.job_type
    await put(
        api,
        "flow",
        [
            {"name": "a", "type": t, "payload": {"name": "a", "x": "$input.doc"}},
            {"name": "b", "type": t, "payload": {"name": "b", "x": "$steps.a.result.x"}},
        ],
    )
    accepted = await start(api, "flow", data={"doc": "d-1"}, priority="high", idempotency_key="once")
    assert set(accepted) == ACCEPTED_KEYS
    execution_id = accepted["execution_id"]
    assert accepted["workflow_id"] == "flow" and accepted["status"] == "running"
    assert accepted["tracking_url"] == f"/executions/{execution_id}/status"
    assert accepted["websocket_url"] == f"/ws/{execution_id}"

    done = await until_status(api, execution_id, "completed")
    assert set(done) == STATUS_KEYS
    assert done["context"] == {
        "execution_id": execution_id,
        "dynamic_properties": {"doc": "d-1", "seen_a": True, "seen_b": True},
    }
    assert done["progress"]["percentage"] == 100 and done["progress"]["is_completed"] is True
    assert done["current_steps"] == []
    assert [(h["step_name"], h["status"], h["attempt"]) for h in done["steps_history"]] == [
        ("a", "completed", 1),
        ("b", "completed", 1),
    ]
    assert done["tracking_urls"]["websocket"] == f"/ws/{execution_id}"

    steps = await (await api.client.get(f"/executions/{execution_id}/steps", headers=api.headers_a)).json()
    assert [(s["name"], s["status"], s["result"]["x"]) for s in steps["steps"]] == [
        ("a", "completed", "d-1"),
        ("b", "completed", "d-1"),
    ]
    job = await job_once(api, execution_id, "completed")
    assert job["type"] == "workflow" and job["priority"] == 9

    replay = await start(api, "flow", status=200, data={"doc": "d-1"}, idempotency_key="once")
    assert replay["execution_id"] == execution_id and replay["status"] == "completed"
    await put(api, "other", [{"name": "a", "type": t}])
    conflict = await api.client.post(
        "/workflows/other/execute-async", json={"data": {}, "idempotency_key": "once"}, headers=api.headers_a
    )
    assert conflict.status == 409 and (await conflict.json())["execution_id"] == execution_id

    for path in (f"/executions/{execution_id}/status", f"/executions/{execution_id}/steps"):
        hidden = await api.client.get(path, headers=api.headers_b)
        assert hidden.status == 404 and (await hidden.json())["error"] == "execution_not_found"
    assert (await api.client.get("/executions/no-such-execution/status", headers=api.headers_a)).status == 404
    assert (await api.client.get(f"/executions/{execution_id}/status", headers=admin(api))).status == 403
    assert (await api.client.get(f"/executions/{execution_id}/status")).status == 401


async def test_execute_refuses_bad_requests(api: Api) -> None:
    await put(api, "wf", [external("a")])

    async def execute(body: Any, path: str = "/workflows/wf/execute-async", **kw: Any) -> tuple[int, Any]:
        response = await api.client.post(path, json=body, headers=api.headers_a, **kw)
        return response.status, await response.json()

    assert (await execute({"data": {}}, path="/workflows/nope/execute-async"))[0] == 404
    for bad in ({}, {"data": []}, {"data": {}, "priority": 10}, {"data": {}, "mode": "fast"}, {"data": {}, "x": 1}):
        status, body = await execute(bad)
        assert (status, body["error"]) == (422, "validation_error"), bad
    bad_json = await api.client.post("/workflows/wf/execute-async", data=b"[", headers=api.headers_a)
    assert bad_json.status == 400
    huge = await api.client.post(
        "/workflows/wf/execute-async", data=json_stream({"data": {"blob": "x" * (1024 * 1024)}}), headers=api.headers_a
    )
    assert huge.status == 413
    no_tenant = await api.client.post("/workflows/wf/execute-async", json={"data": {}}, headers=admin(api))
    assert no_tenant.status == 403


async def test_the_older_execute_async_route_answers_the_same(api: Api) -> None:
    await put(api, "legacy", [external("a")])
    response = await api.client.post(
        "/execute-async/", json={"workflow_id": "legacy", "mode": "automatic", "data": {"n": 1}}, headers=api.headers_a
    )
    assert response.status == 202
    body = await response.json()
    assert set(body) == ACCEPTED_KEYS and body["workflow_id"] == "legacy"
    assert (await status_of(api, body["execution_id"]))["context"]["dynamic_properties"] == {"n": 1}
    missing = await api.client.post("/execute-async/", json={"workflow_id": "ghost", "data": {}}, headers=api.headers_a)
    assert missing.status == 404
    no_id = await api.client.post("/execute-async/", json={"data": {}}, headers=api.headers_a)
    assert no_id.status == 422


async def test_executions_are_listed_newest_first_with_filters_and_paging(api: Api) -> None:
    await put(api, "one", [external("a")])
    await put(api, "two", [external("a")])
    ids = [(await start(api, "one"))["execution_id"] for _ in range(3)]
    two = (await start(api, "two"))["execution_id"]
    await api.client.post(f"/executions/{ids[0]}/cancel", headers=api.headers_a)

    async def listing(query: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        response = await api.client.get(f"/executions{query}", headers=headers or api.headers_a)
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body

    everything = await listing("")
    assert [e["execution_id"] for e in everything["executions"]] == [two, *reversed(ids)]
    assert everything["total"] == 4 and everything["executions"][0]["tracking_url"] == f"/executions/{two}/status"
    ones = await listing("?workflow_id=one")
    assert [e["execution_id"] for e in ones["executions"]] == list(reversed(ids))
    page = await listing("?workflow_id=one&offset=1&limit=1")
    assert [e["execution_id"] for e in page["executions"]] == [ids[1]] and page["total"] == 3
    cancelled = await listing("?status=cancelled")
    assert [e["execution_id"] for e in cancelled["executions"]] == [ids[0]]
    assert (await listing("?limit=2"))["total"] == 4 and len((await listing("?limit=2"))["executions"]) == 2
    assert (await listing("", headers=api.headers_b))["total"] == 0
    for bad in ("?status=bogus", "?limit=0", "?offset=-1", "?colour=red"):
        assert (await api.client.get(f"/executions{bad}", headers=api.headers_a)).status == 422, bad


async def test_manual_mode_pauses_until_continued_over_http(api: Api, worker: Worker) -> None:
    t = api.job_type
    await put(api, "manual", [{"name": "a", "type": t, "payload": {"name": "a"}}, {"name": "b", "type": t}])
    accepted = await start(api, "manual", mode="manual")
    execution_id = accepted["execution_id"]
    paused = await status_of(api, execution_id)
    assert paused["status"] == "paused" and paused["mode"] == "manual"
    assert paused["current_steps"] == [{"name": "a", "order": 1}]

    go = await api.client.post(f"/executions/{execution_id}/continue", headers=api.headers_a)
    assert go.status == 200 and set(await go.json()) == STATUS_KEYS
    second = await until_status(api, execution_id, "paused")
    assert second["current_steps"] == [{"name": "b", "order": 2}]
    assert (await api.client.post(f"/executions/{execution_id}/continue", headers=api.headers_a)).status == 200
    await until_status(api, execution_id, "completed")

    late = await api.client.post(f"/executions/{execution_id}/continue", headers=api.headers_a)
    assert late.status == 409
    body = await late.json()
    assert body["error"] == "not_allowed" and body["status"] == "completed" and body["execution_id"] == execution_id
    assert (await api.client.post(f"/executions/{execution_id}/continue", headers=api.headers_b)).status == 404


async def test_cancel_and_retry_over_http(api: Api) -> None:
    await put(api, "ext", [external("a"), external("b")])
    cancelled_id = (await start(api, "ext"))["execution_id"]
    cancel = await api.client.post(f"/executions/{cancelled_id}/cancel", headers=api.headers_a)
    assert cancel.status == 200
    view = await cancel.json()
    assert view["status"] == "cancelled" and view["progress"]["skipped_steps"] == 1
    again = await api.client.post(f"/executions/{cancelled_id}/cancel", headers=api.headers_a)
    assert again.status == 409 and (await again.json())["status"] == "cancelled"
    assert (await api.client.post(f"/executions/{cancelled_id}/retry", headers=api.headers_a)).status == 409

    failed_id = (await start(api, "ext"))["execution_id"]
    refused = await api.client.post(
        f"/executions/{failed_id}/steps/a/complete", json={"success": False, "message": "no"}, headers=api.headers_a
    )
    assert refused.status == 200 and (await refused.json())["execution_status"] == "failed"
    retry = await api.client.post(f"/executions/{failed_id}/retry", headers=api.headers_a)
    assert retry.status == 200 and (await retry.json())["status"] == "running"
    for step in ("a", "b"):
        done = await api.client.post(
            f"/executions/{failed_id}/steps/{step}/complete", json={"success": True}, headers=api.headers_a
        )
        assert done.status == 200
    finished = await status_of(api, failed_id)
    assert finished["status"] == "completed"
    assert [(h["step_name"], h["attempt"]) for h in finished["steps_history"]] == [("a", 2), ("b", 1)]
    await job_once(api, failed_id, "completed")


async def test_external_steps_report_with_the_tenant_key_or_the_steps_service_token(api: Api) -> None:
    await put(
        api,
        "review",
        [
            external("review", config={"service": REVIEWERS}),
            external("label", type=api.job_type),  # no config.service: its type's service may report
            external("sign"),  # names no service: only the tenant's key
        ],
    )
    execution_id = (await start(api, "review"))["execution_id"]
    base = f"/executions/{execution_id}/steps"
    progress = {
        "percentage": 65,
        "message": "reading",
        "current_task": "page 8",
        "estimated_remaining_seconds": 45,
        "custom_data": {"pages": 8},
    }

    reported = await api.client.post(f"{base}/review/progress", json=progress, headers=token(api, "rev"))
    assert reported.status == 200, await reported.text()
    assert await reported.json() == {
        "execution_id": execution_id,
        "step": "review",
        "step_status": "running",
        "attempt": 1,
        "execution_status": "running",
    }
    steps = await (await api.client.get(f"/executions/{execution_id}/steps", headers=api.headers_a)).json()
    assert steps["steps"][0]["progress"] == progress
    by_tenant = await api.client.post(f"{base}/review/progress", json={"percentage": 70}, headers=api.headers_a)
    assert by_tenant.status == 200

    for wrong in (token(api, "other"), token(api, "svc")):
        assert (await api.client.post(f"{base}/review/progress", json=progress, headers=wrong)).status == 403
    assert (await api.client.post(f"{base}/review/progress", json=progress, headers=admin(api))).status == 403
    assert (await api.client.post(f"{base}/review/progress", json=progress)).status == 401
    assert (await api.client.post(f"{base}/review/progress", json=progress, headers=api.headers_b)).status == 404
    assert (await api.client.post(f"{base}/ghost/progress", json=progress, headers=api.headers_a)).status == 404
    unknown = "/executions/no-such-execution/steps/review/progress"
    assert (await api.client.post(unknown, json=progress, headers=token(api, "rev"))).status == 404
    not_running = await api.client.post(f"{base}/label/progress", json=progress, headers=api.headers_a)
    assert not_running.status == 409 and (await not_running.json())["status"] == "running"
    for bad in ({"percentage": 101}, {"percentage": "5"}, {"percentage": 5, "colour": 1}, {}):
        assert (await api.client.post(f"{base}/review/progress", json=bad, headers=api.headers_a)).status == 422
    assert (await api.client.post(f"{base}/review/progress", data=b"{", headers=api.headers_a)).status == 400

    completed = await api.client.post(
        f"{base}/review/complete",
        json={"success": True, "data": {"ok": True, "context": {"reviewed": True}}, "message": "fine"},
        headers=token(api, "rev"),
    )
    assert completed.status == 200 and (await completed.json())["step_status"] == "completed"
    twice = await api.client.post(f"{base}/review/complete", json={"success": True}, headers=token(api, "rev"))
    assert twice.status == 409
    label = await api.client.post(f"{base}/label/complete", json={"success": True}, headers=token(api, "svc"))
    assert label.status == 200, await label.text()
    assert (
        await api.client.post(f"{base}/sign/complete", json={"success": True}, headers=token(api, "rev"))
    ).status == (403)
    sign = await api.client.post(f"{base}/sign/complete", json={"success": True}, headers=api.headers_a)
    assert (await sign.json())["execution_status"] == "completed"
    done = await status_of(api, execution_id)
    assert done["context"]["dynamic_properties"] == {"reviewed": True}


async def test_a_worker_step_takes_no_report_over_http(api: Api) -> None:
    # No worker runs: the step stays running, and still only its task's events may report for it.
    await put(api, "worker-step", [{"name": "a", "type": api.job_type}])
    execution_id = (await start(api, "worker-step"))["execution_id"]
    response = await api.client.post(
        f"/executions/{execution_id}/steps/a/complete", json={"success": True}, headers=api.headers_a
    )
    assert response.status == 409 and "run by a worker" in (await response.json())["detail"]


async def test_cancelling_the_executions_job_cancels_the_execution(api: Api) -> None:
    await put(api, "stop-me", [external("a"), external("b")])
    by_http = (await start(api, "stop-me"))["execution_id"]
    cancel = await api.client.post(f"/jobs/{by_http}/cancel", headers=api.headers_a)
    assert cancel.status == 200 and await cancel.json() == {"job_id": by_http, "status": "cancelled"}
    assert (await status_of(api, by_http))["status"] == "cancelled"
    late = await api.client.post(
        f"/executions/{by_http}/steps/a/complete", json={"success": True}, headers=api.headers_a
    )
    assert late.status == 409
    assert (await api.client.post(f"/jobs/{by_http}/cancel", headers=api.headers_a)).status == 409

    by_socket = (await start(api, "stop-me"))["execution_id"]
    ws = await api.client.ws_connect("/ws/task_updates", headers=api.headers_a)
    try:
        assert (await ws.receive_json(timeout=5))["type"] == "connection_established"
        await ws.send_json({"type": "cancel_job", "job_id": by_socket})
        while (message := await ws.receive_json(timeout=5))["type"] != "cancel_result":
            pass
        assert message["status"] == "cancelled" and message["job_status"] == "cancelled"
    finally:
        await ws.close()
    assert (await status_of(api, by_socket))["status"] == "cancelled"
    assert (await job_once(api, by_socket, "cancelled"))["type"] == "workflow"


async def test_a_service_token_finds_the_execution_by_its_owner_index(api: Api, redis_client: aioredis.Redis) -> None:
    await put(api, "owned", [external("a")])
    execution_id = (await start(api, "owned"))["execution_id"]
    store = ExecutionStore(redis_client)
    assert await store.owner(execution_id) == api.tenant_a
    assert await store.owner("no-such-execution") is None


async def test_an_execution_under_way_outlives_its_deleted_workflow(api: Api) -> None:
    await put(api, "short-lived", [external("a")])
    execution_id = (await start(api, "short-lived"))["execution_id"]
    assert (await api.client.delete("/workflows/short-lived", headers=api.headers_a)).status == 204
    done = await api.client.post(
        f"/executions/{execution_id}/steps/a/complete", json={"success": True}, headers=api.headers_a
    )
    assert (await done.json())["execution_status"] == "completed"
    assert (await status_of(api, execution_id))["workflow_name"] == "wf short-lived"
    assert (
        await api.client.post("/workflows/short-lived/execute-async", json={"data": {}}, headers=api.headers_a)
    ).status == 404
