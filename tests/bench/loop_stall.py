"""How long one request can hold the orchestrator's event loop: a probe client sends a cheap request
every few milliseconds (a GET without a key: answered 401 from memory, no Redis or RabbitMQ) while
another client sends the largest requests the API accepts; the probe's slowest answer bounds the
longest stall every other client saw.

    .venv/bin/python -m tests.bench.loop_stall [--rounds 3]

Starts its own orchestrator and a no-op worker (tests/bench/noop_worker.py) on RabbitMQ and Redis at
RABBITMQ_URL / REDIS_URL (default 127.0.0.1), all on loopback; the jobs it creates run and are deleted
with the run's tenant afterwards. Prints, per request shape, the probe's p50 / p99 / max latency and
the max over the idle baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import redis.asyncio as aioredis

from orchestrator.http.request import MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES
from orchestrator.http.schemas import MAX_BATCH_ITEMS
from tests.bench.common import (
    BENCH_LIMITS,
    NOOP_SERVICE,
    NOOP_TYPE,
    delete_matching,
    delete_service_queues,
    latency_summary,
)
from tests.e2e.harness import BatonSystem, Tenant, wait_for_workers
from tests.services import LOCAL_RABBITMQ_URL, LOCAL_REDIS_URL

PROBE_INTERVAL_S = 0.005
IDLE_SECONDS = 2.0


@dataclass(frozen=True)
class Shape:
    name: str
    path: str
    body: bytes
    expected_status: int


def _fill(budget: int, item: Callable[[int], dict[str, object]]) -> list[dict[str, object]]:
    """As many copies of `item(n)` as fit in `budget` bytes, `n` as large as fits."""
    low, high = 0, budget
    while low < high:  # the largest n whose item fits
        mid = (low + high + 1) // 2
        if len(json.dumps(item(mid))) <= budget:
            low = mid
        else:
            high = mid - 1
    return [item(low)]


def shapes() -> list[Shape]:
    """The largest accepted requests: a single job and a full batch, each once with many small values
    (the parser's slowest input per byte) and once with text (its fastest)."""
    per_item = (MAX_BATCH_BODY_BYTES - 64) // MAX_BATCH_ITEMS - 4  # room for the brackets and commas

    def numbers(n: int) -> dict[str, object]:
        return {"type": NOOP_TYPE, "payload": {"values": [0] * n}}

    def text(n: int) -> dict[str, object]:
        return {"type": NOOP_TYPE, "payload": {"text": "x" * n}}

    single_budget = MAX_BODY_BYTES - 16
    out = []
    for label, make in (("numbers", numbers), ("text", text)):
        [single] = _fill(single_budget, make)
        out.append(Shape(f"POST /jobs, 1 job of {label}", "/jobs", json.dumps(single).encode(), 202))
        [item] = _fill(per_item, make)
        batch = {"jobs": [item] * MAX_BATCH_ITEMS}
        name = f"POST /jobs/batch, {MAX_BATCH_ITEMS} jobs of {label}"
        out.append(Shape(name, "/jobs/batch", json.dumps(batch).encode(), 200))
    too_big = b'{"jobs": [' + b"0," * (MAX_BATCH_BODY_BYTES // 2) + b"0]}"
    out.append(Shape("POST /jobs/batch over the cap", "/jobs/batch", too_big, 413))
    return out


async def probe(session: aiohttp.ClientSession, base_url: str, stop: asyncio.Event) -> list[float]:
    latencies = []
    while not stop.is_set():
        started = time.perf_counter()
        async with session.get(f"{base_url}/jobs/no-such-job") as response:
            await response.read()
            assert response.status == 401, response.status
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(PROBE_INTERVAL_S)
    return latencies


def _send(url: str, body: bytes, tenant: Tenant) -> int:
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    for name, value in tenant.headers.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def measure(base_url: str, tenant: Tenant, shape: Shape | None) -> dict[str, float]:
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as probe_session:
        prober = asyncio.create_task(probe(probe_session, base_url, stop))
        await asyncio.sleep(0.3)
        started = time.perf_counter()
        if shape is None:
            await asyncio.sleep(IDLE_SECONDS)
        else:
            # Sent from a thread with a blocking client: writing megabytes must not stall the probe's own loop.
            status = await asyncio.to_thread(_send, base_url + shape.path, shape.body, tenant)
            if status != shape.expected_status:
                raise RuntimeError(f"{shape.name}: {status}, expected {shape.expected_status}")
        took = time.perf_counter() - started
        await asyncio.sleep(0.3)
        stop.set()
        summary = latency_summary(await prober)
    return {**summary, "request_s": took}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="each request shape is sent this many times")
    args = parser.parse_args()
    rabbitmq_url = os.environ.get("RABBITMQ_URL") or LOCAL_RABBITMQ_URL
    redis_url = os.environ.get("REDIS_URL") or LOCAL_REDIS_URL
    tenant = Tenant(f"bench-stall-{os.urandom(4).hex()}", os.urandom(16).hex())
    system = BatonSystem(rabbitmq_url, redis_url, [tenant], extra_env=BENCH_LIMITS)
    try:
        base_url = await system.start_orchestrator()
        system.start_worker("tests.bench.noop_worker:worker", name="worker")
        await wait_for_workers(base_url, [NOOP_SERVICE])
        rows = [("idle", await measure(base_url, tenant, None))]
        for shape in shapes():
            for _ in range(args.rounds):
                label = f"{shape.name} ({len(shape.body) / 2**20:.2f} MiB)"
                rows.append((label, await measure(base_url, tenant, shape)))
        idle_max = rows[0][1]["max_ms"]
        print(f"{'request':<58} {'probe p50':>10} {'p99':>8} {'max':>8} {'max/idle':>9} {'request':>9}")
        for name, row in rows:
            print(
                f"{name:<58} {row['p50_ms']:>8.1f}ms {row['p99_ms']:>6.1f}ms {row['max_ms']:>6.1f}ms "
                f"{row['max_ms'] / idle_max:>8.1f}x {row['request_s'] * 1000:>7.0f}ms"
            )
    finally:
        system.close()
        await system.forget_lanes()  # its tenant's lanes of the services it used
        redis = aioredis.Redis.from_url(redis_url)
        try:
            await delete_matching(redis, f"orchestrator:*{tenant.tenant_id}*")
        finally:
            await redis.aclose()
        await delete_service_queues(rabbitmq_url, NOOP_SERVICE)


if __name__ == "__main__":
    asyncio.run(main())
