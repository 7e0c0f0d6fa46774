"""The README's first command brings the system up (and starts Redis when it is down); down.sh stops it."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.harness import ROOT, free_port, new_tenants
from tests.services import reachable

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


SHARED_REDIS_ARGS = ["--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no"]


def redis_cli(*args: str) -> None:
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", *args], capture_output=True, timeout=10)


def test_up_starts_everything_even_with_redis_down_and_down_stops_it(tmp_path: Path, redis_url: str) -> None:
    if not redis_url.startswith(("redis://127.0.0.1:6379", "redis://localhost:6379")):
        pytest.fail(f"this test stops the local Redis and needs REDIS_URL to be it, got {redis_url}")
    tenant = new_tenants(1)[0]
    port = free_port()
    env = {
        **os.environ,
        "BATON_NO_DOCKER": "1",
        "BATON_RUN_DIR": str(tmp_path),
        "ORCHESTRATOR_PORT": str(port),
        "BATON_API_KEYS": f"{tenant.tenant_id}:{tenant.key}",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    redis_cli("shutdown", "nosave")
    deadline = time.monotonic() + 10
    while reachable("redis://127.0.0.1:6379", 6379) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        up = subprocess.run(
            ["bash", "scripts/up.sh", "--detach"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
        )
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Baton is up" in up.stdout
        assert reachable("redis://127.0.0.1:6379", 6379), "up.sh did not start Redis"
        pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
        assert len(pids) == 5  # orchestrator + one worker per built-in service
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
    finally:
        down = subprocess.run(
            ["bash", "scripts/down.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        if not reachable("redis://127.0.0.1:6379", 6379):
            subprocess.run(["redis-server", *SHARED_REDIS_ARGS], timeout=10)
    assert down.returncode == 0, down.stderr
    assert [pid for pid in pids if process_alive(pid)] == [], "down.sh left processes running"


def process_alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text().lower()
