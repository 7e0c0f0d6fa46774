"""One trace from the HTTP call to the applied event, on the real RabbitMQ and Redis: an in-process
orchestrator and worker, each with its own TracerProvider exporting to one in-memory exporter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from plumbing.otel import OtelTracing
from protocol.events import ATTEMPT_SEQ_STRIDE
from protocol.topology import EVENTS_EXCHANGE, TASKS_EXCHANGE
from tests.api_server import serve_api
from tests.polling import poll
from tests.workers.helpers import Tap, envelope, publish_task, running
from workers import TaskContext, Worker


def in_memory_tracing(exporter: InMemorySpanExporter, service_name: str) -> OtelTracing:
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # exported as each span ends
    return OtelTracing(provider)


def one(spans: Sequence[ReadableSpan], name: str, **attributes: Any) -> ReadableSpan:
    found = [
        span
        for span in spans
        if span.name == name and all((span.attributes or {}).get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, f"{len(found)} span(s) named {name!r} with {attributes}: {[s.name for s in spans]}"
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


async def test_one_trace_runs_from_the_http_call_through_the_worker_to_the_applied_event(
    rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str
) -> None:
    exporter = InMemorySpanExporter()
    async with serve_api(
        rabbitmq_url,
        redis_url,
        redis_client,
        unique,
        tracing=in_memory_tracing(exporter, "baton-orchestrator"),
    ) as api:
        worker = Worker(api.service)

        @worker.handler(api.job_type)
        async def run(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
            await ctx.progress(50, "half way")
            return {"doubled": payload["n"] * 2}

        async with running(
            worker, rabbitmq_url, redis_url=redis_url, tracing=in_memory_tracing(exporter, "baton-worker")
        ):
            response = await api.client.post(
                "/jobs", json={"type": api.job_type, "payload": {"n": 21}, "wait": 15}, headers=api.headers_a
            )
            assert response.status == 200, await response.text()
            job = await response.json()
            assert job["status"] == "completed"
            job_id = job["job_id"]
            # The worker's span ends after its outcome's publish is confirmed, so maybe after the apply.
            expected = {"apply task_completed", f"process {api.service}", "POST /jobs"}
            spans = await poll(
                lambda: _finished(exporter),
                lambda spans: expected <= {s.name for s in spans},
                what="the spans of the worker's processing and of the applied task_completed event",
            )

    http = one(spans, "POST /jobs")
    publish = one(spans, f"publish {TASKS_EXCHANGE}", **{"baton.job_id": job_id})
    process = one(spans, f"process {api.service}", **{"baton.job_id": job_id})
    handle = one(spans, f"handle {api.job_type}")
    # The attempt's events in order: running (seq n+1), the handler's progress (n+2), completed (n+3).
    first_seq = ATTEMPT_SEQ_STRIDE + 1
    running_event = one(spans, f"publish {EVENTS_EXCHANGE}", **{"baton.job_id": job_id, "baton.seq": first_seq})
    progress = one(spans, f"publish {EVENTS_EXCHANGE}", **{"baton.job_id": job_id, "baton.seq": first_seq + 1})
    completed = one(spans, f"publish {EVENTS_EXCHANGE}", **{"baton.event": "task_completed"})
    applied = one(spans, "apply task_completed")

    # One trace (every span recorded belongs to it), each span the child of the one before it.
    assert len({span.context.trace_id for span in spans if span.context}) == 1
    assert parent_of(http) is None
    assert parent_of(publish) == span_id(http)
    assert parent_of(process) == span_id(publish)
    assert parent_of(handle) == span_id(process)
    assert parent_of(running_event) == span_id(process)
    assert parent_of(progress) == span_id(handle)  # reported by the handler, inside its span
    assert parent_of(completed) == span_id(process)  # the outcome is published after the handler returned
    assert parent_of(applied) == span_id(completed)

    assert (http.kind, publish.kind, process.kind, handle.kind) == (
        SpanKind.SERVER,
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
        SpanKind.INTERNAL,
    )
    assert (completed.kind, applied.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert completed.attributes is not None and completed.attributes["baton.event"] == "task_completed"
    assert http.attributes is not None and http.attributes["http.response.status_code"] == 200
    assert handle.attributes is not None
    assert dict(handle.attributes) == {
        "baton.service": api.service,
        "baton.type": api.job_type,
        "baton.task_id": handle.attributes["baton.task_id"],
        "baton.job_id": job_id,
        "baton.tenant_id": api.tenant_a,
        "baton.attempt": 1,
    }
    assert process.attributes is not None
    assert process.attributes["baton.task_id"] == handle.attributes["baton.task_id"]
    assert process.attributes["baton.tenant_id"] == api.tenant_a
    assert process.attributes["baton.attempt"] == 1
    assert process.attributes["baton.type"] == api.job_type
    assert applied.attributes is not None and applied.attributes["baton.tenant_id"] == api.tenant_a
    assert {span.resource.attributes["service.name"] for span in (http, publish, applied)} == {"baton-orchestrator"}
    assert {span.resource.attributes["service.name"] for span in (process, handle, completed)} == {"baton-worker"}


async def test_a_child_task_called_by_a_handler_joins_the_callers_trace(
    rabbitmq_url: str, redis_url: str, channel: AbstractChannel, services: list[str]
) -> None:
    caller_service, callee_service = services
    exporter = InMemorySpanExporter()
    caller, callee = Worker(caller_service), Worker(callee_service)

    @caller.handler("ask")
    async def ask(payload: dict[str, Any], ctx: TaskContext) -> Any:
        return await ctx.call_service(callee_service, "answer", {"q": payload["q"]}, timeout=10)

    @callee.handler("answer")
    async def answer(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"a": payload["q"] * 2}

    task = envelope(caller_service, "ask", {"q": 21})
    tap = await Tap.open(channel, f"{task.tenant_id}.{caller_service}.task_completed")
    async with (
        running(callee, rabbitmq_url, redis_url=redis_url, tracing=in_memory_tracing(exporter, "callee")),
        running(caller, rabbitmq_url, redis_url=redis_url, tracing=in_memory_tracing(exporter, "caller")),
    ):
        await publish_task(channel, task)
        completed = await tap.next_event(within=20)
    assert completed.data["result"] == {"a": 42}

    spans = exporter.get_finished_spans()
    ask_span = one(spans, "handle ask")
    child_publish = one(spans, f"publish {TASKS_EXCHANGE}")
    child_process = one(spans, f"process {callee_service}")
    answer_span = one(spans, "handle answer")
    assert parent_of(child_publish) == span_id(ask_span)
    assert parent_of(child_process) == span_id(child_publish)
    assert parent_of(answer_span) == span_id(child_process)
    assert child_publish.attributes is not None and child_publish.attributes["baton.service"] == callee_service
    assert len({span.context.trace_id for span in spans if span.context}) == 1


async def _finished(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, ...]:
    return exporter.get_finished_spans()
