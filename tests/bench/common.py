"""Small helpers every benchmark part shares: percentiles, paced sending, process memory, cleanup."""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aio_pika.exceptions
import redis.asyncio as aioredis

from protocol.topology import service_queues
from tests.e2e.harness import Tenant

# Every job any part of the benchmark creates carries this job type (tests/bench/noop_worker.py).
NOOP_TYPE = "bench_noop"
NOOP_SERVICE = "bench-noop"
WARMUP_JOBS = 200  # before each full-speed run: connections, caches and queues warmed up
# The benchmark measures throughput, not the limits: a quota it never reaches (still checked, so its
# Redis round trip is in the figures) and socket caps above the fan-out's largest ramp.
BENCH_LIMITS = {
    "BATON_JOB_QUOTA": "1000000/s:1000000",
    "BATON_WS_MAX_CONNECTIONS": "100000",
    "BATON_WS_MAX_PER_TENANT": "100000",
}


def progress(message: str) -> None:
    """One line on stderr per step, so a long run shows where it is (the table goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def latency_rates(defaults: dict[str, str], chosen: dict[str, str | None], both: str | None) -> dict[str, list[float]]:
    """Offered rates per latency mode: the mode's own option, else the one for both modes, else its default."""
    return {
        mode: [float(r) for r in (chosen.get(mode) or both or default).split(",") if r]
        for mode, default in defaults.items()
    }


def run_id() -> str:
    return uuid.uuid4().hex[:10]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def latency_summary(latencies_s: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(latencies_s, 0.5) * 1000,
        "p99_ms": percentile(latencies_s, 0.99) * 1000,
        "max_ms": max(latencies_s, default=float("nan")) * 1000,
    }


async def paced(count: int, rate: float, start: Callable[[int], Awaitable[Any]]) -> list[Any]:
    """Starts `start(i)` at t0 + i/rate whatever the previous ones are doing (an open-loop offered rate)."""
    tasks: list[asyncio.Task[Any]] = []
    t0 = time.perf_counter()
    for i in range(count):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(start(i)))
    return await asyncio.gather(*tasks)


async def bounded(count: int, concurrency: int, start: Callable[[int], Awaitable[Any]]) -> list[Any]:
    """Runs `start(i)` for every i with at most `concurrency` in flight (closed loop: full speed)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Any:
        async with gate:
            return await start(i)

    return await asyncio.gather(*(one(i) for i in range(count)))


async def wait_until(done: Callable[[], bool], timeout: float, changed: asyncio.Event) -> bool:
    """Until `done()` (re-checked whenever `changed` is set, at least every second) or the timeout."""
    deadline = time.monotonic() + timeout
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        changed.clear()
        try:
            await asyncio.wait_for(changed.wait(), min(remaining, 1.0))
        except TimeoutError:
            pass
    return True


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS, in KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def raise_fd_limit(wanted: int) -> int:
    """Raises this process's soft open-files limit towards `wanted` (children inherit it); returns the new one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


async def redis_used_memory(client: aioredis.Redis) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])


async def delete_matching(client: aioredis.Redis, pattern: str) -> int:
    """UNLINKs every key matching `pattern` (a unique run or tenant id is part of it); returns how many."""
    deleted = 0
    batch: list[str] = []
    async for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += await client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += await client.unlink(*batch)
    return deleted


@dataclass
class Stopwatch:
    """Wall time since creation, in seconds."""

    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


async def delete_service_queues(rabbitmq_url: str, service: str) -> None:
    """Deletes the queues Baton declared for the benchmark's service, each only if it is empty."""
    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        for spec in service_queues(service):
            channel = await connection.channel()
            try:
                await channel.queue_delete(spec.name, if_empty=True)
            except aio_pika.exceptions.ChannelClosed:
                pass  # not empty (or in use): left as it is, like any queue with work in it


def bench_tenants(run: str, parts: Iterable[str]) -> dict[str, Tenant]:
    """One tenant per part of a run, named `bench-<run>-<part>` (the clean-up finds them by that name)."""
    return {part: Tenant(f"bench-{run}-{part}", os.urandom(16).hex()) for part in parts}
