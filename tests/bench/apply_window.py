"""Applying task events: one EVALSHA of APPLY_EVENT per event (through the PipelineBatcher, as the event
consumer did with its 32 lanes) vs one APPLY_EVENTS per delivery window, in the same run.

    tests/bench/.venv/bin/python -m tests.bench.apply_window [--windows 20] [--window 256] [--repeat 3]

Each window's jobs are created first (not measured), then their events applied in three waves (running,
progress, completed), every event of a wave at once: per event, `window` concurrent `apply` calls that
the batcher coalesces into pipelines; per window, one `apply_many` of the wave. Prints, per event, this
process's CPU (the orchestrator's side: building the call, redis-py, the reply) and Redis's CPU, from
INFO commandstats (the scripts' own time) and INFO cpu (everything the server did).

Runs a redis-server of its own on a free port (`redis-server` must be on PATH): the shared Redis's
figures would count the other clients' work too. REDIS_URL instead measures against that Redis.

Measured on 2026-12-03 (2 cores shared, load average 4-5, `--windows 20 --repeat 2`), per event: client CPU
80-97 us one EVALSHA each vs 38-53 us by window (0.45-0.58x), Redis CPU 40-54 us vs 36-50 us (0.76-0.93x).
Commandstats usec counts wall time inside the call: under CPU contention it overstates and is noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis.asyncio as aioredis

from orchestrator.models import JobRecord
from orchestrator.store.registry import RedisTaskRegistry
from protocol.events import ATTEMPT_SEQ_STRIDE, EventType, TaskEvent
from tests.records import event_for, make_record

FIRST = ATTEMPT_SEQ_STRIDE


@dataclass(frozen=True)
class Cost:
    """Microseconds per event."""

    client: float
    scripts: float  # Redis's commandstats: the EVALSHA calls themselves
    server: float  # Redis's whole CPU (parsing, replies, the scripts)


def waves(records: list[JobRecord]) -> list[list[TaskEvent]]:
    progress = {"percentage": 50.0, "message": "half way"}
    return [
        [event_for(r, EventType.TASK_STATUS_UPDATE, FIRST + 1, status="running") for r in records],
        [event_for(r, EventType.TASK_STATUS_UPDATE, FIRST + 2, status="running", progress=progress) for r in records],
        [event_for(r, EventType.TASK_COMPLETED, FIRST + 3, result={"answer": r.job_id}) for r in records],
    ]


async def one_by_one(registry: RedisTaskRegistry, wave: list[TaskEvent]) -> int:
    outcomes = await asyncio.gather(*(registry.apply(event) for event in wave))
    return sum(o.update is not None for o in outcomes)


async def by_window(registry: RedisTaskRegistry, wave: list[TaskEvent]) -> int:
    return sum(o.update is not None for o in await registry.apply_many(wave))


Apply = Callable[[RedisTaskRegistry, list[TaskEvent]], Awaitable[int]]


async def redis_usec(client: aioredis.Redis) -> tuple[float, float]:
    """Redis's EVALSHA usec so far, and its whole CPU (user + sys) in usec."""
    stats = await client.info("commandstats")
    cpu = await client.info("cpu")
    evalsha = stats.get("cmdstat_evalsha", {}).get("usec", 0)
    return float(evalsha), 1e6 * (float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]))


async def measure(client: aioredis.Redis, tenant: str, apply: Apply, windows: int, size: int) -> Cost:
    registry = RedisTaskRegistry(client, ttl_seconds=600)
    client_s = scripts_us = server_us = 0.0
    events = 0
    for _ in range(windows):
        records = [make_record(tenant) for _ in range(size)]
        await asyncio.gather(*(registry.create(r) for r in records))
        for wave in waves(records):
            (scripts_before, server_before), before = await redis_usec(client), time.process_time()
            applied = await apply(registry, wave)
            client_s += time.process_time() - before
            scripts_after, server_after = await redis_usec(client)
            scripts_us += scripts_after - scripts_before
            server_us += server_after - server_before
            if applied != len(wave):
                raise RuntimeError(f"only {applied} of {len(wave)} events applied")
            events += len(wave)
    return Cost(1e6 * client_s / events, scripts_us / events, server_us / events)


@asynccontextmanager
async def private_redis() -> AsyncIterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="baton-bench-redis-")
    server = await asyncio.create_subprocess_exec(
        *("redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", folder, "--save", ""),
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        client = aioredis.Redis(port=port)
        for _ in range(100):
            try:
                await client.ping()
                break
            except OSError:
                await asyncio.sleep(0.05)
        await client.aclose()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        await server.wait()
        shutil.rmtree(folder, ignore_errors=True)


async def run(url: str, windows: int, sizes: list[int], repeat: int) -> None:
    client = aioredis.Redis.from_url(url)
    tenant = f"bench-window-{os.getpid()}"
    try:
        print("per event, microseconds: client CPU | Redis EVALSHA (commandstats) | Redis CPU (all)")
        for size in sizes:
            for _ in range(repeat):
                single = await measure(client, tenant, one_by_one, windows, size)
                window = await measure(client, tenant, by_window, windows, size)
                print(
                    f"window {size:4d}  one EVALSHA each {single.client:6.1f} | {single.scripts:5.1f} | "
                    f"{single.server:5.1f}   one APPLY_EVENTS {window.client:6.1f} | {window.scripts:5.1f} | "
                    f"{window.server:5.1f}   ratio client {window.client / single.client:.2f} "
                    f"Redis {window.server / single.server:.2f}"
                )
    finally:
        async for key in client.scan_iter(match=f"orchestrator:*{tenant}*", count=1000):
            await client.delete(key)
        await client.aclose()


async def main(windows: int, sizes: list[int], repeat: int) -> None:
    url = os.environ.get("REDIS_URL")
    if url:
        await run(url, windows, sizes, repeat)
        return
    async with private_redis() as url:
        await run(url, windows, sizes, repeat)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=20, help="windows per measurement (3 waves each)")
    parser.add_argument("--window", type=int, action="append", help="events per window (repeatable)")
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    asyncio.run(main(options.windows, options.window or [16, 64, 256], options.repeat))
