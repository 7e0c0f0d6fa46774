"""Log records as JSON lines with their context ids: the formatters, and a real request's and a real task's
records captured from an in-process orchestrator and worker on the real RabbitMQ and Redis."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import aio_pika
import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel

from plumbing.log_context import bind_log_context, current_ids, log_context
from plumbing.logs import JsonFormatter, TextFormatter, configure_logging, formatter_for
from protocol.envelope import TaskEnvelope
from protocol.topology import TASKS_EXCHANGE
from tests.api_server import serve_api
from tests.workers.helpers import CODECS, Tap, envelope, running
from workers import RetryPolicy, TaskContext, Worker


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every record at DEBUG and above as JSON lines, through the handler the entrypoints install."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = configure_logging("DEBUG", "json", stream)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]  # every line must be one JSON object


def record(name: str, message: str, exc_info: Any = None) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, message, (), exc_info)


def test_a_json_record_has_its_fields_and_the_known_context_ids() -> None:
    with log_context(tenant_id="t1", job_id="j1"), log_context(task_id="k1", request_id=None, worker_id=""):
        line = JsonFormatter().format(record("workers.runtime", "hello \u00e9"))
    entry = json.loads(line)
    assert entry.keys() == {"time", "level", "logger", "message", "tenant_id", "job_id", "task_id"}
    assert (entry["level"], entry["logger"], entry["message"]) == ("WARNING", "workers.runtime", "hello \u00e9")
    assert entry["time"].endswith("+00:00")
    assert "\n" not in line


def test_a_traceback_stays_inside_its_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        line = JsonFormatter().format(record("x", "failed", sys.exc_info()))
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_text_lines_stay_readable_and_name_the_ids_in_brackets() -> None:
    formatter = TextFormatter()
    assert formatter.format(record("orchestrator", "listening")).endswith("WARNING orchestrator: listening")
    with log_context(service="orchestrator", job_id="j1", task_id="k1"):
        assert formatter.format(record("x", "ran")).endswith("WARNING x: ran [job_id=j1 task_id=k1]")


def test_ids_are_restored_when_the_block_ends_and_unknown_ids_are_refused() -> None:
    with log_context(job_id="outer"):
        with log_context(job_id="inner", task_id="t"):
            assert current_ids() == {"job_id": "inner", "task_id": "t"}
        assert current_ids() == {"job_id": "outer"}
    assert current_ids() == {}
    with pytest.raises(ValueError, match=r"not a log context id: \['job'\]"), log_context(job="x"):
        pass


async def test_concurrent_tasks_each_log_their_own_ids() -> None:
    seen: dict[str, str | None] = {}

    async def task(job_id: str) -> None:
        bind_log_context(job_id=job_id)
        await asyncio.sleep(0.01)
        seen[job_id] = current_ids().get("job_id")

    await asyncio.gather(task("a"), task("b"))
    assert seen == {"a": "a", "b": "b"}
    assert current_ids() == {}  # a task's binding never leaks into its starter


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format must be one of json, text, not 'xml'"):
        formatter_for("xml")  # type: ignore[arg-type]


def test_configuring_twice_keeps_one_handler(captured: io.StringIO) -> None:
    handler = configure_logging("DEBUG", "json", captured)
    try:
        logging.getLogger("once").warning("only once")
        assert [r["message"] for r in records(captured)].count("only once") == 1
    finally:
        logging.getLogger().removeHandler(handler)


async def test_a_real_requests_records_carry_its_request_tenant_and_job_ids(
    rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str, captured: io.StringIO
) -> None:
    async with serve_api(rabbitmq_url, redis_url, redis_client, unique) as api:
        headers = {**api.headers_a, "X-Request-Id": f"req-{unique}"}
        response = await api.client.post("/jobs", json={"type": api.job_type, "payload": {}}, headers=headers)
        assert response.status == 202, await response.text()
        job_id = (await response.json())["job_id"]
        [(_, task)] = await api.queued_envelopes()
    mine = [r for r in records(captured) if r.get("request_id") == f"req-{unique}"]
    access = [r for r in mine if r["logger"] == "orchestrator.http.request_context"]
    assert [r["message"] for r in access] == [f"POST /jobs 202 in {access[0]['message'].split(' in ')[1]}"]
    assert access[0]["tenant_id"] == api.tenant_a and access[0]["job_id"] == job_id
    assert task.context.request_id == f"req-{unique}"  # the job's tasks carry the same id


async def publish_as_baton_does(channel: AbstractChannel, task: TaskEnvelope) -> None:
    """With the properties every Baton publisher sets (task and job ids, tenant and attempt headers)."""
    exchange = await channel.get_exchange(TASKS_EXCHANGE, ensure=False)
    message = aio_pika.Message(CODECS.encode(task), content_type=CODECS.default.content_type, **task.amqp_properties())
    await exchange.publish(message, task.service, mandatory=True)


async def test_a_real_tasks_records_carry_its_tenant_job_task_and_worker_ids(
    rabbitmq_url: str, redis_url: str, channel: AbstractChannel, service: str, captured: io.StringIO
) -> None:
    worker = Worker(service)
    handler_log = logging.getLogger("tests.observability.handler")

    # One retry: the runtime's own records (the retry, the dead letter) come with the handler's.
    @worker.handler("noisy", retry=RetryPolicy(max_retries=1, initial_delay_seconds=0.1, max_delay_seconds=0.1))
    async def noisy(payload: dict[str, Any], ctx: TaskContext) -> None:
        handler_log.info("working on %s", payload["n"])
        raise ValueError("fails for the log")

    task = envelope(service, "noisy", {"n": 7})
    tap = await Tap.open(channel, f"{task.tenant_id}.{service}.task_failed")
    async with running(worker, rabbitmq_url, redis_url=redis_url) as runtime:
        await publish_as_baton_does(channel, task)
        await tap.next_event(within=30)
    lines = records(captured)
    about_task = [r for r in lines if r.get("task_id") == task.task_id]
    assert about_task, "no record names the task"
    for entry in about_task:
        assert entry["tenant_id"] == task.tenant_id
        assert entry["job_id"] == task.global_task_id
        assert entry["service"] == service
        assert entry["worker_id"] == runtime.worker_id
    handler_lines = [r for r in about_task if r["logger"] == "tests.observability.handler"]
    assert [r["message"] for r in handler_lines] == ["working on 7", "working on 7"]  # both attempts
    assert any(r["logger"] == "workers.runtime.runner" and "dead-lettered" in r["message"] for r in about_task)
