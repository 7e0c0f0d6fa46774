"""Baton's side: the real orchestrator and worker processes, driven over HTTP and watched over WebSockets.

A job counts as done when its terminal event reached a WebSocket client; at the end of every run the
registry must also list every job of the run's tenant as completed (GET /jobs?status=completed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from tests.bench.common import (
    BENCH_LIMITS,
    NOOP_SERVICE,
    NOOP_TYPE,
    WARMUP_JOBS,
    bench_tenants,
    bounded,
    delete_matching,
    delete_service_queues,
    latency_summary,
    paced,
    progress,
    wait_until,
)
from tests.bench.cpu import CpuMeter
from tests.bench.ws_client import JobWatcher
from tests.e2e.harness import BatonSystem, Process, Tenant, wait_for_workers

NOOP_WORKER = "tests.bench.noop_worker:worker"
MAX_BATCH = 1000
REGISTRY_TIMEOUT_SECONDS = 30.0


class BenchFailure(RuntimeError):
    """The system under test answered something a correct run never does."""


@dataclass(frozen=True)
class Posted:
    """One job as its POST answered: its id (None when refused without one), when the POST started, the refusal."""

    job_id: str | None
    t0: float
    error: str | None = None


def complete(outcome: dict[str, Any]) -> dict[str, Any]:
    """`outcome` of a full-speed run, once it is known to count: BenchFailure when a job's terminal event
    never reached the WebSocket client (or the server cut it off as slow), or the registry disagrees."""
    if outcome["lost"] or outcome["ws_cut_off"] or not outcome["registry_ok"]:
        counts = {k: outcome[k] for k in ("jobs", "lost", "ws_cut_off", "registry_completed")}
        raise BenchFailure(f"a Baton run does not count: {counts}")
    return outcome


def split_posted(posted: list[Posted]) -> tuple[dict[str, float], list[Posted]]:
    """The accepted jobs (job id -> when its POST started) and the refused ones."""
    started = {p.job_id: p.t0 for p in posted if p.error is None and p.job_id is not None}
    return started, [p for p in posted if p.error is not None]


@dataclass
class BatonBench:
    system: BatonSystem
    base_url: str
    session: aiohttp.ClientSession
    worker: Process | None = None

    @property
    def orchestrator_pid(self) -> int:
        return next(p.popen.pid for p in self.system.processes if p.name == "orchestrator")

    async def start_worker(self, **env: str) -> None:
        """The no-op worker, with `env` on top of the system's (BATON_BENCH_TRACK_STARTED="0", say)."""
        if self.worker is None:
            self.worker = self.system.start_worker(NOOP_WORKER, name="worker", **env)
            await wait_for_workers(self.base_url, [NOOP_SERVICE])

    async def stop_worker(self) -> None:
        """SIGTERM the worker and wait: it finishes what it holds and announces it is stopping."""
        if self.worker is None:
            return
        worker, self.worker = self.worker, None
        worker.popen.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(worker.popen.wait, 20)
        except subprocess.TimeoutExpired:
            worker.popen.kill()
            await asyncio.to_thread(worker.popen.wait)
        self.system.processes.remove(worker)

    # -- creating jobs ---------------------------------------------------------------------------

    async def post_one(self, tenant: Tenant, i: int, strict: bool = True) -> list[Posted]:
        t0 = time.perf_counter()
        body: dict[str, Any] = {"type": NOOP_TYPE, "payload": {"n": i}}
        async with self.session.post(f"{self.base_url}/jobs", json=body, headers=tenant.headers) as response:
            if response.status == 202:
                return [Posted((await response.json())["job_id"], t0)]
            text = await response.text()
        if strict or response.status != 503:
            raise BenchFailure(f"POST /jobs answered {response.status}: {text}")
        # Over capacity: the broker did not confirm in time (the job may still run and names itself) or is stalled.
        answer = json.loads(text)
        return [Posted(answer.get("job_id"), t0, answer.get("error", "503"))]

    async def post_batch(self, tenant: Tenant, first: int, size: int, strict: bool = True) -> list[Posted]:
        t0 = time.perf_counter()
        body = {"jobs": [{"type": NOOP_TYPE, "payload": {"n": first + i}} for i in range(size)]}
        async with self.session.post(f"{self.base_url}/jobs/batch", json=body, headers=tenant.headers) as response:
            if response.status != 200:
                raise BenchFailure(f"POST /jobs/batch answered {response.status}: {await response.text()}")
            answer = await response.json()
        if answer["rejected"] and strict:
            raise BenchFailure(f"POST /jobs/batch rejected {answer['rejected']} jobs: {answer['jobs'][:3]}")
        return [Posted(item.get("job_id"), t0, item.get("error")) for item in answer["jobs"]]

    async def create(self, tenant: Tenant, jobs: int, batch: int, concurrency: int) -> dict[str, float]:
        """Creates `jobs` jobs, one per POST (batch=1) or `batch` per POST /jobs/batch; job id -> POST start.
        Any job refused is a failure here: these runs offer no more than the system takes in."""
        if batch <= 1:
            parts = await bounded(jobs, concurrency, lambda i: self.post_one(tenant, i))
        else:
            sizes = [min(batch, jobs - first) for first in range(0, jobs, batch)]
            parts = await bounded(len(sizes), concurrency, lambda k: self.post_batch(tenant, k * batch, sizes[k]))
        return split_posted([p for part in parts for p in part])[0]

    # -- checking ---------------------------------------------------------------------------------

    async def registry_count(self, tenant: Tenant, status: str = "completed") -> int:
        params = {"status": status, "limit": "1"}
        async with self.session.get(f"{self.base_url}/jobs", params=params, headers=tenant.headers) as response:
            if response.status != 200:
                raise BenchFailure(f"GET /jobs answered {response.status}: {await response.text()}")
            return int((await response.json())["total"])

    async def wait_registry(self, tenant: Tenant, jobs: int, timeout: float, poll: float = 0.25) -> int:
        """Polls the registry until it lists `jobs` completed jobs of the tenant; returns the last count."""
        deadline = time.monotonic() + timeout
        while True:
            count = await self.registry_count(tenant)
            if count >= jobs or time.monotonic() > deadline:
                return count
            await asyncio.sleep(poll)

    async def _finish(
        self,
        watcher: JobWatcher,
        tenant: Tenant,
        started: dict[str, float],
        timeout: float,
        unconfirmed: int = 0,
    ) -> dict[str, Any]:
        """Waits for every accepted job's terminal event, then for the registry to list them all completed.
        `unconfirmed` refused jobs kept their id and may still have run: the registry may list up to that many more."""
        ids = set(started)

        def done() -> bool:
            # A client cut off as slow sees nothing more: no use waiting out the timeout for it.
            return ids <= watcher.terminal.keys() or watcher.cut_off is not None

        await wait_until(done, timeout, watcher.changed)
        seen = ids & watcher.terminal.keys()
        registry = await self.wait_registry(tenant, len(ids), REGISTRY_TIMEOUT_SECONDS)
        return {
            "jobs": len(ids),
            "lost": len(ids - seen),
            "not_completed": len(ids & watcher.failed.keys()),
            "registry_completed": registry,
            "registry_ok": len(ids) <= registry <= len(ids) + unconfirmed,
            "ws_cut_off": watcher.cut_off,
        }

    # -- the runs ------------------------------------------------------------------------------------

    async def full_speed(
        self, tenant: Tenant, jobs: int, batch: int, concurrency: int, timeout: float
    ) -> dict[str, Any]:
        watcher = await JobWatcher.connect(self.session, self.base_url, tenant.headers)
        assert self.worker is not None
        meter = CpuMeter({"orchestrator": self.orchestrator_pid, "worker": self.worker.popen.pid})
        try:
            meter.start()
            t0 = time.perf_counter()
            started = await self.create(tenant, jobs, batch, concurrency)
            created = time.perf_counter() - t0
            outcome = await self._finish(watcher, tenant, started, timeout)
            last = max((watcher.terminal[j] for j in started if j in watcher.terminal), default=time.perf_counter())
            spent = meter.per_job(jobs)
        finally:
            await watcher.close()
        return {**outcome, "create_rate": jobs / created, "jobs_per_s": jobs / (last - t0), **spent}

    async def at_rate(
        self, tenant: Tenant, jobs: int, rate: float, batch_every: float, timeout: float
    ) -> dict[str, Any]:
        """Offers `rate` jobs/s: one POST /jobs per job (batch_every=0), or a batch every `batch_every` s.

        Over capacity the orchestrator refuses what the broker did not confirm in time (503, or a batch
        item's error): those jobs are counted as rejected, not a failure, and left out of the latencies."""
        watcher = await JobWatcher.connect(self.session, self.base_url, tenant.headers)
        try:
            t0 = time.perf_counter()
            if batch_every <= 0:
                parts = await paced(jobs, rate, lambda i: self.post_one(tenant, i, strict=False))
            else:
                per_batch = max(1, round(rate * batch_every))
                sizes = [min(per_batch, jobs - first) for first in range(0, jobs, per_batch)]
                parts = await paced(
                    len(sizes),
                    rate / per_batch,
                    lambda k: self.post_batch(tenant, k * per_batch, sizes[k], strict=False),
                )
            offered_for = time.perf_counter() - t0
            started, rejected = split_posted([p for part in parts for p in part])
            unconfirmed = sum(1 for p in rejected if p.job_id is not None)
            outcome = await self._finish(watcher, tenant, started, timeout, unconfirmed)
            latencies = [watcher.terminal[j] - t for j, t in started.items() if j in watcher.terminal]
            last = max((watcher.terminal[j] for j in started if j in watcher.terminal), default=time.perf_counter())
        finally:
            await watcher.close()
        achieved = len(latencies) / (last - t0)
        return {
            **outcome,
            "rate": rate,
            "offered_rate": jobs / offered_for,
            "done_rate": achieved,
            "rejected": len(rejected),
            "rejected_errors": dict(Counter(p.error for p in rejected)),
            **latency_summary(latencies),
        }


