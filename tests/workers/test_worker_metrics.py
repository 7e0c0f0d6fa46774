"""Worker metrics: a real worker serves GET /metrics on its port, counted from real tasks on the real broker."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aio_pika.abc import AbstractChannel
from prometheus_client.parser import text_string_to_metric_families

from plumbing.settings import SettingsError
from tests.polling import eventually, poll
from tests.workers.helpers import Tap, envelope, publish_raw, publish_task, running
from workers import PermanentError, RetryPolicy, TaskContext, Worker
from workers.config import WorkerSettings
from workers.errors import ConfigurationError
from workers.runtime import WorkerRuntime

QUICK = RetryPolicy(max_retries=1, initial_delay_seconds=0.1, max_delay_seconds=0.1)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def scrape(port: int) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def sample_worker(service: str, calls: list[str]) -> Worker:
    worker = Worker(service, retry=QUICK, concurrency=3, prefetch=6)

    @worker.handler("work")
    async def work(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        calls.append(payload["mode"])
        if payload["mode"] == "sleep":
            await asyncio.sleep(0.2)
        if payload["mode"] == "permanent":
            raise PermanentError("no")
        if payload["mode"] == "flaky" and ctx.attempt == 1:
            raise ConnectionError("once")
        if payload["mode"] == "always":
            raise ConnectionError("always")
        return {"ok": True}

    return worker


async def test_a_worker_serves_its_task_outcomes_durations_and_queue_waits_over_http(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    port = free_port()
    calls: list[str] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(sample_worker(service, calls), rabbitmq_url, metrics_port=port) as runtime:
        before = await scrape(port)
        assert value(before, "baton_worker_tasks_total", service=service, type="work", outcome="completed") == 0
        assert value(before, "baton_worker_prefetch_limit", service=service) == 6  # one queue consumed, no lane
        assert value(before, "baton_worker_concurrency", service=service) == 3

        created = datetime.now(UTC) - timedelta(seconds=2)  # waited 2 s in the queue, as far as the worker sees
        tasks = [
            envelope(service, "work", {"mode": mode}, created_at=created)
            for mode in ("ok", "ok", "permanent", "flaky", "always")
        ]
        for task in tasks:
            await publish_task(channel, task)
        for task in tasks:
            await tap.task_events(task.task_id)
        # A task of a type no handler serves: parked, counted under one `other` label whatever its type.
        stray = envelope(service, "made-up-type-1", {})
        await publish_task(channel, stray)
        await tap.task_events(stray.task_id)
        # A body that does not decode: parked, with no job to tell.
        await publish_raw(channel, service, b"\xff not a task")
        await eventually(lambda: runtime.stats.dead_lettered == 3)

        # In flight while a task runs: the gauges are read at the scrape.
        slow = envelope(service, "work", {"mode": "sleep"})
        await publish_task(channel, slow)
        await eventually(lambda: runtime.in_flight == 1)
        running_now = await scrape(port)
        await tap.task_events(slow.task_id)
        # The outcome is counted once its publish is confirmed, which can be after the tap saw the event.
        after = await poll(
            lambda: scrape(port),
            lambda got: value(got, "baton_worker_tasks_total", service=service, type="work", outcome="completed") == 4,
            within=10,
            what="the slow task counted",
        )

    def tasks_of(outcome: str, job_type: str = "work") -> float:
        return value(after, "baton_worker_tasks_total", service=service, type=job_type, outcome=outcome)

    assert tasks_of("completed") == 4  # ok, ok, flaky on its second attempt, sleep
    assert tasks_of("failed") == 1  # permanent
    assert tasks_of("retried") == 2  # flaky once, always once
    assert tasks_of("dead_lettered") == 1  # always, after its one retry: not counted as failed too
    assert tasks_of("dead_lettered", "other") == 2  # the unknown type and the undecodable body
    assert not any(("made-up-type-1", "type") in dict(labels).items() for _, labels in after)

    assert value(running_now, "baton_worker_in_flight", service=service) == 1
    assert value(running_now, "baton_worker_unacked_deliveries", service=service) == 1
    assert value(after, "baton_worker_in_flight", service=service) == 0

    # Attempts run: 5 first attempts, 2 retries, the slow one; unknown types and bad bodies never run.
    assert value(after, "baton_worker_handler_duration_seconds_count", service=service, type="work") == 8
    slow_enough = value(after, "baton_worker_handler_duration_seconds_bucket", service=service, type="work", le="0.1")
    assert slow_enough == 7  # all but the 0.2 s one
    # Queue waits: first attempts only (a retry keeps its job's created_at).
    assert value(after, "baton_worker_queue_wait_seconds_count", service=service, type="work") == 6
    under_a_second = value(after, "baton_worker_queue_wait_seconds_bucket", service=service, type="work", le="1.0")
    assert under_a_second == 1  # only the slow task was created just now; the five others waited 2 s


async def test_metrics_are_off_unless_a_port_is_given(rabbitmq_url: str, service: str) -> None:
    worker = sample_worker(service, [])
    assert WorkerRuntime(worker, WorkerSettings(rabbitmq_url=rabbitmq_url)).metrics_server is None
    assert WorkerRuntime(worker, WorkerSettings(rabbitmq_url=rabbitmq_url, metrics_port=0)).metrics_server is None
    # The Worker's own port, unless the setting says otherwise (0 turns it off).
    worker.metrics_port = 9999
    assert WorkerRuntime(worker, WorkerSettings(rabbitmq_url=rabbitmq_url)).metrics_server is not None
    assert WorkerRuntime(worker, WorkerSettings(rabbitmq_url=rabbitmq_url, metrics_port=0)).metrics_server is None
    taken_from_worker = WorkerRuntime(worker, WorkerSettings(rabbitmq_url=rabbitmq_url, metrics_port=9998))
    assert taken_from_worker.metrics_server is not None
    assert taken_from_worker.metrics_server.url == "http://127.0.0.1:9998/metrics"


async def test_a_metrics_port_in_use_fails_the_start_with_a_clear_error(rabbitmq_url: str, service: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"cannot serve worker metrics on 127.0.0.1:{port}.*own"):
            async with running(sample_worker(service, []), rabbitmq_url, metrics_port=port):
                pass


def test_a_bad_metrics_port_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="metrics_port must be 0"):
        Worker("svc", metrics_port=70000)
    with pytest.raises(ConfigurationError, match="metrics_port must be 0"):
        Worker("svc", metrics_port=-1)
    with pytest.raises(SettingsError, match="BATON_WORKER_METRICS_PORT: Input should be less than or equal to 65535"):
        WorkerSettings.from_env({"BATON_WORKER_METRICS_PORT": "65536"})
    assert WorkerSettings.from_env({"BATON_WORKER_METRICS_PORT": "9101"}).metrics_port == 9101


def test_each_runtime_has_a_registry_of_its_own(rabbitmq_url: str) -> None:
    first = WorkerRuntime(sample_worker("svc", []), WorkerSettings(rabbitmq_url=rabbitmq_url))
    second = WorkerRuntime(sample_worker("svc", []), WorkerSettings(rabbitmq_url=rabbitmq_url))
    assert first.metrics.registry is not second.metrics.registry
    first.metrics.retried(envelope("svc", "work", {}))
    assert b'baton_worker_tasks_total{outcome="retried",service="svc",type="work"} 1.0' in first.metrics.render()
    assert b"baton_worker_tasks_total{" not in second.metrics.render()
