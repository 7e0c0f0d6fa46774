"""Runs the Dramatiq peer: one `dramatiq` worker process (threads), a threaded publisher, every result collected.

The broker is the same RabbitMQ with publisher confirms (its own queue and the delay and dead-letter
queues Dramatiq adds to it, all deleted at the end); results go to the same Redis database as Baton's
through Dramatiq's Results middleware, under keys that start with the run's queue name: those keys,
and no others, are deleted at the end.
"""

from __future__ import annotations

import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dramatiq import Broker, Message, Middleware, Worker
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from tests.bench.cpu import CpuMeter
from tests.bench.peer_process import PeerProcess, delete_keys, ready_file, worker_env

NOOP_ACTOR = "bench_noop"
POLL_SECONDS = 0.02
KEYS_PER_POLL = 1000


class ReadyFile(Middleware):
    """Writes a file once the worker has booted (its consumers and threads started): Celery's worker_ready."""

    def __init__(self, path: str) -> None:
        self.path = path

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        Path(self.path).write_text("ready")


def results_namespace(queue: str) -> str:
    """What every result key of the run starts with: the peer deletes these keys, and only these."""
    return queue


def results_backend(redis_url: str, queue: str) -> RedisBackend:
    # Readable keys (`<namespace>:<queue>:<actor>:<message id>`, not an MD5) so the run's can be found and deleted.
    return RedisBackend(url=redis_url, namespace=results_namespace(queue), use_namespace_prefix_keys=True)


def make_broker(rabbitmq_url: str, redis_url: str, queue: str, ready_file: str | None = None) -> RabbitmqBroker:
    # The same guarantees as Baton: confirmed persistent publishes (Dramatiq's messages are persistent),
    # the result stored before the ack (Dramatiq acks after its middleware ran); a priority queue like Baton's.
    broker = RabbitmqBroker(url=rabbitmq_url, confirm_delivery=True, max_priority=10)
    broker.add_middleware(Results(backend=results_backend(redis_url, queue)))  # type: ignore[no-untyped-call]
    if ready_file:
        broker.add_middleware(ReadyFile(ready_file))
    return broker


def queue_names(queue: str) -> list[str]:
    """The queue and the two Dramatiq declares beside it: delayed messages and dead letters."""
    return [queue, f"{queue}.DQ", f"{queue}.XQ"]


@dataclass
class DramatiqPeer:
    rabbitmq_url: str
    redis_url: str
    root: str
    processes: int = 1
    threads: int = 16
    queue: str = field(default_factory=lambda: f"bench-dramatiq-{uuid.uuid4().hex[:10]}")
    _worker: PeerProcess | None = None

    @property
    def label(self) -> str:
        return f"processes x{self.processes}, threads x{self.threads}"

    def start(self) -> None:
        ready = ready_file("dramatiq")
        env = worker_env("BENCH_DRAMATIQ", self.rabbitmq_url, self.redis_url, self.queue, ready)
        command = [
            *(sys.executable, "-m", "dramatiq", "tests.bench.dramatiq_app:broker"),
            *("-p", str(self.processes), "-t", str(self.threads), "-Q", self.queue, "--path", self.root),
            "--worker-shutdown-timeout",
            "20000",
        ]
        self._worker = PeerProcess.start("dramatiq", command, self.root, env, ready)

    def run(self, jobs: int, publishers: int, timeout: float) -> dict[str, Any]:
        """Publishes `jobs` no-op messages from `publishers` threads, then collects every result."""
        assert self._worker is not None
        client = make_broker(self.rabbitmq_url, self.redis_url, self.queue)
        backend = results_backend(self.redis_url, self.queue)
        meter = CpuMeter({"dramatiq worker": self._worker.popen.pid})
        try:
            meter.start()
            t0 = time.perf_counter()
            with ThreadPoolExecutor(publishers) as pool:
                messages = list(pool.map(lambda i: client.enqueue(self._message(i)), range(jobs)))
            published = time.perf_counter() - t0
            results = self._collect(backend, messages, timeout)
            elapsed = time.perf_counter() - t0
            # CPU only: their Python sockets send with send(), which /proc's write count leaves out.
            cpu_ms = meter.per_job(jobs)["cpu_ms"]
        finally:
            client.close()
            backend.client.close()
        wrong = sum(1 for i, message in enumerate(messages) if results.get(message.message_id) != {"n": i})
        return {
            "jobs": jobs,
            "lost": wrong,
            "publish_rate": jobs / published,
            "jobs_per_s": jobs / elapsed,
            "pool": self.label,
            "cpu_ms": cpu_ms,
        }

    def _message(self, i: int) -> Message[Any]:
        return Message(queue_name=self.queue, actor_name=NOOP_ACTOR, args=(i,), kwargs={}, options={})

    @staticmethod
    def _collect(backend: RedisBackend, messages: list[Message[Any]], timeout: float) -> dict[str, Any]:
        """Polls the stored results with pipelined LINDEX (what the backend's non-blocking get does, one
        round trip per thousand keys instead of one per message) until every one is there or the timeout."""
        pending = {backend.build_message_key(message): message.message_id for message in messages}
        results: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            keys = list(pending)[:KEYS_PER_POLL]
            with backend.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.lindex(key, 0)
                stored = pipe.execute()
            for key, data in zip(keys, stored, strict=True):
                if data is not None:
                    results[pending.pop(key)] = backend.unwrap_result(backend.encoder.decode(data))
            if len(keys) < KEYS_PER_POLL or all(data is None for data in stored):
                time.sleep(POLL_SECONDS)
        return results

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        client = make_broker(self.rabbitmq_url, self.redis_url, self.queue)
        try:
            channel = client.channel
            for name in queue_names(self.queue):
                channel.queue_delete(name)
        finally:
            client.close()
        delete_keys(self.redis_url, f"{results_namespace(self.queue)}:")
