"""`ctx.submit_job` on the real RabbitMQ and Redis: an orchestrator (tests/api_server.py) with a service
token, and a worker runtime whose parent handler makes child jobs through POST /jobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis

from orchestrator.store import keys
from protocol.events import TERMINAL_STATUSES
from tests.api_server import Api, serve_api
from tests.e2e.harness import free_port
from tests.polling import poll
from tests.workers.helpers import running
from workers import RetryPolicy, TaskContext, Worker

QUICK_RETRY = RetryPolicy(max_retries=1, initial_delay_seconds=0.1, max_delay_seconds=0.2, jitter=0.0)


@dataclass
class Family:
    """The orchestrator, its service token, and the test service's two job types: parent and child."""

    api: Api
    token: str
    child_type: str
    made: list[list[str]] = field(default_factory=list)  # the child ids of each parent run, in order

    def worker(self) -> Worker:
        worker = Worker(self.api.service, concurrency=4, retry=QUICK_RETRY)

        @worker.handler(self.api.job_type)
        async def parent(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
            ids = [
                await ctx.submit_job(payload.get("type", self.child_type), {"sleep": payload.get("sleep", 0), "n": n})
                for n in range(payload.get("children", 1))
            ]
            self.made.append(ids)
            if payload.get("fail_first") and ctx.attempt == 1:
                raise RuntimeError("the parent fails after making its children")
            return {"children": ids}

        @worker.handler(self.child_type)
        async def child(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
            await asyncio.sleep(payload["sleep"])
            return {"n": payload["n"], "context": ctx.context.model_dump(exclude_none=True), "meta": ctx.metadata}

        return worker

    def worker_settings(self, orchestrator_url: str | None = None) -> dict[str, Any]:
        return {
            "orchestrator_url": orchestrator_url or str(self.api.client.make_url("/")),
            "service_tokens": {self.token: self.api.service},
            "http_retries": 1,
        }

    async def create_parent(self, payload: dict[str, Any], **body: Any) -> str:
        answer = await self.api.client.post(
            "/jobs", json={"type": self.api.job_type, "payload": payload, **body}, headers=self.api.headers_a
        )
        assert answer.status == 202, await answer.text()
        job_id: str = (await answer.json())["job_id"]
        return job_id

    async def job(self, job_id: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        answer = await self.api.client.get(f"/jobs/{job_id}", headers=headers or self.api.headers_a)
        body: dict[str, Any] = await answer.json()
        return answer.status, body

    async def ended(self, job_id: str, within: float = 20.0) -> dict[str, Any]:
        _, record = await poll(
            lambda: self.job(job_id), lambda found: found[1].get("status") in TERMINAL_STATUSES, within=within
        )
        return record


@pytest.fixture
async def family(rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[Family]:
    token = f"svc-token-{unique}"
    async with serve_api(rabbitmq_url, redis_url, redis_client, unique, service_tokens={token: f"svc-{unique}"}) as api:
        child_type = f"child_{unique}"
        await api.announce(child_type)  # as the worker's heartbeat would: both types route to the service
        try:
            yield Family(api, token, child_type)
        finally:
            await redis_client.hdel(keys.ROUTES, child_type)


async def test_the_parent_gets_the_child_job_id_at_once_and_the_child_is_a_job_of_the_tenant(
    family: Family, rabbitmq_url: str, redis_url: str
) -> None:
    api = family.api
    context = {"request_id": "req-parent", "user_id": "u-1", "conversation_id": "conv-1"}
    async with running(family.worker(), rabbitmq_url, redis_url=redis_url, **family.worker_settings()):
        parent_id = await family.create_parent({"sleep": 1.5}, context=context, session_id="s-1", priority=7)
        parent = await family.ended(parent_id)
        assert parent["status"] == "completed", parent
        (child_id,) = parent["result"]["children"]
        status, child = await family.job(child_id)
        # The parent finished while its child still sleeps: nothing waited for it.
        assert status == 200 and child["status"] not in TERMINAL_STATUSES, child
        done = await family.ended(child_id)

    assert child_id != parent_id
    assert done["status"] == "completed", done
    assert (done["tenant_id"], done["session_id"], done["priority"]) == (api.tenant_a, "s-1", 7)
    assert done["context"] == context
    assert done["parent"] == {"job_id": parent_id, "task_id": parent["root_task_id"], "service": api.service}
    assert done["result"]["context"] == context
    meta = done["result"]["meta"]
    assert (meta["source"], meta["parent_job_id"], meta["parent_task_id"]) == (
        "system",
        parent_id,
        parent["root_task_id"],
    )
    assert (await family.job(child_id, api.headers_b))[0] == 404  # another tenant's job


async def test_a_retried_parent_finds_the_children_its_first_attempt_made(
    family: Family, rabbitmq_url: str, redis_url: str
) -> None:
    api = family.api
    async with running(family.worker(), rabbitmq_url, redis_url=redis_url, **family.worker_settings()):
        parent_id = await family.create_parent({"children": 2, "fail_first": True})
        parent = await family.ended(parent_id)
        listed = await api.client.get("/jobs", params={"type": family.child_type}, headers=api.headers_a)
        children = [job["job_id"] for job in (await listed.json())["jobs"]]

    assert parent["status"] == "completed" and parent["attempt"] == 2, parent
    first, second = family.made
    assert first == second == parent["result"]["children"]
    assert len(set(first)) == 2  # two calls, two jobs: each call has its own key
    assert sorted(children) == sorted(first)  # and no more: the second attempt made none


async def test_a_refused_child_fails_the_parent_without_a_retry(
    family: Family, rabbitmq_url: str, redis_url: str, unique: str
) -> None:
    async with running(family.worker(), rabbitmq_url, redis_url=redis_url, **family.worker_settings()):
        parent = await family.ended(await family.create_parent({"type": f"nobody_serves_{unique}"}))

    assert parent["status"] == "failed", parent
    assert parent["error"]["error_type"] == "ChildJobRefused" and parent["error"]["attempts"] == 1
    assert "422 unknown_job_type" in parent["error"]["error"]


async def test_an_unreachable_orchestrator_is_a_retryable_failure(
    family: Family, rabbitmq_url: str, redis_url: str
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    settings = family.worker_settings(orchestrator_url=nobody)
    async with running(family.worker(), rabbitmq_url, redis_url=redis_url, **settings):
        parent = await family.ended(await family.create_parent({}))

    assert parent["status"] == "failed", parent
    error = parent["error"]
    # Retried as the worker's policy allows (2 attempts), each after ctx.http's own 2 tries at POST /jobs.
    assert error["error_type"] == "OrchestratorUnavailable" and error["attempts"] == 2, error
    assert f"no job made by {nobody}/jobs: POST {nobody}/jobs: " in error["error"]
    assert "(2 attempts)" in error["error"]
    assert family.made == []


async def test_without_a_token_for_its_service_the_worker_refuses_at_once(
    family: Family, rabbitmq_url: str, redis_url: str
) -> None:
    settings = {**family.worker_settings(), "service_tokens": {"other-token": "another-service"}}
    async with running(family.worker(), rabbitmq_url, redis_url=redis_url, **settings):
        parent = await family.ended(await family.create_parent({}))

    assert parent["status"] == "failed" and parent["error"]["error_type"] == "ChildJobRefused", parent
    assert "BATON_SERVICE_TOKEN has no token for service" in parent["error"]["error"]
