"""Cancellation over baton.control, child tasks between two workers, and ctx.http against a local server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from aio_pika.abc import AbstractChannel
from aiohttp import web
from pydantic import BaseModel

from protocol.envelope import ContextIds
from protocol.events import EventType
from protocol.topology import task_queue
from tests.workers.helpers import Tap, envelope, publish_cancel, publish_task, running
from workers import RetryPolicy, ServiceCallError, ServiceCallTimeout, TaskContext, Worker

UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"


def waiter(service: str, started: asyncio.Event, calls: list[str]) -> Worker:
    worker = Worker(service, concurrency=2)

    @worker.handler("wait")
    async def wait(payload: dict[str, Any], ctx: TaskContext) -> str:
        calls.append(ctx.task_id)
        started.set()
        await asyncio.sleep(60)
        return "never"

    return worker


async def test_cancel_command_stops_a_running_task(rabbitmq_url: str, channel: AbstractChannel, service: str) -> None:
    started = asyncio.Event()
    calls: list[str] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(waiter(service, started, calls), rabbitmq_url) as runtime:
        task = envelope(service, "wait", {}, tenant_id="tenant-c", global_task_id="job-to-cancel")
        await publish_task(channel, task)
        await asyncio.wait_for(started.wait(), 10)
        await publish_cancel(channel, "tenant-c", "job-to-cancel")
        events = await tap.task_events(task.task_id)
        assert runtime.in_flight == 0

    assert [e.event for e in events] == [EventType.TASK_STATUS_UPDATE, EventType.TASK_CANCELLED]
    assert events[-1].data == {"status": "cancelled", "reason": "cancelled by test"}
    queue = await channel.declare_queue(task_queue(service), passive=True)
    assert queue.declaration_result.message_count == 0


async def test_cancel_of_another_tenants_job_id_does_not_touch_the_task(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    started = asyncio.Event()
    calls: list[str] = []
    async with running(waiter(service, started, calls), rabbitmq_url, shutdown_grace_seconds=0.1) as runtime:
        task = envelope(service, "wait", {}, tenant_id="tenant-c", global_task_id="same-job-id")
        await publish_task(channel, task)
        await asyncio.wait_for(started.wait(), 10)
        await publish_cancel(channel, "tenant-other", "same-job-id")
        await asyncio.sleep(0.3)
        assert runtime.in_flight == 1


async def test_a_task_of_a_cancelled_job_never_starts_when_redis_cannot_tell(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    started = asyncio.Event()
    calls: list[str] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    # No ledger to ask: the remembered broadcast decides alone.
    async with running(waiter(service, started, calls), rabbitmq_url, redis_url=UNREACHABLE_REDIS_URL):
        await publish_cancel(channel, "tenant-c", "job-cancelled-early")
        await asyncio.sleep(0.2)  # the broadcast reaches the worker before the task does
        task = envelope(service, "wait", {}, tenant_id="tenant-c", global_task_id="job-cancelled-early")
        await publish_task(channel, task)
        events = await tap.task_events(task.task_id)

    assert [e.event for e in events] == [EventType.TASK_CANCELLED]
    assert calls == []


async def test_a_remembered_cancel_does_not_swallow_an_attempt_of_a_reopened_job(
    rabbitmq_url: str, redis_url: str, channel: AbstractChannel, service: str, unique: str
) -> None:
    """The sweeper fails a stuck job and broadcasts a cancel; a dead-letter replay then reopens the
    job (deleting its cancelled ledger key) and publishes the next attempt, which must run."""
    calls: list[str] = []
    tap = await Tap.open(channel, f"*.{service}.*")
    job_id = f"job-reopened-{unique}"
    async with running(quick(service, calls), rabbitmq_url, redis_url=redis_url):
        await publish_cancel(channel, "tenant-c", job_id)
        await asyncio.sleep(0.2)  # remembered before the replay arrives
        replay = envelope(service, "quick", {}, tenant_id="tenant-c", global_task_id=job_id, attempt=2)
        await publish_task(channel, replay)
        events = await tap.task_events(replay.task_id)
        # Forgotten for good: the next task of the job runs too, also past the check before the handler.
        later = envelope(service, "quick", {}, tenant_id="tenant-c", global_task_id=job_id)
        await publish_task(channel, later)
        later_events = await tap.task_events(later.task_id)

    assert [e.event for e in events] == [EventType.TASK_STATUS_UPDATE, EventType.TASK_COMPLETED]
    assert later_events[-1].event is EventType.TASK_COMPLETED
    assert calls == [replay.task_id, later.task_id]


def quick(service: str, calls: list[str]) -> Worker:
    worker = Worker(service)

    @worker.handler("quick")
    async def run(payload: dict[str, Any], ctx: TaskContext) -> str:
        calls.append(ctx.task_id)
        return "done"

    return worker


class Question(BaseModel):
    n: int


def callee(service: str) -> Worker:
    # One quick retry: the final failure still reaches the caller, so reply_to survives the retry.
    worker = Worker(service, retry=RetryPolicy(max_retries=1, initial_delay_seconds=0.1, max_delay_seconds=0.1))

    @worker.handler("square")
    async def square(payload: Question, ctx: TaskContext) -> dict[str, Any]:
        if payload.n < 0:
            raise ValueError("negative numbers have no place here")
        return {
            "square": payload.n * payload.n,
            "global_task_id": ctx.global_task_id,
            "parent": ctx.metadata.parent_task_id,
            "request_id": ctx.context.request_id,
        }

    return worker


def caller(service: str, target: str) -> Worker:
    worker = Worker(service)

    @worker.handler("ask")
    async def ask(payload: dict[str, Any], ctx: TaskContext) -> Any:
        try:
            return await ctx.call_service(
                payload.get("target", target),
                "square",
                {"n": payload["n"]},
                timeout=payload.get("timeout", 10),
                retries=payload.get("retries", 0),
            )
        except ServiceCallTimeout as exc:
            return {"timeout": exc.attempts, "error_type": exc.error_type}
        except ServiceCallError as exc:
            return {"failed": exc.error, "error_type": exc.error_type}

    return worker


async def test_call_service_between_two_workers(
    rabbitmq_url: str, channel: AbstractChannel, service_names: Callable[[str], str]
) -> None:
    parent_service, child_service, absent = service_names("parent"), service_names("child"), service_names("absent")
    tap = await Tap.open(channel, f"*.{parent_service}.*")
    child_tap = await Tap.open(channel, f"*.{child_service}.task_completed")
    async with (
        running(callee(child_service), rabbitmq_url),
        running(caller(parent_service, child_service), rabbitmq_url),
    ):
        ok = envelope(parent_service, "ask", {"n": 7}, context=ContextIds(request_id="req-1"))
        await publish_task(channel, ok)
        ok_events = await tap.task_events(ok.task_id)
        child_done = await child_tap.next_event()

        failing = envelope(parent_service, "ask", {"n": -1})
        await publish_task(channel, failing)
        failing_events = await tap.task_events(failing.task_id)

        lost = envelope(parent_service, "ask", {"n": 1, "target": absent, "timeout": 0.3, "retries": 1})
        await publish_task(channel, lost)
        lost_events = await tap.task_events(lost.task_id)

    assert ok_events[-1].data["result"] == {
        "square": 49,
        "global_task_id": ok.global_task_id,
        "parent": ok.task_id,
        "request_id": "req-1",
    }
    # The child's outcome also flows on baton.events, under the same job and tenant.
    assert (child_done.global_task_id, child_done.tenant_id) == (ok.global_task_id, ok.tenant_id)
    assert child_done.task_id != ok.task_id and child_done.data["result"]["square"] == 49
    assert failing_events[-1].data["result"] == {
        "failed": "negative numbers have no place here",
        "error_type": "ValueError",
    }
    assert lost_events[-1].data["result"] == {"timeout": 2, "error_type": "ServiceCallTimeout"}
    absent_queue = await channel.declare_queue(task_queue(absent), passive=True)
    assert absent_queue.declaration_result.message_count == 2  # one child per try, each with its own deadline


@pytest.fixture
async def echo_server() -> AsyncIterator[tuple[str, list[Mapping[str, str]]]]:
    seen: list[Mapping[str, str]] = []
    failures = {"left": 1}

    async def headers(request: web.Request) -> web.Response:
        seen.append(request.headers.copy())  # case-insensitive, as HTTP headers are
        return web.json_response({"ok": True})

    async def flaky(request: web.Request) -> web.Response:
        seen.append(request.headers.copy())  # case-insensitive, as HTTP headers are
        if failures["left"]:
            failures["left"] -= 1
            return web.Response(status=503)
        return web.json_response({"ok": "after retry"})

    app = web.Application()
    app.router.add_get("/headers", headers)
    app.router.add_get("/flaky", flaky)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_ctx_http_carries_the_context_headers(
    rabbitmq_url: str, channel: AbstractChannel, service: str, echo_server: tuple[str, list[Mapping[str, str]]]
) -> None:
    base_url, seen = echo_server
    worker = Worker(service)

    @worker.handler("fetch")
    async def fetch(payload: dict[str, Any], ctx: TaskContext) -> Any:
        first = (await ctx.http.get(f"{base_url}/headers", headers={"X-Custom": "yes"})).raise_for_status().json()
        second = (await ctx.http.get(f"{base_url}/flaky")).raise_for_status().json()
        return [first, second]

    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(worker, rabbitmq_url):
        task = envelope(
            service,
            "fetch",
            {},
            tenant_id="tenant-h",
            session_id="sess-1",
            context=ContextIds(agent_id="agent-9", request_id="req-9", user_id="user-9"),
        )
        await publish_task(channel, task)
        events = await tap.task_events(task.task_id)

    assert events[-1].data["result"] == [{"ok": True}, {"ok": "after retry"}]
    assert len(seen) == 3  # /headers once, /flaky twice (503 then 200)
    for headers in seen:
        assert headers["X-Tenant-Id"] == "tenant-h"
        assert headers["X-Global-Task-Id"] == task.global_task_id
        assert headers["X-Task-Id"] == task.task_id
        assert headers["X-Agent-Id"] == "agent-9"
        assert headers["X-Request-Id"] == "req-9"
        assert headers["X-User-Id"] == "user-9"
        assert headers["X-Session-Id"] == "sess-1"
    assert seen[0]["X-Custom"] == "yes"
