"""The result cache and coalescing on the real RabbitMQ and Redis, with a real worker that counts its runs:
hits, misses, expiry, tenants kept apart, `cache: false`, DELETE /cache/{type}, identical jobs run once
(over two replicas), a failure seen by every attached request, and bad `cache` values."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from orchestrator.app import METRICS
from orchestrator.store import keys
from tests.api_server import Api, serve_api, serve_replica
from tests.workers.helpers import running
from workers import RetryPolicy, TaskContext, Worker

Runs = Counter[str]


def second_type(api: Api) -> str:
    return f"{api.job_type}_b"


@pytest.fixture
async def api(rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[Api]:
    """The folder's api, consuming its own events: a result is stored by the replica that applies the job's
    end, and on the shared events queue that may be another test run's orchestrator of older code."""
    async with serve_api(rabbitmq_url, redis_url, redis_client, unique) as api:
        yield api
    # After the app stopped: the worker's goodbye heartbeat, applied late, would route the type again.
    await redis_client.hdel(keys.ROUTES, second_type(api))
    await redis_client.hdel(keys.CACHE_DEFAULTS, second_type(api))


@pytest.fixture
async def runs(api: Api, rabbitmq_url: str, redis_url: str) -> AsyncIterator[Runs]:
    """A worker of the test's service serving its two job types, the first with a 60 s cache TTL by default;
    counts each payload's runs. A payload may say `sleep` (seconds) and `fail` (raise, with no retry).

    The announcement is also recorded here: the worker's own heartbeats may be taken by another test
    run's orchestrator on the shared events queue."""
    counted: Runs = Counter()
    worker = Worker(api.service, concurrency=32)

    async def run(payload: dict[str, Any], ctx: TaskContext) -> Any:
        counted[json.dumps(payload, sort_keys=True)] += 1
        await asyncio.sleep(payload.get("sleep", 0))
        if payload.get("fail"):
            raise ValueError("told to fail")
        return {"echo": payload, "tenant": ctx.tenant_id}

    no_retry = RetryPolicy(max_retries=0)
    worker.handler(api.job_type, retry=no_retry, cache_ttl=60)(run)
    worker.handler(second_type(api), retry=no_retry)(run)
    await api.announce(second_type(api), cache_ttls={api.job_type: 60})
    async with running(worker, rabbitmq_url, redis_url=redis_url):
        yield counted


async def post(api: Api, body: dict[str, Any], *, tenant: str = "a", status: int | None = None) -> dict[str, Any]:
    headers = api.headers_a if tenant == "a" else api.headers_b
    response = await api.client.post("/jobs", json={"type": api.job_type, **body}, headers=headers)
    if status is not None:
        assert response.status == status, await response.text()
    answer: dict[str, Any] = await response.json()
    answer["http_status"] = response.status
    return answer


def cached(payload: dict[str, Any], ttl: int = 60, **fields: Any) -> dict[str, Any]:
    return {"payload": payload, "cache": {"ttl_seconds": ttl}, **fields}


def counter_value(api: Api, name: str, job_type: str) -> float:
    value = api.app[METRICS].registry.get_sample_value(name, {"type": job_type})
    return value or 0.0


async def test_a_completed_result_answers_the_next_identical_request_at_once(api: Api, runs: Runs) -> None:
    first = await post(api, cached({"text": "hello"}, wait=10), status=200)
    assert first["status"] == "completed" and first["from_cache"] is False
    assert first["result"] == {"echo": {"text": "hello"}, "tenant": api.tenant_a}

    again = await post(api, cached({"text": "hello"}), status=200)
    assert again["from_cache"] is True and again["status"] == "completed"
    assert again["job_id"] == first["job_id"]  # the job that made it
    assert again["result"] == first["result"]
    # Another payload is a miss.
    other = await post(api, cached({"text": "other"}), status=202)
    assert other["from_cache"] is False and other["job_id"] != first["job_id"]
    assert runs[json.dumps({"text": "hello"})] == 1
    assert counter_value(api, "baton_cache_hits_total", api.job_type) == 1
    assert counter_value(api, "baton_cache_misses_total", api.job_type) == 2

    metrics = await (await api.client.get("/metrics")).text()
    assert f'baton_cache_hits_total{{type="{api.job_type}"}} 1.0' in metrics
    assert "baton_cache_entries " in metrics


