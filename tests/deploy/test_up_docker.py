"""scripts/up.sh and down.sh on the Docker path, with a stand-in `docker` on PATH (this machine has no
Docker engine): up.sh starts the compose project with the API key it prints, waits for /health, and prints
the dashboard, Grafana and Prometheus URLs; down.sh stops the project."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Answers `docker info` and `docker compose version` as a working engine would; `compose up` starts a stand-in
# orchestrator (an HTTP server whose /health answers 200) and `compose down` stops it. Every call is logged.
FAKE_DOCKER = r"""#!/usr/bin/env bash
echo "$* | keys=${BATON_API_KEYS:-} port=${ORCHESTRATOR_PORT:-}" >>"$FAKE_DOCKER_LOG"
case "$*" in
  info) exit 0 ;;
  "compose version") [ "${FAKE_COMPOSE_MISSING:-}" = 1 ] && exit 1; echo "Docker Compose version v2" ;;
  "compose up -d --build")
    mkdir -p "$FAKE_DOCKER_DIR/site" && echo ok >"$FAKE_DOCKER_DIR/site/health"
    nohup python3 -m http.server "$ORCHESTRATOR_PORT" --bind 127.0.0.1 --directory "$FAKE_DOCKER_DIR/site" \
      >/dev/null 2>&1 &
    echo $! >"$FAKE_DOCKER_DIR/server.pid" ;;
  *" down") kill "$(cat "$FAKE_DOCKER_DIR/server.pid")" ;;
esac
exit 0
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def docker_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key not in ("BATON_API_KEYS", "BATON_NO_DOCKER")}
    env.update(
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        BATON_RUN_DIR=str(tmp_path / "run"),
        ORCHESTRATOR_PORT=str(free_port()),
        FAKE_DOCKER_LOG=str(tmp_path / "docker.log"),
        FAKE_DOCKER_DIR=str(tmp_path),
    )
    yield env
    pid_file = tmp_path / "server.pid"
    if pid_file.exists():  # whatever down.sh did not stop
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except ProcessLookupError:
            pass


def script(name: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", f"scripts/{name}", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_up_on_docker_prints_the_dashboard_url_and_the_key_it_passed_to_compose(docker_env: dict[str, str]) -> None:
    up = script("up.sh", docker_env, "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    port = docker_env["ORCHESTRATOR_PORT"]
    found = re.search(r"API key +(dev-\S+) +\(tenant dev\)", up.stdout)
    assert found, up.stdout
    key = found.group(1)
    assert f"dashboard   http://127.0.0.1:{port}/?token={key}" in up.stdout
    assert "Grafana     http://127.0.0.1:13000/" in up.stdout
    assert "Prometheus  http://127.0.0.1:19090/alerts" in up.stdout
    calls = Path(docker_env["FAKE_DOCKER_LOG"]).read_text().splitlines()
    assert f"compose up -d --build | keys=dev:{key} port={port}" in calls

    down = script("down.sh", docker_env)
    assert down.returncode == 0, down.stderr
    calls = Path(docker_env["FAKE_DOCKER_LOG"]).read_text().splitlines()
    stopped = [call.split(" |")[0] for call in calls if call.startswith("compose -f ")]
    assert stopped == [f"compose -f {ROOT}/docker-compose.yml down"]
    assert not (Path(docker_env["BATON_RUN_DIR"]) / "compose").exists()

    again = script("up.sh", docker_env, "--detach")  # the same key next time
    assert f"API key     {key}" in again.stdout
    script("down.sh", docker_env)


def test_up_refuses_a_docker_engine_without_compose(docker_env: dict[str, str]) -> None:
    up = script("up.sh", {**docker_env, "FAKE_COMPOSE_MISSING": "1"}, "--detach")
    assert up.returncode != 0
    assert "'docker compose' is missing: install the compose plugin, or set BATON_NO_DOCKER=1" in up.stderr
    assert "compose up" not in Path(docker_env["FAKE_DOCKER_LOG"]).read_text()


def test_up_refuses_an_orchestrator_port_already_taken(docker_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(docker_env["ORCHESTRATOR_PORT"])))
        taken.listen()
        up = script("up.sh", docker_env, "--detach")
    assert up.returncode != 0
    assert f"port {docker_env['ORCHESTRATOR_PORT']} is taken" in up.stderr
    assert "compose up" not in Path(docker_env["FAKE_DOCKER_LOG"]).read_text()
