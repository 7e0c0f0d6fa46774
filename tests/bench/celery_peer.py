"""Runs the Celery peer: one `celery worker` process, a threaded publisher, every result collected.

The broker is the same RabbitMQ (its own queue and exchange, deleted at the end); results go to the
same Redis database as Baton's, under keys prefixed with the run's queue name: those keys, and no
others, are deleted at the end.
"""

from __future__ import annotations

import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.bench.celery_app import make_app, result_key_prefix
from tests.bench.cpu import CpuMeter
from tests.bench.peer_process import PeerProcess, delete_keys, ready_file, worker_env


@dataclass
class CeleryPeer:
    rabbitmq_url: str
    redis_url: str
    root: str
    pool: str = "threads"
    concurrency: int = 16
    queue: str = field(default_factory=lambda: f"bench-celery-{uuid.uuid4().hex[:10]}")
    _worker: PeerProcess | None = None

    def start(self) -> None:
        ready = ready_file("celery")
        env = worker_env("BENCH_CELERY", self.rabbitmq_url, self.redis_url, self.queue, ready)
        command = [
            *(sys.executable, "-m", "celery", "-A", "tests.bench.celery_app", "worker"),
            *(f"--pool={self.pool}", "-c", str(self.concurrency), "-Q", self.queue, "-l", "WARNING"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ]
        self._worker = PeerProcess.start("celery", command, self.root, env, ready)

    def run(self, jobs: int, publishers: int, timeout: float) -> dict[str, Any]:
        """Publishes `jobs` no-op tasks from `publishers` threads, then joins every result."""
        assert self._worker is not None
        client = make_app(self.rabbitmq_url, self.redis_url, self.queue)
        meter = CpuMeter({"celery worker": self._worker.popen.pid})
        try:
            meter.start()
            t0 = time.perf_counter()
            with ThreadPoolExecutor(publishers) as pool:
                results = list(pool.map(lambda i: client.send_task("bench.noop", args=(i,)), range(jobs)))
            published = time.perf_counter() - t0
            # MGET polling of the stored results (what join_native does for key-value backends); the Redis
            # backend's pub/sub join misses results that were stored before it subscribed.
            expected = {result.id: {"n": i} for i, result in enumerate(results)}
            metas = dict(client.backend.get_many(list(expected), timeout=timeout, interval=0.02))
            elapsed = time.perf_counter() - t0
            # CPU only: their Python sockets send with send(), which /proc's write count leaves out.
            cpu_ms = meter.per_job(jobs)["cpu_ms"]
        finally:
            client.close()
        wrong = sum(1 for task_id, value in expected.items() if metas.get(task_id, {}).get("result") != value)
        return {
            "jobs": jobs,
            "lost": wrong,
            "publish_rate": jobs / published,
            "jobs_per_s": jobs / elapsed,
            "pool": f"{self.pool} x{self.concurrency}",
            "cpu_ms": cpu_ms,
        }

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        client = make_app(self.rabbitmq_url, self.redis_url, self.queue)
        try:
            with client.connection_for_write() as connection:
                channel = connection.default_channel
                channel.queue_delete(self.queue)
                channel.exchange_delete(self.queue)
        finally:
            client.close()
        delete_keys(self.redis_url, result_key_prefix(self.queue))