async def test_an_entry_expires_after_its_ttl(api: Api, runs: Runs) -> None:
    first = await post(api, cached({"text": "brief"}, ttl=1, wait=10), status=200)
    assert (await post(api, cached({"text": "brief"}, ttl=1), status=200))["from_cache"] is True
    await asyncio.sleep(1.3)
    later = await post(api, cached({"text": "brief"}, ttl=1, wait=10), status=200)
    assert later["from_cache"] is False and later["job_id"] != first["job_id"]
    assert runs[json.dumps({"text": "brief"})] == 2


async def test_entries_never_cross_tenants(api: Api, runs: Runs) -> None:
    mine = await post(api, cached({"text": "private"}, wait=10), status=200)
    theirs = await post(api, cached({"text": "private"}, wait=10), tenant="b", status=200)
    assert theirs["from_cache"] is False and theirs["job_id"] != mine["job_id"]
    assert theirs["result"]["tenant"] == api.tenant_b
    assert runs[json.dumps({"text": "private"})] == 2


async def test_the_worker_declared_default_applies_and_false_skips_it(api: Api, runs: Runs) -> None:
    first = await post(api, {"payload": {"n": 1}, "wait": 10}, status=200)
    hit = await post(api, {"payload": {"n": 1}}, status=200)
    assert hit["from_cache"] is True and hit["job_id"] == first["job_id"]
    skipped = await post(api, {"payload": {"n": 1}, "cache": False, "wait": 10}, status=200)
    assert skipped["from_cache"] is False and skipped["job_id"] != first["job_id"]
    # The other type declares no TTL: off unless asked.
    response = await api.client.post(
        "/jobs", json={"type": second_type(api), "payload": {"n": 1}, "wait": 10}, headers=api.headers_a
    )
    assert (await response.json())["from_cache"] is False
    assert runs[json.dumps({"n": 1})] == 3


async def test_delete_clears_the_tenants_entries_of_one_type_only(api: Api, runs: Runs) -> None:
    for n in (1, 2):
        await post(api, cached({"n": n}, wait=10), status=200)
    await post(api, cached({"n": 1}, wait=10), tenant="b", status=200)
    other_type = await api.client.post(
        "/jobs", json={"type": second_type(api), **cached({"n": 1}, wait=10)}, headers=api.headers_a
    )
    assert other_type.status == 200

    cleared = await api.client.delete(f"/cache/{api.job_type}", headers=api.headers_a)
    assert cleared.status == 200
    assert await cleared.json() == {"type": api.job_type, "removed": 2}
    assert (await post(api, cached({"n": 1}), status=202))["from_cache"] is False
    assert (await post(api, cached({"n": 1}), tenant="b", status=200))["from_cache"] is True
    again = await api.client.post("/jobs", json={"type": second_type(api), **cached({"n": 1})}, headers=api.headers_a)
    assert (await again.json())["from_cache"] is True
    # Nothing left to clear; a bad type is refused.
    assert await (await api.client.delete(f"/cache/{api.job_type}_none", headers=api.headers_a)).json() == {
        "type": f"{api.job_type}_none",
        "removed": 0,
    }
    bad = await api.client.delete("/cache/no%20such", headers=api.headers_a)
    assert bad.status == 422 and (await bad.json())["error"] == "validation_error"
    assert (await api.client.delete(f"/cache/{api.job_type}")).status == 401


async def test_twenty_identical_requests_over_two_replicas_run_once_and_all_get_the_result(
    api: Api, runs: Runs
) -> None:
    payload = {"text": "once", "sleep": 1.0}
    async with serve_replica(api) as other:

        async def one(index: int) -> tuple[int, dict[str, Any]]:
            client = api.client if index % 2 else other
            body = {"type": api.job_type, **cached(payload, wait=20)}
            response = await client.post("/jobs", json=body, headers=api.headers_a)
            return response.status, await response.json()

        answers = await asyncio.gather(*(one(i) for i in range(20)))
    assert {status for status, _ in answers} == {200}
    assert len({body["job_id"] for _, body in answers}) == 1
    assert all(body["status"] == "completed" for _, body in answers)
    assert all(body["result"] == {"echo": payload, "tenant": api.tenant_a} for _, body in answers)
    assert sum(body["coalesced"] for _, body in answers) == 19
    assert runs[json.dumps(payload, sort_keys=True)] == 1


