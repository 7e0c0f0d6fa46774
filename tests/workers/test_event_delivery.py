"""What each task event costs on the broker (workers.runtime.event_publisher): running and progress are
transient (delivery_mode 1), the outcome and the retrying event persistent (2); and `track_started=False`
leaves the running event out. Read off messages taken from a real queue bound to baton.events."""

from __future__ import annotations

from typing import Any

import pytest
from aio_pika import DeliveryMode
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from protocol.envelope import TaskEnvelope
from protocol.events import (
    EventType,
    JobStatus,
    Progress,
    TaskEvent,
    cancelled_event,
    completed_event,
    failed_event,
    status_event,
)
from tests.workers.helpers import CODECS, Tap, envelope, publish_task, running
from workers import PermanentError, RetryPolicy, TaskContext, Worker
from workers.errors import ConfigurationError
from workers.runtime.event_publisher import delivery_mode

QUICK = RetryPolicy(max_retries=2, initial_delay_seconds=0.1, max_delay_seconds=0.2, jitter=0.0)


def label(event: TaskEvent) -> str:
    if event.event is EventType.TASK_STATUS_UPDATE:
        return "progress" if "progress" in event.data else str(event.data["status"])
    return event.event.value


async def task_messages(tap: Tap, task_id: str) -> list[tuple[str, DeliveryMode | None]]:
    """(label, delivery mode) of each event of the task, up to its terminal one, as they came."""
    seen: list[tuple[str, DeliveryMode | None]] = []
    while True:
        message: AbstractIncomingMessage = await tap.next_message()
        if (message.routing_key or "").startswith("_system."):
            continue
        event = CODECS.decode(TaskEvent, message.body, message.content_type)
        if event.task_id != task_id:
            continue
        seen.append((label(event), message.delivery_mode))
        if event.is_terminal:
            return seen


def worker_for(service: str, *, track_started: bool = True, handler_tracks: bool | None = None) -> Worker:
    worker = Worker(service, retry=QUICK, track_started=track_started)

    @worker.handler("work", track_started=handler_tracks)
    async def work(payload: dict[str, Any], ctx: TaskContext) -> str:
        if payload.get("progress"):
            await ctx.progress(50, "half way")
        if payload.get("fail_first") and ctx.attempt == 1:
            raise ConnectionError("upstream down on the first attempt")
        if payload.get("fail"):
            raise PermanentError("refused for good")
        return "done"

    return worker


TRANSIENT, PERSISTENT = DeliveryMode.NOT_PERSISTENT, DeliveryMode.PERSISTENT


async def test_running_and_progress_are_transient_and_the_retry_decision_and_outcome_persistent(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    tap = await Tap.open(channel, f"*.{service}.*")
    retried = envelope(service, "work", {"progress": True, "fail_first": True})
    failed = envelope(service, "work", {"fail": True})
    async with running(worker_for(service), rabbitmq_url):
        await publish_task(channel, retried)
        first = await task_messages(tap, retried.task_id)
        await publish_task(channel, failed)
        second = await task_messages(tap, failed.task_id)

    assert first == [
        ("running", TRANSIENT),
        ("progress", TRANSIENT),
        ("retrying", PERSISTENT),  # it carries the retry decision
        ("running", TRANSIENT),
        ("progress", TRANSIENT),
        ("task_completed", PERSISTENT),
    ]
    assert second == [("running", TRANSIENT), ("task_failed", PERSISTENT)]


@pytest.mark.parametrize(
    ("worker_default", "handler_tracks", "announced"),
    [(True, False, False), (False, None, False), (False, True, True), (True, None, True)],
    ids=["handler-off", "worker-off", "handler-on-over-worker-off", "default-on"],
)
async def test_track_started_decides_whether_the_running_event_goes_out(
    rabbitmq_url: str,
    channel: AbstractChannel,
    service: str,
    worker_default: bool,
    handler_tracks: bool | None,
    announced: bool,
) -> None:
    tap = await Tap.open(channel, f"*.{service}.*")
    plain = envelope(service, "work", {})
    reporting = envelope(service, "work", {"progress": True})
    async with running(worker_for(service, track_started=worker_default, handler_tracks=handler_tracks), rabbitmq_url):
        await publish_task(channel, plain)
        quiet = await task_messages(tap, plain.task_id)
        await publish_task(channel, reporting)
        reported = await task_messages(tap, reporting.task_id)

    running_event = [("running", TRANSIENT)] if announced else []
    assert quiet == [*running_event, ("task_completed", PERSISTENT)]
    # A progress report still goes out (and marks the job running) without the running event.
    assert reported == [*running_event, ("progress", TRANSIENT), ("task_completed", PERSISTENT)]


def test_the_delivery_mode_of_every_event_a_worker_publishes() -> None:
    env = TaskEnvelope(service="svc", type="work", payload={}, global_task_id="job-1", tenant_id="tenant-a")
    progress = Progress(percentage=10, message="a tenth")
    assert delivery_mode(status_event(env, JobStatus.RUNNING, 1)) is TRANSIENT
    assert delivery_mode(status_event(env, JobStatus.RUNNING, 2, progress)) is TRANSIENT
    assert delivery_mode(status_event(env, JobStatus.RETRYING, 3)) is PERSISTENT
    assert delivery_mode(completed_event(env, {"ok": True}, 4)) is PERSISTENT
    assert delivery_mode(failed_event(env, error="no", error_type="E", seq=5)) is PERSISTENT
    assert delivery_mode(failed_event(env, error="late", error_type="E", seq=6, status=JobStatus.TIMED_OUT)) is (
        PERSISTENT
    )
    assert delivery_mode(cancelled_event(env, "job cancelled", 7)) is PERSISTENT


def test_track_started_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="track_started must be True or False"):
        Worker("svc", track_started="no")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="track_started must be True or False"):
        Worker("svc").handler("work", track_started=0)  # type: ignore[arg-type]
