"""Runs the Celery peer: one `celery worker` process, a threaded publisher, every result collected.

The broker is the same RabbitMQ (its own queue and exchange, deleted at the end); results go to the
same Redis database as Baton's, under keys prefixed with the run's queue name: those keys, and no
others, are deleted at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.bench.celery_app import make_app, result_key_prefix

READY_TIMEOUT_SECONDS = 30.0


@dataclass
class CeleryPeer:
    rabbitmq_url: str
    redis_url: str
    root: str
    pool: str = "threads"
    concurrency: int = 16
    queue: str = field(default_factory=lambda: f"bench-celery-{uuid.uuid4().hex[:10]}")
    _worker: subprocess.Popen[bytes] | None = None
    _log: Path | None = None

    def start(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="baton-bench-celery-"))
        ready, self._log = directory / "ready", directory / "worker.log"
        env = {
            **os.environ,
            "BENCH_CELERY_BROKER": self.rabbitmq_url,
            "BENCH_CELERY_BACKEND": self.redis_url,
            "BENCH_CELERY_QUEUE": self.queue,
            "BENCH_CELERY_READY_FILE": str(ready),
        }
        command = [
            *(sys.executable, "-m", "celery", "-A", "tests.bench.celery_app", "worker"),
            *(f"--pool={self.pool}", "-c", str(self.concurrency), "-Q", self.queue, "-l", "WARNING"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ]
        with self._log.open("wb") as log:
            self._worker = subprocess.Popen(command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not ready.exists():
            if self._worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not start:\n{self._log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)

    def run(self, jobs: int, publishers: int, timeout: float) -> dict[str, Any]:
        """Publishes `jobs` no-op tasks from `publishers` threads, then joins every result."""
        client = make_app(self.rabbitmq_url, self.redis_url, self.queue)
        try:
            t0 = time.perf_counter()
            with ThreadPoolExecutor(publishers) as pool:
                results = list(pool.map(lambda i: client.send_task("bench.noop", args=(i,)), range(jobs)))
            published = time.perf_counter() - t0
            # MGET polling of the stored results (what join_native does for key-value backends); the Redis
            # backend's pub/sub join misses results that were stored before it subscribed.
            expected = {result.id: {"n": i} for i, result in enumerate(results)}
            metas = dict(client.backend.get_many(list(expected), timeout=timeout, interval=0.02))
            elapsed = time.perf_counter() - t0
        finally:
            client.close()
        wrong = sum(1 for task_id, value in expected.items() if metas.get(task_id, {}).get("result") != value)
        return {
            "jobs": jobs,
            "lost": wrong,
            "publish_rate": jobs / published,
            "jobs_per_s": jobs / elapsed,
            "pool": f"{self.pool} x{self.concurrency}",
        }

    def close(self) -> None:
        if self._worker is not None and self._worker.poll() is None:
            self._worker.terminate()
            try:
                self._worker.wait(20)
            except subprocess.TimeoutExpired:
                self._worker.kill()
                self._worker.wait()
        client = make_app(self.rabbitmq_url, self.redis_url, self.queue)
        try:
            with client.connection_for_write() as connection:
                channel = connection.default_channel
                channel.queue_delete(self.queue)
                channel.exchange_delete(self.queue)
        finally:
            client.close()
        backend = redis.Redis.from_url(self.redis_url)
        try:
            doomed = list(backend.scan_iter(match=f"{result_key_prefix(self.queue)}*", count=1000))
            for start in range(0, len(doomed), 1000):
                backend.delete(*doomed[start : start + 1000])
        finally:
            backend.close()
