"""The README's first command brings the system up (and starts Redis when it is down); down.sh stops it.

The Redis that is down is one of the test's own: REDIS_URL names a port nothing listens on, so up.sh
has to start a Redis there. The machine's Redis and RabbitMQ are never stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import urllib.request
import uuid
from pathlib import Path

import aio_pika
import pytest
import redis

from protocol.topology import lane_queue
from tests.e2e.harness import ROOT, free_port, new_tenants
from tests.services import reachable

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BATON_PROCESSES = 5  # the orchestrator and one worker per built-in service


def test_up_starts_everything_even_with_redis_down_and_down_stops_only_that(
    tmp_path: Path, rabbitmq_url: str, redis_url: str
) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("this test has up.sh start a Redis of its own: install redis-server (apt-get install redis-server)")
    tenant = new_tenants(1)[0]
    port, redis_port, metrics_port = free_port(), free_port(), free_port()  # the query worker's metrics: the first
    private_redis = f"redis://127.0.0.1:{redis_port}/0"
    assert not reachable(private_redis, redis_port)
    env = {
        **os.environ,
        "BATON_NO_DOCKER": "1",
        "BATON_RUN_DIR": str(tmp_path),
        "ORCHESTRATOR_PORT": str(port),
        "BATON_WORKER_METRICS_PORT": str(metrics_port),
        "BATON_API_KEYS": f"{tenant.tenant_id}:{tenant.key}",
        "RABBITMQ_URL": rabbitmq_url,
        "REDIS_URL": private_redis,
    }
    # Something of someone else's that down.sh must leave alone.
    shared = redis.Redis.from_url(redis_url)
    sentinel = f"e2e:readme:{uuid.uuid4().hex}"
    shared.set(sentinel, "kept", ex=600)
    pids: list[int] = []
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh", "--detach"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
        )
        pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Baton is up" in up.stdout
        assert reachable(private_redis, redis_port), "up.sh did not start Redis on the port of REDIS_URL"
        assert len(pids) == BATON_PROCESSES + 1, sorted(p.name for p in tmp_path.glob("*.pid"))
        body = json.dumps({"type": "llm_request", "payload": {"prompt": "hello"}, "wait": 20}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/jobs", body, {**tenant.headers, "Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            answer = json.load(response)
        assert answer["status"] == "completed", answer
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert "<html" in response.read().decode().lower()
        assert f"query  http://127.0.0.1:{metrics_port}/metrics" in up.stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        assert 'baton_worker_tasks_total{outcome="completed",service="query",type="llm_request"} 1.0' in text
    finally:
        down = subprocess.run(
            ["bash", "scripts/down.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        for pid in pids:  # whatever down.sh failed to stop, so that nothing outlives the test
            if process_alive(pid) and started_here(pid, tmp_path, redis_port):
                os.kill(pid, signal.SIGKILL)
        kept = shared.get(sentinel)
        shared.delete(sentinel)
        shared.close()
        # The lane its job opened: listed in the private Redis (gone now), held by the shared broker.
        asyncio.run(delete_queues(rabbitmq_url, [lane_queue("query", tenant.tenant_id)]))
    assert down.returncode == 0, down.stderr
    assert [pid for pid in pids if process_alive(pid)] == [], "down.sh left processes running"
    assert not reachable(private_redis, redis_port), "down.sh did not stop the Redis up.sh started"
    assert kept == b"kept", "the machine's Redis lost data"


async def delete_queues(rabbitmq_url: str, names: list[str]) -> None:
    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)


def started_here(pid: int, run_dir: Path, redis_port: int) -> bool:
    """The pid is still one of up.sh's processes (a Baton process of ours or our Redis), not a reused one."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return f":{redis_port}" in command or (str(ROOT) in command and " -m " in command)


def process_alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text().lower()
