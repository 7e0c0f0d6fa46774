"""What GET /jobs/{job_id} adds for a job's page: its payload on request (?include=payload), and the traceback of
the handler exception that failed it; on the real RabbitMQ and Redis, with a real worker where a job must fail."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from orchestrator.store import keys
from tests.api_server import Api
from tests.polling import eventually
from tests.workers.helpers import running
from workers import RetryPolicy, TaskContext, Worker

PAYLOAD = {"text": "hello", "nested": {"n": [1, 2.5, None]}, "unicode": "été"}


async def create(api: Api, payload: dict[str, Any]) -> str:
    answer = await api.client.post("/jobs", json={"type": api.job_type, "payload": payload}, headers=api.headers_a)
    assert answer.status == 202, await answer.text()
    job_id: str = (await answer.json())["job_id"]
    return job_id


async def read(api: Api, path: str, headers: dict[str, str] | None = None, **query: str) -> tuple[int, Any]:
    answer = await api.client.get(path, params=query, headers=api.headers_a if headers is None else headers)
    return answer.status, await answer.json()


async def test_the_payload_comes_only_when_asked_for(api: Api) -> None:
    job_id = await create(api, PAYLOAD)
    status, plain = await read(api, f"/jobs/{job_id}")
    assert status == 200 and "payload" not in plain
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/status"):
        status, detailed = await read(api, path, include="payload")
        assert status == 200, detailed
        assert detailed["payload"] == PAYLOAD
        assert {k: v for k, v in detailed.items() if k != "payload"} == plain


async def test_a_job_whose_envelope_is_no_longer_kept_answers_a_null_payload(
    api: Api, redis_client: aioredis.Redis
) -> None:
    job_id = await create(api, PAYLOAD)
    await redis_client.hdel(keys.job(api.tenant_a, job_id), "envelope")  # the test's own job
    status, detailed = await read(api, f"/jobs/{job_id}", include="payload")
    assert (status, detailed["payload"], detailed["job_id"]) == (200, None, job_id)


async def test_another_tenants_job_is_404_with_or_without_the_payload(api: Api) -> None:
    job_id = await create(api, PAYLOAD)
    for query in ({}, {"include": "payload"}):
        status, body = await read(api, f"/jobs/{job_id}", api.headers_b, **query)
        assert (status, body["error"]) == (404, "job_not_found"), query
    status, body = await read(api, "/jobs/no-such-job", include="payload")
    assert (status, body["error"]) == (404, "job_not_found")


@pytest.mark.parametrize("query", [{"include": "result"}, {"include": ""}, {"include": "PAYLOAD"}, {"expand": "1"}])
async def test_an_unknown_include_or_parameter_is_422(api: Api, query: dict[str, str]) -> None:
    job_id = await create(api, PAYLOAD)
    status, body = await read(api, f"/jobs/{job_id}", **query)
    assert (status, body["error"]) == (422, "validation_error"), body
    assert body["detail"][0]["loc"] == [next(iter(query))]


async def test_a_key_is_checked_before_the_query(api: Api) -> None:
    job_id = await create(api, PAYLOAD)
    status, body = await read(api, f"/jobs/{job_id}", {}, include="nonsense")
    assert (status, body["error"]) == (401, "unauthorized")


def failing_worker(api: Api) -> Worker:
    worker = Worker(api.service, concurrency=2, retry=RetryPolicy(max_retries=0))

    @worker.handler(api.job_type)
    async def parse_the_order(payload: dict[str, Any], ctx: TaskContext) -> None:
        if payload.get("invalid"):
            raise ValueError("no order number in the text")
        int(payload["order"])  # a KeyError from a line of the handler

    return worker


async def test_a_failed_jobs_error_carries_the_handlers_traceback(api: Api, rabbitmq_url: str, redis_url: str) -> None:
    async with running(failing_worker(api), rabbitmq_url, redis_url=redis_url):
        raised = await create(api, {"invalid": True})
        broke = await create(api, {})

        async def both_failed() -> bool:
            records = [(await read(api, f"/jobs/{job_id}"))[1] for job_id in (raised, broke)]
            return all(record["status"] == "failed" for record in records)

        await eventually(both_failed, within=20)
    _, record = await read(api, f"/jobs/{raised}")
    error = record["error"]
    assert (error["error_type"], error["error"]) == ("ValueError", "no order number in the text")
    trace = error["traceback"]
    assert trace.startswith("Traceback (most recent call last):")
    assert ", in parse_the_order\n" in trace and 'raise ValueError("no order number in the text")' in trace
    assert trace.endswith("ValueError: no order number in the text\n")
    assert "workers/runtime" not in trace  # from the handler's frame on
    _, other = await read(api, f"/jobs/{broke}")
    assert other["error"]["error_type"] == "KeyError"
    assert 'int(payload["order"])' in other["error"]["traceback"]
