"""The real processes, started with the users' commands, from HTTP to the WebSocket."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from tests.e2e.harness import BatonSystem, Tenant, TerminalCollector, percentile, wait_for_workers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


async def post_jobs(
    session: aiohttp.ClientSession, base_url: str, tenant: Tenant, bodies: list[dict[str, Any]], concurrency: int = 32
) -> dict[str, float]:
    """POSTs every body; returns job_id -> perf_counter time just before its POST."""
    started: dict[str, float] = {}
    limit = asyncio.Semaphore(concurrency)

    async def one(body: dict[str, Any]) -> None:
        async with limit:
            t0 = time.perf_counter()
            async with session.post(f"{base_url}/jobs", json=body, headers=tenant.headers) as response:
                assert response.status == 202, await response.text()
                started[(await response.json())["job_id"]] = t0

    await asyncio.gather(*(one(body) for body in bodies))
    return started


def embedding_job(i: int) -> dict[str, Any]:
    # Without the cache: these tests count jobs and events, and the same body sent twice (as the
    # two-replica test does) would otherwise come back coalesced or from the cache instead of as a new job.
    return {
        "type": "embedding_request",
        "payload": {"texts": [f"document number {i}"], "dimensions": 8},
        "cache": False,
    }


async def test_a_thousand_jobs_reach_the_websocket_and_none_is_lost(system: BatonSystem) -> None:
    base_url = await system.start_orchestrator()
    system.start_worker("embedding")
    await wait_for_workers(base_url, ["embedding"])
    owner, other = system.tenants
    async with aiohttp.ClientSession() as session:
        watcher = await TerminalCollector.connect(session, base_url, owner)
        outsider = await TerminalCollector.connect(session, base_url, other)
        t0 = time.perf_counter()
        started = await post_jobs(session, base_url, owner, [embedding_job(i) for i in range(1000)])
        missing = await watcher.wait_for(set(started), timeout=120)
        elapsed = time.perf_counter() - t0
        await asyncio.sleep(0.5)  # room for any duplicate terminal event to show up
        await watcher.close()
        await outsider.close()

        assert missing == set(), f"{len(missing)} jobs never reached a terminal event"
        assert {job: len(events) for job, events in watcher.terminal.items() if len(events) != 1} == {}
        assert {events[0][1]["event"] for events in watcher.terminal.values()} == {"task_completed"}
        assert outsider.events == [], "another tenant saw this tenant's events"
        latencies = [watcher.terminal[job][0][0] - t for job, t in started.items()]
        print(
            f"\nE2E 1000 jobs: {1000 / elapsed:.0f} jobs/s, POST->WS terminal p50 "
            f"{percentile(latencies, 0.5) * 1000:.1f} ms p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
        )
        some_job = next(iter(started))
        async with session.get(f"{base_url}/jobs/{some_job}", headers=owner.headers) as response:
            record = await response.json()
        assert record["status"] == "completed"
        assert len(record["result"]["vectors"][0]) == 8
        async with session.get(f"{base_url}/jobs/{some_job}", headers=other.headers) as response:
            assert response.status == 404


async def test_two_orchestrators_deliver_every_event_once_to_clients_of_both(system: BatonSystem) -> None:
    first = await system.start_orchestrator("orchestrator-1")
    second = await system.start_orchestrator("orchestrator-2")
    system.start_worker("embedding")
    await wait_for_workers(first, ["embedding"])
    tenant = system.tenants[0]
    async with aiohttp.ClientSession() as session:
        on_first = await TerminalCollector.connect(session, first, tenant)
        on_second = await TerminalCollector.connect(session, second, tenant)
        bodies = [embedding_job(i) for i in range(150)]
        started_first, started_second = await asyncio.gather(
            post_jobs(session, first, tenant, bodies), post_jobs(session, second, tenant, bodies)
        )
        jobs = set(started_first) | set(started_second)
        assert len(jobs) == 300
        assert await on_first.wait_for(jobs, timeout=60) == set()
        assert await on_second.wait_for(jobs, timeout=60) == set()
        await asyncio.sleep(0.5)
        for collector in (on_first, on_second):
            await collector.close()
            assert {job: len(e) for job, e in collector.terminal.items() if len(e) != 1} == {}
            seqs: dict[str, list[int]] = {}
            for _, event in collector.events:
                if "event" in event:
                    seqs.setdefault(event["global_task_id"], []).append(event["seq"])
            assert all(s == sorted(set(s)) for s in seqs.values()), "a client saw a seq go backwards or repeat"
        for job in list(jobs)[:20]:
            records = []
            for base in (first, second):
                async with session.get(f"{base}/jobs/{job}", headers=tenant.headers) as response:
                    records.append(await response.json())
            assert records[0]["status"] == records[1]["status"] == "completed"
            assert records[0]["seq"] == records[1]["seq"]


async def test_built_in_services_do_real_work_and_call_each_other(system: BatonSystem) -> None:
    base_url = await system.start_orchestrator()
    for service in ("query", "embedding", "ingestion", "agent"):
        system.start_worker(service)
    await wait_for_workers(base_url, ["query", "embedding", "ingestion", "agent"])
    tenant = system.tenants[0]
    document = "\n\n".join(f"Paragraph {i}. " + "Baton moves long jobs through RabbitMQ. " * 8 for i in range(12))
    jobs = {
        "llm_request": {"prompt": "What is Baton?"},
        "embedding_request": {"texts": ["alpha beta", "gamma"]},
        "document_processing": {"text": document, "chunk_size": 400},
        "agent_execution": {"message": "Summarise the queue design"},
    }
    async with aiohttp.ClientSession() as session:
        results: dict[str, dict[str, Any]] = {}
        for job_type, payload in jobs.items():
            body = {"type": job_type, "payload": payload, "wait": 30, "context": {"request_id": f"req-{job_type}"}}
            async with session.post(f"{base_url}/jobs", json=body, headers=tenant.headers) as response:
                assert response.status == 200, await response.text()
                results[job_type] = await response.json()
        for job_type, answer in results.items():
            assert answer["status"] == "completed", (job_type, answer, answer.get("error"))
            async with session.get(f"{base_url}/jobs/{answer['job_id']}", headers=tenant.headers) as response:
                record = await response.json()
            assert record["status"] == "completed"
            if job_type in ("document_processing", "agent_execution"):
                children = [t for t in record["delegated_services"] if t["task_id"] != record["root_task_id"]]
                assert children and all(t["status"] == "completed" for t in children), record["delegated_services"]
