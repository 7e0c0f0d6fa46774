"""The running and progress events' confirms are awaited alongside the handler and the outcome's publish:
neither waits for them, their frames go out ahead of the outcome's, and the task is acked only once
they have settled. A progress report waits only for the confirm of the one before it.

The real worker on the real broker; an event's publish is held back after it went out (a confirm that
is slow to come) by wrapping EventPublisher.publish_event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from protocol.events import EventType, TaskEvent
from tests.workers.helpers import Tap, envelope, publish_task, running, wait_for_ready
from workers import TaskContext, Worker
from workers.errors import BrokerError
from workers.runtime import consumer, settle
from workers.runtime.event_publisher import EventPublisher


def _is_running(event: TaskEvent) -> bool:
    return event.event is EventType.TASK_STATUS_UPDATE and "progress" not in event.data


def _label(event: TaskEvent) -> str:
    if event.event is EventType.TASK_STATUS_UPDATE:
        return "progress" if "progress" in event.data else "running"
    return event.event.value


def _is_progress(event: TaskEvent) -> bool:
    return event.event is EventType.TASK_STATUS_UPDATE and "progress" in event.data


class Publishes:
    """Wraps EventPublisher.publish_event: logs each publish's start and end; a held event's publish
    (the running event's, unless `held` says otherwise) returns (its confirm arrives) only once
    `confirm` is set, or fails with `fail_running`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, held: Callable[[TaskEvent], bool] = _is_running) -> None:
        self.log: list[str] = []
        self.confirm = asyncio.Event()
        self.fail_running: BaseException | None = None
        self.running_cancelled = asyncio.Event()
        self.acked = asyncio.Event()
        real = EventPublisher.publish_event
        real_ack = settle.ack

        async def ack(message: AbstractIncomingMessage) -> bool:
            self.log.append("ack")
            settled = await real_ack(message)
            self.acked.set()
            return settled

        async def publish_event(publisher: EventPublisher, event: TaskEvent, body: bytes | None = None) -> None:
            label = _label(event)
            self.log.append(f"start {label}")
            if held(event) and self.fail_running is not None:
                await self.confirm.wait()
                self.log.append(f"failed {label}")
                raise self.fail_running
            await real(publisher, event, body)
            if held(event):
                try:
                    await self.confirm.wait()
                except asyncio.CancelledError:
                    self.running_cancelled.set()
                    raise
            self.log.append(f"done {label}")

        monkeypatch.setattr(EventPublisher, "publish_event", publish_event)
        monkeypatch.setattr(settle, "ack", ack)


def stepper(service: str, started: asyncio.Event, returned: asyncio.Event) -> Worker:
    worker = Worker(service)

    @worker.handler("step")
    async def step(payload: dict[str, Any], ctx: TaskContext) -> str:
        started.set()
        await ctx.progress(50, "half way")
        returned.set()
        return "stepped"

    @worker.handler("reports", track_started=False)
    async def reports(payload: dict[str, Any], ctx: TaskContext) -> str:
        started.set()
        for n in range(payload["reports"]):
            await ctx.progress(10 * (n + 1), f"report {n + 1}")
        returned.set()
        return "reported"

    @worker.handler("stubborn")
    async def stubborn(payload: dict[str, Any], ctx: TaskContext) -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            if payload.get("swallow"):
                await asyncio.sleep(30)  # ignores the shutdown's cancel: cancelled again, harder
            raise
        return "never"

    return worker


