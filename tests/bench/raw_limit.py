"""The limit: Baton's round trip done with nothing but aio-pika, msgpack and one Redis HSET.

producer (this process) --envelope, persistent, confirmed--> task queue --> raw worker PROCESS
raw worker --result event, persistent, confirmed, then ack--> events exchange --> results queue
results consumer (this process) --HSET result--> Redis, then ack; the job is done there.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import msgpack
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from tests.bench.common import NOOP_TYPE, bounded, latency_summary, paced, run_id, wait_until
from tests.bench.cpu import CpuMeter
from tests.bench.raw_topology import RawNames, RawTopology, declare_topology, delete_topology, envelope, task_message

READY_TIMEOUT_SECONDS = 20.0


@dataclass
class RawLimit:
    rabbitmq_url: str
    redis_url: str
    root: str
    prefetch: int = 64
    names: RawNames = field(default_factory=lambda: RawNames(run_id()))
    done: dict[str, float] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _connections: list[AbstractRobustConnection] = field(default_factory=list)
    _channel: AbstractChannel | None = None
    _topology: RawTopology | None = None
    _redis: aioredis.Redis | None = None
    _worker: asyncio.subprocess.Process | None = None
    _results: AbstractQueue | None = None
    _consumer_tag: str | None = None

    @property
    def results_key(self) -> str:
        return f"bench:limit:{self.names.run}"

    async def start(self) -> None:
        producer = await aio_pika.connect_robust(self.rabbitmq_url)
        consumer = await aio_pika.connect_robust(self.rabbitmq_url)
        self._connections += [producer, consumer]
        self._channel = await producer.channel(publisher_confirms=True)
        self._topology = await declare_topology(self._channel, self.names)
        self._redis = aioredis.Redis.from_url(self.redis_url)
        consume_channel = await consumer.channel()
        await consume_channel.set_qos(prefetch_count=512)
        self._results = await consume_channel.get_queue(self.names.results_queue, ensure=False)
        self._consumer_tag = await self._results.consume(self._on_result)
        self._worker = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tests.bench.raw_worker", self.rabbitmq_url, self.names.run),
            cwd=self.root,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self._worker.stdout is not None
        line = await asyncio.wait_for(self._worker.stdout.readline(), READY_TIMEOUT_SECONDS)
        if b"ready" not in line:
            rest = await asyncio.wait_for(self._worker.stdout.read(), READY_TIMEOUT_SECONDS)
            raise RuntimeError(f"raw worker did not start: {(line + rest).decode(errors='replace')}")

    async def _on_result(self, message: AbstractIncomingMessage) -> None:
        assert self._redis is not None
        event = msgpack.unpackb(message.body)
        await self._redis.hset(self.results_key, event["global_task_id"], msgpack.packb(event["data"]))
        self.done[event["global_task_id"]] = time.perf_counter()
        self._changed.set()
        await message.ack()

    async def _publish(self, i: int) -> tuple[str, float]:
        assert self._topology is not None
        body = envelope("bench-limit", NOOP_TYPE, {"n": i})
        t0 = time.perf_counter()
        await self._topology.tasks.publish(task_message(body), routing_key="limit", mandatory=True)
        return body["task_id"], t0

    async def _wait(self, ids: set[str], timeout: float) -> int:
        await wait_until(lambda: ids <= self.done.keys(), timeout, self._changed)
        return len(ids - self.done.keys())

    async def full_speed(self, jobs: int, concurrency: int, timeout: float) -> dict[str, Any]:
        assert self._worker is not None
        meter = CpuMeter({"raw worker": self._worker.pid})
        meter.start()
        t0 = time.perf_counter()
        started = dict(await bounded(jobs, concurrency, self._publish))
        published = time.perf_counter() - t0
        lost = await self._wait(set(started), timeout)
        finished = max((self.done[j] for j in started if j in self.done), default=time.perf_counter())
        return {
            "jobs": jobs,
            "lost": lost,
            "publish_rate": jobs / published,
            "jobs_per_s": jobs / (finished - t0),
            **meter.per_job(jobs),
        }

    async def at_rate(self, jobs: int, rate: float, timeout: float) -> dict[str, Any]:
        started = dict(await paced(jobs, rate, self._publish))
        lost = await self._wait(set(started), timeout)
        latencies = [self.done[j] - t for j, t in started.items() if j in self.done]
        return {"jobs": jobs, "lost": lost, "rate": rate, **latency_summary(latencies)}

    async def stored(self) -> int:
        """How many results the Redis hash holds (every done job must be there)."""
        assert self._redis is not None
        return int(await self._redis.hlen(self.results_key))

    async def close(self) -> None:
        if self._worker is not None and self._worker.returncode is None:
            self._worker.terminate()
            try:
                await asyncio.wait_for(self._worker.wait(), 10)
            except TimeoutError:
                self._worker.kill()
                await self._worker.wait()
        if self._results is not None and self._consumer_tag is not None:
            await self._results.cancel(self._consumer_tag)
        if self._channel is not None:
            await delete_topology(self._channel, self.names)
        if self._redis is not None:
            await self._redis.delete(self.results_key)
            await self._redis.aclose()
        for connection in self._connections:
            await connection.close()
