"""GET /jobs (newest first, filters, time window, paging, expired records) and POST /jobs/{id}/retry,
against the real RabbitMQ and Redis, with a real worker where a job must run."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest
import redis.asyncio as aioredis

from orchestrator.rates import Rate
from orchestrator.settings import QuotaSettings
from orchestrator.store import keys
from tests.api_server import Api, serve_api
from tests.polling import eventually
from tests.redis_keys import keys_matching
from tests.workers.helpers import running
from workers import RetryPolicy, TaskContext, Worker

Runs = Counter[str]


@pytest.fixture
async def api(rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[Api]:
    # The folder's api, and the clean-up of the workflow execution one test starts.
    async with serve_api(rabbitmq_url, redis_url, redis_client, unique) as api:
        yield api
    # The execution owner index is keyed by execution, not tenant: the tenants' cleanup does not see it.
    owned = [
        key
        for key in await keys_matching(redis_client, f"{keys.PREFIX}:execution_owners:*")
        if (await redis_client.get(key) or b"").decode() in {api.tenant_a, api.tenant_b}
    ]
    if owned:
        await redis_client.delete(*owned)


@pytest.fixture
async def runs(api: Api, rabbitmq_url: str, redis_url: str) -> AsyncIterator[Runs]:
    """A worker of the test's service: a payload's first run fails (`fail_first`) or sleeps (`sleep_first`
    seconds); every later run returns."""
    counted: Runs = Counter()
    worker = Worker(api.service, concurrency=8)

    @worker.handler(api.job_type, retry=RetryPolicy(max_retries=0))
    async def run(payload: dict[str, Any], ctx: TaskContext) -> Any:
        name = str(payload.get("name"))
        counted[name] += 1
        if counted[name] == 1:
            if payload.get("fail_first"):
                raise ValueError("told to fail the first time")
            await asyncio.sleep(payload.get("sleep_first", 0))
        return {"name": name, "run": counted[name]}

    async with running(worker, rabbitmq_url, redis_url=redis_url):
        yield counted


async def create(api: Api, headers: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
    body.setdefault("type", api.job_type)
    response = await api.client.post("/jobs", json=body, headers=headers or api.headers_a)
    assert response.status in (200, 202), await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def listing(api: Api, query: str = "", status: int = 200) -> dict[str, Any]:
    response = await api.client.get(f"/jobs?{query}", headers=api.headers_a)
    assert response.status == status, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


def ids(page: dict[str, Any]) -> list[str]:
    return [job["job_id"] for job in page["jobs"]]


async def job(api: Api, job_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = await api.client.get(f"/jobs/{job_id}", headers=headers or api.headers_a)
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def until_status(api: Api, job_id: str, wanted: str, within: float = 15.0) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def reached() -> bool:
        found.update(await job(api, job_id))
        return found["status"] == wanted

    await eventually(reached, within=within, what=f"job {job_id} {wanted}")
    return found


async def test_listing_is_newest_first_with_every_filter_paging_and_total(api: Api) -> None:
    other_type = f"{api.job_type}_b"
    await api.announce(other_type)
    made = []
    for n in range(6):
        fields: dict[str, Any] = {"payload": {"n": n}}
        if n % 2:
            fields["session_id"] = "odd"
        if n == 5:
            fields["type"] = other_type
        made.append((await create(api, **fields))["job_id"])
        await asyncio.sleep(0.005)  # distinct creation milliseconds
    await create(api, headers=api.headers_b)  # another tenant's job is never listed
    cancelled = await api.client.post(f"/jobs/{made[2]}/cancel", headers=api.headers_a)
    assert cancelled.status == 200

    newest_first = list(reversed(made))
    everything = await listing(api)
    assert ids(everything) == newest_first and everything["total"] == 6
    page = await listing(api, "offset=1&limit=2")
    assert ids(page) == newest_first[1:3] and page["total"] == 6 and (page["offset"], page["limit"]) == (1, 2)
    assert ids(await listing(api, "status=cancelled")) == [made[2]]
    queued = await listing(api, "status=queued")
    assert ids(queued) == [j for j in newest_first if j != made[2]] and queued["total"] == 5
    assert ids(await listing(api, f"type={other_type}")) == [made[5]]
    assert ids(await listing(api, "session_id=odd")) == [made[5], made[3], made[1]]
    combined = await listing(api, f"session_id=odd&type={api.job_type}&limit=1")
    assert ids(combined) == [made[3]] and combined["total"] == 2


async def test_the_time_window_keeps_jobs_created_at_or_after_and_before(api: Api) -> None:
    made = []
    for n in range(4):
        made.append(await create(api, payload={"n": n}))
        await asyncio.sleep(0.01)
    created = [datetime.fromisoformat(j["created_at"]) for j in made]
    job_ids = [j["job_id"] for j in made]

    def at(moment: datetime) -> str:
        return quote(moment.isoformat())

    after = await listing(api, f"created_after={at(created[1])}")
    assert ids(after) == [job_ids[3], job_ids[2], job_ids[1]] and after["total"] == 3
    before = await listing(api, f"created_before={at(created[2])}")
    assert ids(before) == [job_ids[1], job_ids[0]] and before["total"] == 2
    both = await listing(api, f"created_after={at(created[1])}&created_before={at(created[3])}&limit=1")
    assert ids(both) == [job_ids[2]] and both["total"] == 2
    # With another filter (an intersection of indexes) the window applies the same way.
    assert ids(await listing(api, f"status=queued&created_before={at(created[1])}")) == [job_ids[0]]
    # Z, and a time without a zone (UTC), mean the same instant.
    utc_z = created[2].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert ids(await listing(api, f"created_after={quote(utc_z)}")) == [job_ids[3], job_ids[2]]
    # An unescaped "+" of a zone reads as a space in a query string: it is taken as the "+" it was.
    plus_two = created[2].astimezone(timezone(timedelta(hours=2))).isoformat()
    assert ids(await listing(api, f"created_after={plus_two}")) == [job_ids[3], job_ids[2]]
    naive = created[2].astimezone(UTC).replace(tzinfo=None).isoformat()
    assert ids(await listing(api, f"created_after={quote(naive)}")) == [job_ids[3], job_ids[2]]
    late = created[3] + timedelta(hours=1)
    assert await listing(api, f"created_after={at(late)}") == {"jobs": [], "total": 0, "offset": 0, "limit": 50}


async def test_a_bad_time_window_is_refused(api: Api) -> None:
    assert (await listing(api, "created_after=yesterday", status=422))["error"] == "validation_error"
    reversed_window = "created_after=2026-01-02T00:00:00Z&created_before=2026-01-01T00:00:00Z"
    refused = await listing(api, reversed_window, status=422)
    assert "created_after is later than created_before" in str(refused["detail"])


async def test_expired_records_leave_the_index_and_the_total(api: Api, redis_client: aioredis.Redis) -> None:
    made = [(await create(api, payload={"n": n}))["job_id"] for n in range(3)]
    # What the TTL does to a record: its hash goes, its index entries stay until a listing meets them.
    await redis_client.delete(keys.job(api.tenant_a, made[1]))
    page = await listing(api)
    assert ids(page) == [made[2], made[0]] and page["total"] == 2
    for index in (keys.tenant_jobs(api.tenant_a), keys.tenant_jobs_by_status(api.tenant_a, "queued")):
        assert await redis_client.zscore(index, made[1]) is None
    assert (await listing(api, "status=queued"))["total"] == 2


async def test_a_failed_job_runs_again_as_a_new_job_that_names_it(api: Api, runs: Runs) -> None:
    first = await create(
        api, payload={"name": "f", "fail_first": True}, priority="high", session_id="s-1", context={"user_id": "u"}
    )
    await until_status(api, first["job_id"], "failed")
    response = await api.client.post(f"/jobs/{first['job_id']}/retry", headers=api.headers_a)
    assert response.status == 202, await response.text()
    accepted = await response.json()
    new_id = accepted["job_id"]
    assert new_id != first["job_id"]
    assert accepted["status"] == "queued" and accepted["created"] is True
    assert accepted["tracking_url"] == f"/jobs/{new_id}" and accepted["websocket_url"] == f"/ws/jobs/{new_id}"
    done = await until_status(api, new_id, "completed")
    assert done["retry_of"] == first["job_id"]
    assert done["result"] == {"name": "f", "run": 2} and runs["f"] == 2
    assert (done["type"], done["priority"], done["session_id"]) == (api.job_type, 9, "s-1")
    assert done["context"]["user_id"] == "u"
    old = await job(api, first["job_id"])
    assert old["status"] == "failed" and old["retry_of"] is None


async def test_timed_out_and_cancelled_jobs_run_again(api: Api, runs: Runs) -> None:
    slow = await create(api, payload={"name": "t", "sleep_first": 3}, timeout_ms=300)
    await until_status(api, slow["job_id"], "timed_out")
    retried = await api.client.post(f"/jobs/{slow['job_id']}/retry", headers=api.headers_a)
    assert retried.status == 202, await retried.text()
    again = await until_status(api, (await retried.json())["job_id"], "completed")
    assert again["retry_of"] == slow["job_id"] and again["result"]["run"] == 2

    held = await create(api, payload={"name": "c", "sleep_first": 30})
    await until_status(api, held["job_id"], "running")
    assert (await api.client.post(f"/jobs/{held['job_id']}/cancel", headers=api.headers_a)).status == 200
    retried = await api.client.post(f"/jobs/{held['job_id']}/retry", headers=api.headers_a)
    assert retried.status == 202, await retried.text()
    again = await until_status(api, (await retried.json())["job_id"], "completed")
    assert again["retry_of"] == held["job_id"]


async def test_open_and_completed_jobs_are_not_retried_and_others_jobs_not_found(api: Api, runs: Runs) -> None:
    done = await create(api, payload={"name": "ok"}, wait=10)
    assert done["status"] == "completed"
    running_job = await create(api, payload={"name": "r", "sleep_first": 30})
    await until_status(api, running_job["job_id"], "running")
    for job_id, status in ((done["job_id"], "completed"), (running_job["job_id"], "running")):
        refused = await api.client.post(f"/jobs/{job_id}/retry", headers=api.headers_a)
        assert refused.status == 409
        body = await refused.json()
        assert (body["error"], body["status"], body["job_id"]) == ("not_retryable", status, job_id)
    await api.client.post(f"/jobs/{running_job['job_id']}/cancel", headers=api.headers_a)

    other = await api.client.post(f"/jobs/{done['job_id']}/retry", headers=api.headers_b)
    assert other.status == 404 and (await other.json())["error"] == "job_not_found"
    assert (await api.client.post("/jobs/no-such-job/retry", headers=api.headers_a)).status == 404
    assert (await api.client.post(f"/jobs/{done['job_id']}/retry")).status == 401


async def test_a_queued_job_is_not_retried(api: Api) -> None:
    queued = await create(api, payload={"n": 1})
    refused = await api.client.post(f"/jobs/{queued['job_id']}/retry", headers=api.headers_a)
    assert refused.status == 409 and (await refused.json())["status"] == "queued"
    listed = await listing(api)
    assert listed["total"] == 1  # nothing was created


async def test_a_workflow_execution_points_to_its_own_retry(api: Api) -> None:
    step = {"name": "one", "type": api.job_type}
    put = await api.client.put("/workflows/wf-retry", json={"name": "wf", "steps": [step]}, headers=api.headers_a)
    assert put.status in (200, 201), await put.text()
    started = await api.client.post("/workflows/wf-retry/execute-async", json={"data": {}}, headers=api.headers_a)
    assert started.status == 202, await started.text()
    execution_id = (await started.json())["execution_id"]
    # Its job keeps no task envelope of its own (its steps have theirs): no payload to show.
    detailed = await api.client.get(f"/jobs/{execution_id}", params={"include": "payload"}, headers=api.headers_a)
    assert (detailed.status, (await detailed.json())["payload"]) == (200, None)
    cancelled = await api.client.post(f"/executions/{execution_id}/cancel", headers=api.headers_a)
    assert cancelled.status == 200, await cancelled.text()
    refused = await api.client.post(f"/jobs/{execution_id}/retry", headers=api.headers_a)
    assert refused.status == 409
    body = await refused.json()
    assert body["error"] == "not_retryable" and body["retry_url"] == f"/executions/{execution_id}/retry"


async def test_a_retry_spends_a_token_of_the_quota_and_a_refused_one_none(
    rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str
) -> None:
    # Tenant a may make two jobs, with next to no refill within the test.
    def quotas(tenant_a: str, tenant_b: str) -> QuotaSettings:
        return QuotaSettings(jobs=Rate(1000.0, 1000), per_tenant={tenant_a: Rate(0.001, 2)})

    async with serve_api(rabbitmq_url, redis_url, redis_client, f"{unique}q", quotas=quotas) as api:
        queued = await create(api, payload={"n": 1})
        for _ in range(3):  # refused as not retryable: no token spent
            assert (await api.client.post(f"/jobs/{queued['job_id']}/retry", headers=api.headers_a)).status == 409
        assert (await api.client.post(f"/jobs/{queued['job_id']}/cancel", headers=api.headers_a)).status == 200
        retried = await api.client.post(f"/jobs/{queued['job_id']}/retry", headers=api.headers_a)
        assert retried.status == 202, await retried.text()  # the second token
        again = await api.client.post(f"/jobs/{queued['job_id']}/retry", headers=api.headers_a)
        assert again.status == 429 and (await again.json())["error"] == "quota_exceeded"
