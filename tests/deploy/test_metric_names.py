"""Every metric the alert rules and Grafana dashboards name is one the orchestrator or a worker exports,
as read from their real /metrics."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import yaml

from protocol.topology import service_queues
from tests.api_server import Api
from tests.directory_cleanup import forget_services
from tests.polling import eventually
from tests.workers.helpers import envelope, publish_task, running
from workers import TaskContext, Worker

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bbaton_[a-z0-9_]+\b")
# Series Prometheus makes itself for every target.
PROMETHEUS_OWN = {"up"}
SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}


def exported(text: str) -> set[str]:
    """The series names an exposition holds: from its TYPE lines, so a metric with no sample yet counts."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.update(name + suffix for suffix in SUFFIXES.get(kind, ("",)))
    return names


def alert_expressions() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "query", "definition") and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    boards = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    assert len(boards) == 2
    for board in boards:
        walk(json.loads(board.read_text()))
    return found


def named(expressions: list[str]) -> set[str]:
    names = {name for expr in expressions for name in METRIC.findall(expr)}
    names |= {name for expr in expressions for name in PROMETHEUS_OWN if re.search(rf"\b{name}\{{", expr)}
    return names


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_alerts_and_dashboards_name_only_metrics_that_are_exported(
    api: Api, rabbitmq_url: str, redis_client: Any, unique: str
) -> None:
    orchestrator_text = await (await api.client.get("/metrics")).text()  # a real HTTP request to its server

    service, port = f"t-metrics-{unique}", free_port()
    worker = Worker(service)

    @worker.handler("echo")
    async def echo(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return payload

    connection = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await connection.channel()
        async with running(worker, rabbitmq_url, metrics_port=port) as runtime:
            await publish_task(channel, envelope(service, "echo", {"n": 1}))
            await eventually(lambda: b'outcome="completed"' in runtime.metrics.render())  # histograms have samples
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as got:
                worker_text = await got.text()
        for spec in service_queues(service):
            await channel.queue_delete(spec.name)
    finally:
        await connection.close()
        await forget_services(redis_client, service)

    available = exported(orchestrator_text) | exported(worker_text) | PROMETHEUS_OWN
    assert "baton_worker_tasks_total" in available and "baton_dead_letter_depth" in available
    in_alerts, in_dashboards = named(alert_expressions()), named(dashboard_expressions())
    assert len(in_alerts) >= 7 and len(in_dashboards) >= 15
    assert in_alerts - available == set(), "alert rules name metrics nothing exports"
    assert in_dashboards - available == set(), "dashboards name metrics nothing exports"


def test_a_misspelt_metric_would_be_caught() -> None:
    text = "# HELP baton_x_total x\n# TYPE baton_x_total counter\n# TYPE baton_h_seconds histogram\n"
    assert exported(text) == {"baton_x_total", "baton_h_seconds_bucket", "baton_h_seconds_count", "baton_h_seconds_sum"}
    assert named(["rate(baton_x_totl[1m])"]) - exported(text) == {"baton_x_totl"}
    assert named(['up{job="baton-workers"} == 0']) == {"up"}