async def test_the_outcome_goes_out_behind_an_unconfirmed_running_event_and_the_ack_waits_for_both(
    rabbitmq_url: str, channel: AbstractChannel, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    publishes = Publishes(monkeypatch)
    started, returned = asyncio.Event(), asyncio.Event()
    tap = await Tap.open(channel, f"*.{service}.*")
    task = envelope(service, "step", {})
    async with running(stepper(service, started, returned), rabbitmq_url):
        await publish_task(channel, task)
        await asyncio.wait_for(started.wait(), 10)
        assert publishes.log[0] == "start running" and "done running" not in publishes.log  # sent, unconfirmed
        # The outcome reaches the events exchange, in order, while the running event is unconfirmed...
        events = await tap.task_events(task.task_id)
        assert "done running" not in publishes.log
        await asyncio.sleep(0.3)  # ...and the task would have been acked by now, were it not waiting
        assert "ack" not in publishes.log
        publishes.confirm.set()
        await asyncio.wait_for(publishes.acked.wait(), 10)

    assert [_label(e) for e in events] == ["running", "progress", "task_completed"]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert publishes.log.index("start task_completed") < publishes.log.index("done running")
    assert publishes.log.index("done running") < publishes.log.index("ack")


async def test_a_progress_report_does_not_wait_for_its_confirm_and_the_next_one_waits_for_it(
    rabbitmq_url: str, channel: AbstractChannel, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    publishes = Publishes(monkeypatch, held=_is_progress)
    started, returned = asyncio.Event(), asyncio.Event()
    tap = await Tap.open(channel, f"*.{service}.*")
    once, twice = envelope(service, "reports", {"reports": 1}), envelope(service, "reports", {"reports": 2})
    async with running(stepper(service, started, returned), rabbitmq_url):
        # One report: the handler returns and the outcome goes out while the report is unconfirmed.
        await publish_task(channel, once)
        events = await tap.task_events(once.task_id)
        assert returned.is_set() and "done progress" not in publishes.log
        await asyncio.sleep(0.3)
        assert "ack" not in publishes.log  # the ack waits for the report's confirm
        publishes.confirm.set()
        await asyncio.wait_for(publishes.acked.wait(), 10)
        assert [_label(e) for e in events] == ["progress", "task_completed"]
        assert publishes.log.index("start task_completed") < publishes.log.index("done progress")
        assert publishes.log.index("done progress") < publishes.log.index("ack")

        # Two reports: the second waits for the first's confirm, so the handler has not returned.
        publishes.confirm.clear()
        publishes.acked.clear()
        publishes.log.clear()
        started.clear()
        returned.clear()
        await publish_task(channel, twice)
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.sleep(0.3)
        assert publishes.log == ["start progress"] and not returned.is_set()
        publishes.confirm.set()
        events = await tap.task_events(twice.task_id)
        await asyncio.wait_for(publishes.acked.wait(), 10)

    assert [_label(e) for e in events] == ["progress", "progress", "task_completed"]
    assert [e.data["progress"]["message"] for e in events[:2]] == ["report 1", "report 2"]


@pytest.mark.parametrize(
    ("failure", "logged"),
    [
        (BrokerError("channel closed by the test"), "not published"),
        # aiormq fails the confirms still due with CancelledError when their channel closes.
        (asyncio.CancelledError(), "publish was cancelled"),
    ],
    ids=["broker-error", "confirm-cancelled"],
)
async def test_a_running_event_that_fails_is_logged_and_the_task_still_completes_and_is_acked(
    rabbitmq_url: str,
    channel: AbstractChannel,
    service: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: BaseException,
    logged: str,
) -> None:
    publishes = Publishes(monkeypatch)
    publishes.fail_running = failure
    started, returned = asyncio.Event(), asyncio.Event()
    tap = await Tap.open(channel, f"*.{service}.*")
    task = envelope(service, "step", {})
    with caplog.at_level(logging.WARNING, logger="workers.runtime.attempt"):
        async with running(stepper(service, started, returned), rabbitmq_url):
            await publish_task(channel, task)
            events = await tap.task_events(task.task_id)  # the outcome does not wait for the failure
            assert "failed running" not in publishes.log
            publishes.confirm.set()
            await asyncio.wait_for(publishes.acked.wait(), 10)

    assert [_label(e) for e in events] == ["progress", "task_completed"]
    assert publishes.log.index("start task_completed") < publishes.log.index("failed running")
    assert publishes.log.index("failed running") < publishes.log.index("ack")
    assert any(logged in r.getMessage() and task.task_id in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("swallow", [False, True], ids=["interrupted", "ignores-cancel"])
async def test_a_running_event_never_confirmed_does_not_outlive_its_attempt_at_shutdown(
    rabbitmq_url: str, channel: AbstractChannel, service: str, monkeypatch: pytest.MonkeyPatch, swallow: bool
) -> None:
    """Interrupted, the attempt waits for the running event, and is cancelled with that wait after
    the unwind period; a handler that ignores the shutdown's cancel is cancelled with the attempt,
    which then cancels the running event's publish. Either way the message goes back to its queue."""
    monkeypatch.setattr(consumer, "CANCEL_UNWIND_SECONDS", 0.3)
    publishes = Publishes(monkeypatch)
    started = asyncio.Event()
    task = envelope(service, "stubborn", {"swallow": swallow})
    async with running(stepper(service, started, asyncio.Event()), rabbitmq_url) as runtime:
        await publish_task(channel, task)
        await asyncio.wait_for(started.wait(), 10)
        await runtime.stop(grace_seconds=0.1)

    await asyncio.wait_for(publishes.running_cancelled.wait(), 5)
    assert not any(entry.startswith("start task_") for entry in publishes.log)  # no outcome
    await wait_for_ready(channel, service, count=1)  # unacked: back in the queue
