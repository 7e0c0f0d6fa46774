"""A publish that may have reached the broker keeps its job; one that certainly did not is undone.

The orchestrator talks to RabbitMQ through a TCP proxy that black-holes the link: the envelope is
on its way but no confirm comes back in time. Once the link heals the broker does queue it, which
is why the job and its idempotency key must survive the 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from tests.api_server import Api, serve_api
from tests.polling import poll
from tests.services import relocated_url
from tests.tcp_proxy import TcpProxy


@pytest.fixture
async def proxy(rabbitmq_url: str) -> AsyncIterator[TcpProxy]:
    target = urlsplit(rabbitmq_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


@pytest.fixture
async def proxied(
    rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str, proxy: TcpProxy
) -> AsyncIterator[Api]:
    url = relocated_url(rabbitmq_url, proxy.port)
    async with serve_api(rabbitmq_url, redis_url, redis_client, unique, app_rabbitmq_url=url) as api:
        yield api
        proxy.heal()  # let the app close its connections cleanly


async def test_an_unconfirmed_publish_keeps_the_job_and_its_idempotency_key(proxied: Api, proxy: TcpProxy) -> None:
    api = proxied
    first = await api.client.post("/jobs", json={"type": api.job_type}, headers=api.headers_a)
    assert first.status == 202  # the service's queues are declared now
    await api.queued_envelopes()

    proxy.blackhole()
    single = {"type": api.job_type, "payload": {"n": 1}, "idempotency_key": "single"}
    batch = {"jobs": [{"type": api.job_type, "payload": {"n": 2}, "idempotency_key": "in-batch"}]}
    one, many = await asyncio.gather(
        api.client.post("/jobs", json=single, headers=api.headers_a),
        api.client.post("/jobs/batch", json=batch, headers=api.headers_a),
    )
    assert one.status == 503
    assert int(one.headers["Retry-After"]) > 0
    body = await one.json()
    assert body["error"] == "publish_unconfirmed"
    assert "may still run" in body["detail"]
    kept = body["job_id"]
    assert many.status == 200
    batch_body = await many.json()
    [item] = batch_body["jobs"]
    assert item["error"] == "publish_unconfirmed" and item["job_id"]
    assert (batch_body["accepted"], batch_body["rejected"]) == (0, 1)

    # The link is known stalled now: nothing is sent, so this job is refused and undone.
    started = time.monotonic()
    refused = await api.client.post(
        "/jobs", json={"type": api.job_type, "idempotency_key": "refused"}, headers=api.headers_a
    )
    assert time.monotonic() - started < 1.0
    assert refused.status == 503
    assert (await refused.json())["error"] == "broker_unavailable"

    for job_id in (kept, item["job_id"]):
        record = await (await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)).json()
        assert record["status"] == "queued"
    listing = await (await api.client.get("/jobs", headers=api.headers_a)).json()
    assert listing["total"] == 3  # the first, the two unconfirmed; not the refused one

    proxy.heal()
    await poll(api.queue_depth, lambda depth: depth >= 2, what="the unconfirmed envelopes on the queue")
    queued = {envelope.global_task_id for _, envelope in await api.queued_envelopes()}
    assert queued == {kept, item["job_id"]}  # the broker did take them: the jobs run

    # A client retrying with its idempotency key finds the kept job instead of running the work twice.
    again = await api.client.post("/jobs", json=single, headers=api.headers_a)
    assert again.status == 202
    assert ((await again.json())["job_id"], (await again.json())["created"]) == (kept, False)
    retried = await api.client.post("/jobs/batch", json=batch, headers=api.headers_a)
    [retried_item] = (await retried.json())["jobs"]
    assert (retried_item["job_id"], retried_item["created"]) == (item["job_id"], False)
    assert await api.queue_depth() == 0
