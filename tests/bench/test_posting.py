"""How the benchmark's client takes the orchestrator's refusals: counted in a latency run, fatal at full speed.

The server here answers with the shapes the orchestrator gives when RabbitMQ does not confirm in time
(orchestrator/http/job_routes.py and errors.py): a real over-capacity orchestrator cannot be made on
demand without stalling the shared RabbitMQ.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.bench.baton_runs import BatonBench, BenchFailure, complete
from tests.e2e.harness import BatonSystem, Tenant

TENANT = Tenant("bench-posting", "key")
UNCONFIRMED = {"error": "publish_unconfirmed", "detail": "the broker did not confirm job j9 in time", "job_id": "j9"}


async def create_batch(request: web.Request) -> web.Response:
    jobs = (await request.json())["jobs"]
    items: list[dict[str, Any]] = [{"index": 0, "job_id": "j1", "status": "queued", "created": True}]
    items += [{"index": 1, "error": "broker_unavailable", "detail": "the link to RabbitMQ is stalled"}]
    items += [{"index": 2, **UNCONFIRMED}]
    return web.json_response({"jobs": items[: len(jobs)], "accepted": 1, "rejected": len(jobs) - 1})


async def create_job(request: web.Request) -> web.Response:
    if (await request.json())["payload"]["n"] == 0:
        return web.json_response({"job_id": "j0", "status": "queued"}, status=202)
    if (await request.json())["payload"]["n"] == 1:
        return web.json_response(UNCONFIRMED, status=503)
    return web.json_response({"error": "internal_error", "detail": "unexpected server error"}, status=500)


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[BatonBench]:
    app = web.Application()
    app.router.add_post("/jobs", create_job)
    app.router.add_post("/jobs/batch", create_batch)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        system = BatonSystem("amqp://unused", "redis://unused", [], log_dir=tmp_path)  # only its POSTs are used
        yield BatonBench(system, str(server.make_url("")).rstrip("/"), session)


async def test_a_latency_run_keeps_the_refused_items_of_a_batch(bench: BatonBench) -> None:
    posted = await bench.post_batch(TENANT, 0, 3, strict=False)
    assert [(p.job_id, p.error) for p in posted] == [
        ("j1", None),
        (None, "broker_unavailable"),
        ("j9", "publish_unconfirmed"),
    ]


async def test_a_full_speed_run_fails_on_a_refused_item(bench: BatonBench) -> None:
    with pytest.raises(BenchFailure, match="rejected 2 jobs"):
        await bench.post_batch(TENANT, 0, 3)


async def test_a_latency_run_counts_a_503_and_still_fails_on_any_other_answer(bench: BatonBench) -> None:
    [accepted] = await bench.post_one(TENANT, 0, strict=False)
    assert (accepted.job_id, accepted.error) == ("j0", None)
    [refused] = await bench.post_one(TENANT, 1, strict=False)
    assert (refused.job_id, refused.error) == ("j9", "publish_unconfirmed")
    with pytest.raises(BenchFailure, match="answered 500"):
        await bench.post_one(TENANT, 2, strict=False)
    with pytest.raises(BenchFailure, match="answered 503"):
        await bench.post_one(TENANT, 1)


def test_a_run_counts_only_when_every_job_reached_the_client_and_the_registry() -> None:
    counted = {"jobs": 10, "lost": 0, "ws_cut_off": None, "registry_ok": True, "registry_completed": 10}
    assert complete(counted) is counted
    for spoiled in ({"lost": 3}, {"ws_cut_off": "closed by the server with code 4008"}, {"registry_ok": False}):
        with pytest.raises(BenchFailure, match="does not count"):
            complete(counted | spoiled)
