"""What the fault tests share: the fault worker's jobs, tolerant job posting, probes and figures."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiohttp
import redis.asyncio as aioredis

from protocol.topology import declare_service, service_queues
from tests.e2e.harness import Tenant
from tests.faults.fault_worker import SERVICE, probe_keys
from tests.polling import NotReached, poll

WORKER_TARGET = "tests.faults.fault_worker:build"
# Its outcomes batched: the worker crashes and Redis restart tests run it, the others the plain one.
BATCHED_WORKER_TARGET = "tests.faults.fault_worker:build_batched"


def report(name: str, **figures: object) -> None:
    """Prints a fault test's figures (and appends them to $BATON_FAULT_FIGURES when set)."""
    line = f"FAULT {name}: " + ", ".join(f"{key}={value}" for key, value in figures.items())
    print("\n" + line)
    path = os.environ.get("BATON_FAULT_FIGURES")
    if path:
        with open(path, "a") as out:
            out.write(line + "\n")


def fault_job(run: str, probe_url: str, sleep_ms: int) -> dict[str, Any]:
    return {"type": "fault_sleep", "payload": {"run": run, "probe_url": probe_url, "sleep_ms": sleep_ms}}


async def reset_fault_queues(rabbitmq_url: str) -> None:
    """Declares the fault service's queues and empties them (left-overs of an earlier run)."""
    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        await declare_service(channel, SERVICE)
        for spec in service_queues(SERVICE):
            queue = await channel.get_queue(spec.name, ensure=True)
            await queue.purge()


@dataclass
class Poster:
    """POSTs jobs and remembers which were accepted (202), refused (503/…) and how long each call took."""

    session: aiohttp.ClientSession
    base_url: str
    tenant: Tenant
    accepted: dict[str, float] = field(default_factory=dict)
    refused: list[tuple[float, int, float]] = field(default_factory=list)  # (time, status, seconds)
    slowest_refusal: float = 0.0

    async def post(self, body: dict[str, Any], timeout: float = 10.0) -> str | None:
        t0 = time.perf_counter()
        try:
            async with self.session.post(
                f"{self.base_url}/jobs",
                json=body,
                headers=self.tenant.headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                elapsed = time.perf_counter() - t0
                if response.status == 202:
                    job_id: str = (await response.json())["job_id"]
                    self.accepted[job_id] = t0
                    return job_id
                self.refused.append((t0, response.status, elapsed))
                self.slowest_refusal = max(self.slowest_refusal, elapsed)
                return None
        except (aiohttp.ClientError, TimeoutError):
            elapsed = time.perf_counter() - t0
            self.refused.append((t0, 0, elapsed))
            self.slowest_refusal = max(self.slowest_refusal, elapsed)
            return None

    async def post_at_rate(self, bodies: list[dict[str, Any]], rate: float) -> None:
        t0 = time.perf_counter()
        tasks = []
        for i, body in enumerate(bodies):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.post(body)))
        await asyncio.gather(*tasks)


async def job_statuses(
    session: aiohttp.ClientSession, base_url: str, tenant: Tenant, job_ids: list[str]
) -> dict[str, str]:
    limit = asyncio.Semaphore(32)

    async def one(job_id: str) -> tuple[str, str]:
        async with limit, session.get(f"{base_url}/jobs/{job_id}", headers=tenant.headers) as response:
            if response.status != 200:
                return job_id, f"http_{response.status}"
            return job_id, (await response.json())["status"]

    return dict(await asyncio.gather(*(one(j) for j in job_ids)))


async def wait_until_terminal(
    session: aiohttp.ClientSession, base_url: str, tenant: Tenant, job_ids: list[str], timeout: float
) -> dict[str, str]:
    """Polls the registry until every job is terminal or the time is up; returns the last statuses."""
    terminal = {"completed", "failed", "cancelled", "timed_out"}
    statuses: dict[str, str] = {}

    async def refreshed() -> dict[str, str]:
        pending = [j for j in job_ids if statuses.get(j) not in terminal]
        try:
            statuses.update(await job_statuses(session, base_url, tenant, pending))
        except (aiohttp.ClientError, TimeoutError):
            pass
        return statuses

    def all_terminal(statuses: dict[str, str]) -> bool:
        return all(statuses.get(j) in terminal for j in job_ids)

    with contextlib.suppress(NotReached):  # the callers count and report the jobs still not terminal
        await poll(refreshed, all_terminal, within=timeout, every=0.5, what="every job terminal")
    return statuses


async def probe_counts(probe: aioredis.Redis, run: str) -> tuple[dict[str, int], dict[str, int]]:
    starts_key, ends_key, _ = probe_keys(run)
    starts = {k.decode(): int(v) for k, v in (await probe.hgetall(starts_key)).items()}
    ends = {k.decode(): int(v) for k, v in (await probe.hgetall(ends_key)).items()}
    return starts, ends


async def drop_probe(probe: aioredis.Redis, run: str) -> None:
    await probe.delete(*probe_keys(run))
