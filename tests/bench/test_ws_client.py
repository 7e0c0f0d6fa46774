"""The benchmark's WebSocket watcher against the real WebSocket routes: every terminal event once, batched or not,
and every message shown to its observer."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from orchestrator.models import JobUpdate
from tests.bench.ws_client import JobWatcher
from tests.orchestrator_live.ws_rig import serve_ws


@pytest.mark.parametrize("batch", [True, False], ids=["batched", "single"])
async def test_the_watcher_sees_every_terminal_event_of_a_window(
    redis_client: aioredis.Redis, unique: str, batch: bool
) -> None:
    tenant = f"t-bench-{unique}"
    async with serve_ws(redis_client, tenant, unique, client_buffer=1000) as server, aiohttp.ClientSession() as session:
        url = str(server.client.make_url("")).rstrip("/")
        observed: list[dict[str, Any]] = []
        headers = {"Authorization": f"Bearer {server.key}"}
        watcher = await JobWatcher.connect(session, url, headers, batch=batch, observe=observed.append)
        [conn] = server.parts.hub._connections
        assert conn.batch is batch
        await asyncio.sleep(0.2)  # the subscription is in place
        ended = {f"job-{n}": "task_completed" if n % 3 else "task_failed" for n in range(300)}
        for job_id, kind in ended.items():  # one window: one synchronous step
            event = {"event": kind, "global_task_id": job_id, "seq": 2}
            status = "completed" if kind == "task_completed" else "failed"
            server.parts.hub.dispatch(JobUpdate(tenant, job_id, seq=2, status=status, terminal=True, event=event))
        async with asyncio.timeout(10):
            while len(watcher.terminal) < len(ended):
                watcher.changed.clear()
                await watcher.changed.wait()
        assert set(watcher.terminal) == set(ended)
        assert watcher.failed == {job_id: kind for job_id, kind in ended.items() if kind != "task_completed"}
        assert watcher.cut_off is None
        assert [(m["global_task_id"], m["event"]) for m in observed] == list(ended.items())  # each message, in order
        await watcher.close()
