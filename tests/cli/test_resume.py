"""`--follow` outlives a cut link: it reconnects and resumes after the last seq it showed, so the job's
messages reach the user in order, none twice, and nothing is missing (a snapshot stands for what the
server no longer keeps); then the result, exit 0."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from orchestrator.settings import WebSocketSettings
from tests.api_server import Api, serve_api
from tests.cli.helpers import Baton, cli_worker, read_until, stopped
from tests.tcp_proxy import TcpProxy
from tests.workers.helpers import running


@pytest.fixture
async def proxy(api: Api) -> AsyncIterator[TcpProxy]:
    server = api.client.server
    proxy = TcpProxy(str(server.host), int(server.port or 0))
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_follow_resumes_after_the_link_is_cut(
    api: Api, baton: Baton, proxy: TcpProxy, worker: None, gate: asyncio.Event
) -> None:
    through_proxy = Baton(f"http://127.0.0.1:{proxy.port}", baton.key)
    payload = {"text": "resumed", "progress": [[10, "one"]], "gated": True, "then": [[60, "two"], [90, "three"]]}

    process = await through_proxy.start("submit", api.job_type, "-p", json.dumps(payload), "--follow", "--json")
    try:
        before = await read_until(process.stdout, '"one"')
        proxy.cut()
        notes = await read_until(process.stderr, "lost the live updates")
        gate.set()
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        await stopped(process)

    assert process.returncode == 0, (before, out, err)
    assert "reconnecting" in notes[-1] and "resuming after seq" in notes[-1], notes
    *messages, record = [json.loads(line) for line in [*before, *out.decode().splitlines()] if line.strip()]
    assert record["status"] == "completed" and record["result"]["echo"] == "resumed"
    seqs = [message["seq"] for message in messages]
    assert seqs == sorted(set(seqs)), seqs
    for previous, message in itertools.pairwise(messages):
        # No gap: each event follows the one before it, unless a snapshot brought the job up to date.
        if message.get("type") != "job_snapshot":
            assert message["seq"] == previous["seq"] + 1, (previous, message)


async def test_follow_waits_out_a_cap_on_sockets(
    rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str
) -> None:
    limits = WebSocketSettings(max_per_tenant=1)
    async with (
        serve_api(rabbitmq_url, redis_url, redis_client, unique, websockets=limits) as api,
        running(cli_worker(api.service, api.job_type), rabbitmq_url, redis_url=redis_url),
    ):
        baton = Baton(str(api.client.make_url("")).rstrip("/"), api.headers_a["Authorization"].removeprefix("Bearer "))
        holder = await api.client.ws_connect("/ws/task_updates", headers=api.headers_a)  # the tenant's one socket
        process = await baton.start("submit", api.job_type, "-p", '{"text": "let in"}', "--follow")
        try:
            notes = await read_until(process.stderr, "lost the live updates")
            await holder.close()
            out, err = await asyncio.wait_for(process.communicate(), 30)
        finally:
            await stopped(process)

    assert process.returncode == 0, (notes, out, err)
    assert "too_many_connections" in notes[-1], notes
    assert json.loads(out)["echo"] == "let in"
