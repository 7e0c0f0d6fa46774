"""POST /jobs with a service token acting for a tenant (a worker's ctx.submit_job), and what the token
still cannot do: on the real RabbitMQ and Redis (tests/api_server.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.api_server import Api, serve_api


@pytest.fixture
async def api(rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[Api]:
    async with serve_api(
        rabbitmq_url, redis_url, redis_client, unique, service_tokens={f"token-{unique}": f"svc-{unique}"}
    ) as api:
        yield api


def token(api: Api, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer token-{api.service.removeprefix('svc-')}", **headers}


async def create(api: Api, headers: dict[str, str], **body: Any) -> tuple[int, dict[str, Any]]:
    answer = await api.client.post("/jobs", json={"type": api.job_type, "payload": {}, **body}, headers=headers)
    found: dict[str, Any] = await answer.json()
    return answer.status, found


async def parent_job(api: Api) -> str:
    """A job of tenant A that stays queued (no worker serves the test's type): a running parent."""
    status, body = await create(api, api.headers_a)
    assert status == 202, body
    job_id: str = body["job_id"]
    return job_id


async def test_a_service_token_creates_a_job_for_a_running_job_of_the_named_tenant(api: Api) -> None:
    parent = await parent_job(api)
    headers = token(api, **{"X-Baton-Tenant": api.tenant_a, "X-Global-Task-Id": parent, "X-Task-Id": "task-1"})
    status, body = await create(api, headers, context={"request_id": "r-1"}, idempotency_key="task-1:1")
    assert status == 202, body

    answer = await api.client.get(f"/jobs/{body['job_id']}", headers=api.headers_a)
    record = await answer.json()
    assert (answer.status, record["tenant_id"]) == (200, api.tenant_a)
    assert record["parent"] == {"job_id": parent, "task_id": "task-1", "service": api.service}
    assert record["context"] == {"request_id": "r-1"}
    assert (await api.client.get(f"/jobs/{body['job_id']}", headers=api.headers_b)).status == 404
    _, envelope = (await api.queued_envelopes())[-1]
    assert envelope.global_task_id == body["job_id"]
    assert envelope.metadata.source == "system" and envelope.metadata.parent_task_id == "task-1"
    assert envelope.metadata.model_extra == {"parent_job_id": parent, "parent_service": api.service}

    # The same call again (a retried parent) gets the same job back.
    again_status, again = await create(api, headers, context={"request_id": "r-1"}, idempotency_key="task-1:1")
    assert (again_status, again["job_id"], again["created"]) == (202, body["job_id"], False)
    # A client's own job names no parent.
    own = await api.client.get(f"/jobs/{parent}", headers=api.headers_a)
    assert (await own.json())["parent"] is None


async def test_a_service_token_without_a_well_formed_tenant_or_parent_is_refused(api: Api) -> None:
    parent = await parent_job(api)
    cases = [
        ({"X-Global-Task-Id": parent}, 400, "tenant_required"),
        ({"X-Baton-Tenant": "", "X-Global-Task-Id": parent}, 400, "tenant_required"),
        ({"X-Baton-Tenant": "not a tenant!", "X-Global-Task-Id": parent}, 400, "invalid_tenant"),
        ({"X-Baton-Tenant": api.tenant_a}, 400, "parent_required"),
        # Not a job of this tenant, or none at all: one answer, which tells nothing about other tenants.
        ({"X-Baton-Tenant": api.tenant_b, "X-Global-Task-Id": parent}, 403, "forbidden"),
        ({"X-Baton-Tenant": api.tenant_a, "X-Global-Task-Id": "no-such-job"}, 403, "forbidden"),
    ]
    for headers, status, error in cases:
        answer_status, body = await create(api, token(api, **headers))
        assert (answer_status, body["error"]) == (status, error), headers
    bad_token = {"Authorization": "Bearer not-a-token", "X-Baton-Tenant": api.tenant_a, "X-Global-Task-Id": parent}
    assert (await create(api, bad_token))[0] == 401

    cancelled = await api.client.post(f"/jobs/{parent}/cancel", headers=api.headers_a)
    assert cancelled.status == 200
    ended_status, ended = await create(api, token(api, **{"X-Baton-Tenant": api.tenant_a, "X-Global-Task-Id": parent}))
    assert (ended_status, ended["error"]) == (403, "forbidden")  # a parent that ended makes no more jobs


async def test_the_tenant_header_does_not_let_other_keys_act_for_another_tenant(api: Api) -> None:
    parent = await parent_job(api)
    as_b = {**api.headers_a, "X-Baton-Tenant": api.tenant_b, "X-Global-Task-Id": parent}
    assert (await create(api, as_b))[0] == 403
    as_self_status, as_self = await create(api, {**api.headers_a, "X-Baton-Tenant": api.tenant_a})
    assert as_self_status == 202 and as_self["job_id"]
    admin = {"Authorization": f"Bearer admin-{api.service.removeprefix('svc-')}", "X-Baton-Tenant": api.tenant_a}
    assert (await create(api, {**admin, "X-Global-Task-Id": parent}))[0] == 403


async def test_the_service_token_still_cannot_read_list_or_cancel_jobs(api: Api) -> None:
    parent = await parent_job(api)
    headers = token(api, **{"X-Baton-Tenant": api.tenant_a, "X-Global-Task-Id": parent})
    client = api.client
    answers = [
        await client.get(f"/jobs/{parent}", headers=headers),
        await client.get(f"/jobs/{parent}/result", headers=headers),
        await client.get("/jobs", headers=headers),
        await client.post(f"/jobs/{parent}/cancel", headers=headers),
        await client.post("/jobs/batch", json={"jobs": [{"type": api.job_type}]}, headers=headers),
        await client.post("/jobs/agent/a-1/execute", json={"input": "hi"}, headers=headers),
        await client.get("/workflows", headers=headers),
        await client.get(f"/dead-letters/{api.service}", headers=headers),
    ]
    assert [answer.status for answer in answers] == [403] * len(answers)
    record = await (await client.get(f"/jobs/{parent}", headers=api.headers_a)).json()
    assert record["status"] == "queued"  # nothing the token sent touched it
