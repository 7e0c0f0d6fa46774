"""docker-compose.yml, the Dockerfile and deploy/grafana: `docker compose config` when a docker client with
compose is here; in any case the file's own checks (there may be no Docker engine to run it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# A local RabbitMQ (AMQP, management), Redis and Prometheus keep their ports: compose must not take them.
LOCAL_PORTS = {5672, 15672, 6379, 9090}
WORKERS = {"worker-query": 9101, "worker-embedding": 9102, "worker-ingestion": 9103, "worker-agent": 9104}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def host_port(published: str) -> int:
    """The host side of `[ip:]host:container`, with `${VAR:-default}` read as its default."""
    resolved = re.sub(r"\$\{[A-Z_]+:-(\d+)\}", r"\1", published)
    parts = resolved.split(":")
    assert len(parts) in (2, 3), f"{published}: publish host:container, never a bare container port (random host port)"
    if len(parts) == 3:
        assert parts[0] == "127.0.0.1", f"{published}: published on loopback only"
    return int(parts[-2])


def docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30, check=False)
    return probe.returncode == 0


def test_docker_compose_config_accepts_the_file_when_compose_is_installed() -> None:
    if not docker_compose_available():
        # Here `docker` may exist without its compose plugin: the file's own checks below stand in for it.
        assert compose()["services"]
        return
    done = subprocess.run(
        ["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_every_service_has_an_image_or_a_build_and_waits_for_what_it_needs() -> None:
    services = compose()["services"]
    assert set(services) == {"rabbitmq", "redis", "orchestrator", "prometheus", "grafana", *WORKERS}
    for name, service in services.items():
        assert "image" in service or service.get("build") == ".", name
        for needed, condition in (service.get("depends_on") or {}).items():
            assert needed in services, f"{name} depends on unknown {needed}"
            assert condition["condition"] in ("service_started", "service_healthy"), f"{name} -> {needed}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[needed], f"{name} waits for {needed}, which has no healthcheck"
            if needed in ("rabbitmq", "redis"):  # up is not ready: the broker takes a while to accept connections
                assert condition["condition"] == "service_healthy", f"{name} -> {needed}"
    for name in ("rabbitmq", "redis", "orchestrator", *WORKERS):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    for name, port in WORKERS.items():
        worker = services[name]
        assert worker["depends_on"] == {
            needed: {"condition": "service_healthy"} for needed in ("rabbitmq", "redis", "orchestrator")
        }, name
        env = worker["environment"]
        assert env["BATON_WORKER_METRICS_PORT"] == str(port) and env["BATON_WORKER_METRICS_HOST"] == "0.0.0.0"
        assert env["RABBITMQ_URL"] == "amqp://guest:guest@rabbitmq:5672/" and env["REDIS_URL"].startswith("redis://redis")
        assert worker["command"] == ["python", "-m", "workers", name.removeprefix("worker-")]
        assert "BATON_WORKER_METRICS_PORT" in worker["healthcheck"]["test"][-1]


def test_no_published_port_clashes_with_a_local_rabbitmq_redis_or_prometheus() -> None:
    published = {
        name: [host_port(str(port)) for port in service.get("ports", [])]
        for name, service in compose()["services"].items()
    }
    every = [port for ports in published.values() for port in ports]
    assert sorted(every) == sorted(set(every)), "a host port published twice"
    assert set(every) & LOCAL_PORTS == set(), published
    assert published["grafana"] == [13000] and published["prometheus"] == [19090]
    assert published["orchestrator"] == [8000]


def test_mounted_files_exist_in_the_repository() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("./"), f"{name}: {volume}"
            assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"


def test_prometheus_scrapes_each_worker_on_its_compose_port() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {t for group in jobs["baton-workers"]["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:{port}" for name, port in WORKERS.items()}
    assert {t for g in jobs["baton-orchestrator"]["static_configs"] for t in g["targets"]} == {"orchestrator:8000"}
    assert config["rule_files"] == ["alerts.yml"]


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboards() -> None:
    grafana = ROOT / "deploy" / "grafana"
    datasource = yaml.safe_load((grafana / "provisioning" / "datasources" / "prometheus.yml").read_text())
    [source] = datasource["datasources"]
    expected = ("prometheus", "http://prometheus:9090", "baton-prometheus")
    assert (source["type"], source["url"], source["uid"]) == expected
    provider = yaml.safe_load((grafana / "provisioning" / "dashboards" / "baton.yml").read_text())
    [dashboards] = provider["providers"]
    mounts = compose()["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{dashboards['options']['path']}:ro" in mounts
    titles = set()
    for path in sorted((grafana / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        titles.add(board["title"])
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == source["uid"], (path.name, panel["title"])
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), (path.name, panel["title"])
    assert titles == {"Baton overview", "Baton service"}


def test_the_image_copies_every_package_and_runs_and_checks_the_orchestrator() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = [line.split(maxsplit=1) for line in dockerfile.splitlines() if line and not line.startswith("#")]
    copied = {args.split()[0] for op, *rest in instructions if op == "COPY" for args in rest}
    assert {"protocol", "plumbing", "orchestrator", "workers", "clients", "pyproject.toml"} <= copied
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {pattern.rstrip("*") for pattern in found["include"]}
    assert packages - copied == set(), "packages the image leaves out"
    ops = {op for op, *_ in instructions}
    assert {"CMD", "EXPOSE", "HEALTHCHECK", "USER"} <= ops
    assert '"/health"' in dockerfile or "/health'" in dockerfile
    exposed = next(rest[0] for op, *rest in instructions if op == "EXPOSE").split()
    assert {"8000", *map(str, WORKERS.values())} <= set(exposed)


@pytest.mark.parametrize("published", ["8000", "${ORCHESTRATOR_PORT}:8000:1"])
def test_a_bare_or_unreadable_published_port_is_refused(published: str) -> None:
    with pytest.raises((AssertionError, ValueError)):
        host_port(published)