async def test_requests_attached_to_a_job_that_fails_see_its_failure_and_the_next_one_runs_anew(
    api: Api, runs: Runs
) -> None:
    payload = {"text": "doomed", "sleep": 0.8, "fail": True}
    first = await post(api, cached(payload), status=202)
    ws = await api.client.ws_connect(f"/ws/jobs/{first['job_id']}", headers=api.headers_a)
    try:
        attached = await post(api, cached(payload, wait=15), status=200)
        assert attached["job_id"] == first["job_id"] and attached["coalesced"] is True
        assert attached["status"] == "failed" and "told to fail" in json.dumps(attached["error"])
        # The socket watching the job sees it fail too (its state first, then the events).
        seen = [await ws.receive_json(timeout=10) for _ in range(2)]
        for _ in range(10):
            if seen[-1].get("event") == "task_failed":
                break
            seen.append(await ws.receive_json(timeout=10))
        assert seen[-1].get("event") == "task_failed", seen
    finally:
        await ws.close()
    after = await post(api, cached(payload, wait=15), status=200)
    assert after["job_id"] != first["job_id"] and after["coalesced"] is False and after["status"] == "failed"
    assert runs[json.dumps(payload, sort_keys=True)] == 2
    assert counter_value(api, "baton_cache_coalesced_total", api.job_type) == 1


async def test_an_idempotency_key_gets_its_own_job_even_when_a_result_is_cached(api: Api, runs: Runs) -> None:
    first = await post(api, cached({"n": 7}, wait=10), status=200)
    keyed = await post(api, cached({"n": 7}, idempotency_key="k1", wait=10), status=200)
    assert keyed["from_cache"] is False and keyed["created"] is True and keyed["job_id"] != first["job_id"]
    replay = await post(api, cached({"n": 7}, idempotency_key="k1"), status=200)
    assert replay["job_id"] == keyed["job_id"] and replay["created"] is False and replay["from_cache"] is False
    assert runs[json.dumps({"n": 7})] == 2


async def test_a_batch_uses_the_cache_per_item(api: Api, runs: Runs) -> None:
    await post(api, cached({"n": 1}, wait=10), status=200)
    items = [{"type": api.job_type, **cached({"n": n})} for n in (1, 2)]
    response = await api.client.post("/jobs/batch", json={"jobs": items}, headers=api.headers_a)
    assert response.status == 200
    hit, miss = (await response.json())["jobs"]
    assert hit["from_cache"] is True and hit["status"] == "completed"
    assert hit["result"] == {"echo": {"n": 1}, "tenant": api.tenant_a}
    assert "from_cache" not in miss and miss["status"] == "queued"


@pytest.mark.parametrize(
    "value",
    [
        *(True, 0, 5, "yes", [], {}),
        *({"ttl_seconds": 0}, {"ttl_seconds": -1}, {"ttl_seconds": 7 * 24 * 3600 + 1}, {"ttl_seconds": "5"}),
        *({"ttl_seconds": 1.5}, {"ttl_seconds": True}, {"ttl_seconds": 5, "other": 1}),
    ],
)
async def test_bad_cache_values_are_refused(api: Api, value: Any) -> None:
    response = await api.client.post(
        "/jobs", json={"type": api.job_type, "payload": {}, "cache": value}, headers=api.headers_a
    )
    assert response.status == 422, await response.text()
    body = await response.json()
    assert body["error"] == "validation_error"
    assert any(entry["loc"][0] == "cache" for entry in body["detail"])
    batch = await api.client.post(
        "/jobs/batch", json={"jobs": [{"type": api.job_type, "cache": value}]}, headers=api.headers_a
    )
    assert (await batch.json())["jobs"][0]["error"] == "validation_error"
    assert await api.queue_depth() == 0
