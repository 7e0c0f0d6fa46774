"""Job creation quotas on the real Redis: a token bucket per tenant, shared by every replica."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import jsonschema_rs
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from orchestrator.app import METRICS, create_app
from orchestrator.errors import QuotaExceeded
from orchestrator.http.errors import api_error_for
from orchestrator.http.routes import openapi_document
from orchestrator.rates import Rate
from orchestrator.settings import OrchestratorSettings, QuotaSettings
from orchestrator.store import keys
from tests.api_server import Api, quiet_sweeper
from tests.quotas.conftest import ServeApi

# The default for tenants a test does not single out: far above what any test here posts.
GENEROUS = Rate(1000.0, 1000)


def only_a(rate: Rate) -> Any:
    """Quotas giving tenant a `rate` and tenant b the generous default."""
    return lambda tenant_a, tenant_b: QuotaSettings(jobs=GENEROUS, per_tenant={tenant_a: rate})


async def post_job(api: Api, headers: dict[str, str] | None = None) -> Any:
    body = {"type": api.job_type, "payload": {}}
    return await api.client.post("/jobs", json=body, headers=headers or api.headers_a)


async def post_batch(api: Api, count: int) -> Any:
    body = {"jobs": [{"type": api.job_type, "payload": {"n": n}} for n in range(count)]}
    return await api.client.post("/jobs/batch", json=body, headers=api.headers_a)


async def job_count(api: Api, headers: dict[str, str]) -> int:
    listing = await (await api.client.get("/jobs", headers=headers)).json()
    return int(listing["total"])


def rejections(api: Api, tenant: str, kind: str) -> float:
    value = api.app[METRICS].registry.get_sample_value("baton_quota_rejections_total", {"tenant": tenant, "kind": kind})
    return value or 0.0


def documented_429(method: str, path: str) -> tuple[Any, dict[str, Any]]:
    """The OpenAPI document's validator of a route's 429 body, and the headers it names."""
    doc = openapi_document()
    answer = doc["paths"][path][method]["responses"]["429"]
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **answer["content"]["application/json"]["schema"],
    }
    return jsonschema_rs.validator_for({**schema, "components": doc["components"]}), answer["headers"]


async def test_a_burst_then_429_with_retry_after_then_tokens_refill(serve: ServeApi) -> None:
    # 30 a minute is one token every 2 s: a client refused right after the burst waits 2 s.
    async with serve(quotas=only_a(Rate(0.5, 5))) as api:
        started = time.monotonic()
        burst = await asyncio.gather(*(post_job(api) for _ in range(5)))
        assert [response.status for response in burst] == [202] * 5
        refused = await post_job(api)
        elapsed = time.monotonic() - started  # refilled meanwhile: 0.5 a second
        assert refused.status == 429
        retry_after = int(refused.headers["Retry-After"])
        assert math.ceil(2 - elapsed) <= retry_after <= 2
        body = await refused.json()
        assert body["error"] == "quota_exceeded" and api.tenant_a in body["detail"]
        assert (body["requested"], body["available"], body["burst"]) == (1, 0, 5)
        assert await job_count(api, api.headers_a) == 5  # the refused request created nothing
        assert rejections(api, api.tenant_a, "job") == 1

        await asyncio.sleep(retry_after)
        assert (await post_job(api)).status == 202  # the token is there, as Retry-After said
        again = await post_job(api)
        assert again.status == 429 and again.headers["Retry-After"] in ("1", "2")
        assert rejections(api, api.tenant_a, "job") == 2


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    for seconds, header in ((0.001, "1"), (1.0, "1"), (1.01, "2"), (59.5, "60")):
        answer = api_error_for(QuotaExceeded("t", 1, available=0, burst=5, retry_after=seconds))
        assert answer is not None and answer.status == 429 and answer.headers["Retry-After"] == header


async def test_another_tenant_keeps_its_own_quota(serve: ServeApi) -> None:
    async with serve(quotas=only_a(Rate(1 / 60, 3))) as api:
        for _ in range(3):
            assert (await post_job(api)).status == 202
        assert (await post_job(api)).status == 429
        # Tenant b is on the default (1,000 at once): a's override and a's empty bucket do not touch it.
        answers = [await post_job(api, api.headers_b) for _ in range(10)]
        statuses = [a.status for a in answers]
        assert statuses == [202] * 10, [await a.text() for a in answers]
        assert statuses == [202] * 10
        assert rejections(api, api.tenant_b, "job") == 0


async def test_a_batch_over_the_quota_is_refused_whole(serve: ServeApi) -> None:
    async with serve(quotas=only_a(Rate(1 / 60, 5))) as api:  # one a minute: nothing refills meanwhile
        accepted = await post_batch(api, 4)
        assert accepted.status == 200 and (await accepted.json())["accepted"] == 4
        refused = await post_batch(api, 3)
        assert refused.status == 429
        body = await refused.json()
        assert (body["requested"], body["available"]) == (3, 1)
        assert 100 <= int(refused.headers["Retry-After"]) <= 120  # two more tokens, a minute each
        assert await job_count(api, api.headers_a) == 4  # none of the three was created
        # More than the burst never fits: no Retry-After, and the detail says to split it.
        too_big = await post_batch(api, 6)
        assert too_big.status == 429 and "Retry-After" not in too_big.headers
        assert "split" in (await too_big.json())["detail"]
        validator, headers = documented_429("post", "/jobs/batch")
        assert validator.is_valid(body) and validator.is_valid(await too_big.json())
        assert "Retry-After" in headers
        assert rejections(api, api.tenant_a, "batch") == 2
        assert (await post_job(api)).status == 202  # the last token is still there


async def test_agent_and_workflow_runs_cost_a_token_each(serve: ServeApi) -> None:
    async with serve(quotas=only_a(Rate(1 / 60, 2))) as api:
        definition = {"name": "one step", "steps": [{"name": "only", "type": api.job_type}]}
        stored = await api.client.put("/workflows/quota-wf", json=definition, headers=api.headers_a)
        assert stored.status == 201, await stored.text()
        run = await api.client.post("/workflows/quota-wf/execute-async", json={"data": {}}, headers=api.headers_a)
        assert run.status == 202, await run.text()
        assert (await post_job(api)).status == 202
        legacy = {"workflow_id": "quota-wf", "mode": "automatic", "data": {}}
        assert (await api.client.post("/execute-async/", json=legacy, headers=api.headers_a)).status == 429
        agent = await api.client.post("/jobs/agent/a1/execute", json={"input": "hi"}, headers=api.headers_a)
        assert agent.status == 429
        assert (rejections(api, api.tenant_a, "workflow"), rejections(api, api.tenant_a, "job")) == (1, 1)
        for method, path in (("post", "/jobs"), ("post", "/jobs/agent/{agent_id}/execute")):
            validator, _ = documented_429(method, path)
            assert validator.is_valid(await agent.json())
        for path in ("/workflows/{workflow_id}/execute-async", "/execute-async/"):
            assert documented_429("post", path)[1]["Retry-After"]


async def test_a_services_child_job_spends_the_quota_of_its_tenant(serve: ServeApi, unique: str) -> None:
    async with serve(quotas=only_a(Rate(1 / 60, 2)), service_tokens={f"token-{unique}": f"svc-{unique}"}) as api:
        parent = (await (await post_job(api)).json())["job_id"]
        service = {
            "Authorization": f"Bearer token-{unique}",
            "X-Baton-Tenant": api.tenant_a,
            "X-Global-Task-Id": parent,
            "X-Task-Id": "task-1",
        }
        assert (await post_job(api, service)).status == 202  # the tenant's second token
        refused = await post_job(api, service)
        assert refused.status == 429 and "Retry-After" in refused.headers
        assert (await post_job(api)).status == 429  # the tenant's own requests see the same bucket


async def test_two_replicas_spend_from_one_bucket(
    serve: ServeApi, rabbitmq_url: str, redis_url: str, unique: str
) -> None:
    quota = only_a(Rate(1 / 60, 6))
    async with serve(quotas=quota) as api:
        second = create_app(
            OrchestratorSettings(
                rabbitmq_url=rabbitmq_url,
                redis_url=redis_url,
                api_keys={f"k2-{unique}": api.tenant_a, f"k2b-{unique}": api.tenant_b},
                quotas=quota(api.tenant_a, api.tenant_b),
            ),
            sweeper=quiet_sweeper(f"{unique}-2", frozenset({api.tenant_a})),
        )
        async with TestClient(TestServer(second)) as other:
            headers = {"Authorization": f"Bearer k2-{unique}"}
            statuses = []
            for n in range(10):  # alternating replicas, concurrently within each pair
                pair = await asyncio.gather(
                    post_job(api),
                    other.post("/jobs", json={"type": api.job_type, "payload": {"n": n}}, headers=headers),
                )
                statuses += [response.status for response in pair]
            assert statuses.count(202) == 6 and statuses.count(429) == 14


async def test_no_quota_means_no_bucket(serve: ServeApi, redis_client: aioredis.Redis) -> None:
    async with serve(quotas=lambda a, b: QuotaSettings(jobs=None, per_tenant={a: Rate(1000.0, 1000)})) as api:
        assert (await post_batch(api, 5)).status == 200
        for _ in range(3):
            assert (await post_job(api, api.headers_b)).status == 202
        assert await redis_client.exists(keys.job_quota(api.tenant_a)) == 1
        assert await redis_client.exists(keys.job_quota(api.tenant_b)) == 0  # off: not even a round trip
