"""A peer's worker process (Celery's, Dramatiq's): started with its log in a temp folder, ready when it
writes its ready file, stopped with SIGTERM (then SIGKILL); and the peer's full-speed run."""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import redis

from tests.bench.common import WARMUP_JOBS

READY_TIMEOUT_SECONDS = 30.0
PUBLISHERS = 8  # threads publishing for a peer (each publish waits for its confirm)


@dataclass
class PeerProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, command: list[str], cwd: str, env: dict[str, str], ready: Path) -> PeerProcess:
        """Starts `command` and waits until it wrote `ready` (made by `ready_file(name)`)."""
        log = ready.with_name("worker.log")
        with log.open("wb") as out:
            popen = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not ready.exists():
            if popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} worker did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        return cls(name, popen, log)

    def stop(self, timeout: float = 30.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def worker_env(prefix: str, rabbitmq_url: str, redis_url: str, queue: str, ready: Path) -> dict[str, str]:
    """What a peer's app module reads (BENCH_<PEER>_BROKER, _BACKEND, _QUEUE, _READY_FILE), over this environment."""
    return {
        **os.environ,
        f"{prefix}_BROKER": rabbitmq_url,
        f"{prefix}_BACKEND": redis_url,
        f"{prefix}_QUEUE": queue,
        f"{prefix}_READY_FILE": str(ready),
    }


def delete_keys(redis_url: str, prefix: str) -> None:
    """Deletes the peer's result keys of the run: those starting with `prefix` (the run's queue name)."""
    store = redis.Redis.from_url(redis_url)
    try:
        doomed = list(store.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(doomed), 1000):
            store.delete(*doomed[start : start + 1000])
    finally:
        store.close()


def ready_file(name: str) -> Path:
    """Where a peer's worker announces it is ready, in a fresh folder that also gets its log."""
    return Path(tempfile.mkdtemp(prefix=f"baton-bench-{name}-")) / "ready"


class Peer(Protocol):
    def start(self) -> None: ...
    def run(self, jobs: int, publishers: int, timeout: float) -> dict[str, Any]: ...
    def close(self) -> None: ...


def full_speed(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    """A warm-up, then the measured run, on a freshly started worker that is stopped and cleaned up after."""
    peer.start()
    try:
        peer.run(WARMUP_JOBS, publishers=PUBLISHERS, timeout=args.timeout)
        return peer.run(args.jobs, publishers=PUBLISHERS, timeout=args.timeout)
    finally:
        peer.close()