async def single_and_batch(
    args: argparse.Namespace, bench: BatonBench, tenants: dict[str, Tenant]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A warm-up, then Baton at full speed through POST /jobs, then through POST /jobs/batch; BenchFailure as soon
    as a run does not count (`complete`)."""
    progress("baton: warm-up, then full speed with POST /jobs")
    await bench.full_speed(tenants["warmup"], WARMUP_JOBS, 1, args.concurrency, args.timeout)
    single = complete(await bench.full_speed(tenants["single"], args.jobs, 1, args.concurrency, args.timeout))
    progress("baton: full speed with POST /jobs/batch")
    in_flight = max(2, args.concurrency // 16)
    batch = complete(await bench.full_speed(tenants["batch"], args.jobs, args.batch_size, in_flight, args.timeout))
    return single, batch


async def close_baton(system: BatonSystem, urls: tuple[str, str], tenants: list[Tenant]) -> None:
    """Stop Baton's processes and remove what the run left: its tenants' registry keys and lanes, the no-op queues."""
    system.close()
    await system.forget_lanes()
    redis = aioredis.Redis.from_url(urls[1])
    try:
        for tenant in tenants:
            await delete_matching(redis, f"orchestrator:*{tenant.tenant_id}*")
    finally:
        await redis.aclose()
    await delete_service_queues(urls[0], NOOP_SERVICE)


async def fresh_single_and_batch(
    args: argparse.Namespace, urls: tuple[str, str], env: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`single_and_batch` on a freshly started orchestrator and no-op worker (with `env` on top of the
    benchmark's), everything they left removed after."""
    run = os.urandom(5).hex()
    tenants = bench_tenants(run, ("warmup", "single", "batch"))
    extra = dict(env or {})
    system = BatonSystem(*urls, list(tenants.values()), extra_env={**BENCH_LIMITS, **extra})
    try:
        base_url = await system.start_orchestrator()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency * 2)) as session:
            bench = BatonBench(system, base_url, session)
            await bench.start_worker(**extra)
            return await single_and_batch(args, bench, tenants)
    except BaseException:
        print(system.logs(), file=sys.stderr)
        raise
    finally:
        await close_baton(system, urls, list(tenants.values()))
