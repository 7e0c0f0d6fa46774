"""Worker(batch_outcomes=True) end to end, a real orchestrator (tests/api_server.py) and a real worker
runtime: a burst of jobs ends in batch messages, and the orchestrator records every job's outcome and
tells its WebSocket followers, as it does for one outcome per message."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import WSMsgType

from protocol.event_batch import BATCH_HEADER, is_event_batch
from tests.api_server import Api, serve_api
from tests.workers.helpers import Tap, running
from workers import TaskContext, Worker

JOBS = 120


@pytest.fixture
async def api(rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[Api]:
    async with serve_api(rabbitmq_url, redis_url, redis_client, unique) as api:
        yield api


async def test_a_burst_of_batched_outcomes_completes_every_job_in_the_registry_and_on_the_websocket(
    api: Api, rabbitmq_url: str, redis_url: str
) -> None:
    worker = Worker(api.service, concurrency=32, track_started=False, batch_outcomes=True)

    @worker.handler(api.job_type)
    async def echo(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"n": payload["n"]}

    ws = await api.client.ws_connect("/ws/task_updates", headers=api.headers_a)
    await ws.send_json({"type": "subscribe", "all": True})
    channel = await api.amqp.channel()
    tap = await Tap.open(channel, f"{api.tenant_a}.{api.service}.task_completed")
    # Queued before the worker starts, so they come to it together and end together.
    items = [{"type": api.job_type, "payload": {"n": n}} for n in range(JOBS)]
    response = await api.client.post("/jobs/batch", json={"jobs": items}, headers=api.headers_a)
    assert response.status == 200, await response.text()
    job_ids = [item["job_id"] for item in (await response.json())["jobs"]]

    async with running(worker, rabbitmq_url, redis_url=redis_url):
        completed: set[str] = set()
        while len(completed) < JOBS:
            msg = await ws.receive(timeout=20)
            assert msg.type is WSMsgType.TEXT, msg
            body = json.loads(msg.data)
            for update in body["events"] if body.get("type") == "events" else [body]:
                if update.get("job_status") == "completed":
                    completed.add(update["global_task_id"])
        carriers, carried = [], 0
        while carried < JOBS:
            carriers.append(await tap.next_message())
            carried += carriers[-1].headers.get(BATCH_HEADER, 1) if carriers[-1].headers else 1
    await ws.close()
    await channel.close()

    assert completed == set(job_ids)
    results = []
    for job_id in job_ids:
        record = await (await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)).json()
        assert record["status"] == "completed", record
        results.append(record["result"]["n"])
    assert sorted(results) == list(range(JOBS))
    # The burst's outcomes shared messages.
    assert any(is_event_batch(m.headers) for m in carriers) and len(carriers) < JOBS
