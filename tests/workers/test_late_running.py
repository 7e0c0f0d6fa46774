"""The late `running` event of a handler with `track_started=False` (workers.runtime.late_running): one still
running after the delay announces it then, ahead of its outcome and in its attempt's seq order; a short one,
one that reported progress, and one that ended any other way announce nothing, not even after the delay.

Read off messages taken from a real queue bound to baton.events, from a real worker runtime whose delay is
shortened (LATE seconds instead of LATE_RUNNING_SECONDS); the last tests drive LateRunning on its own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aio_pika import DeliveryMode
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from protocol.events import ATTEMPT_SEQ_STRIDE, EventType, TaskEvent
from tests.workers.helpers import CODECS, Tap, envelope, publish_task, running
from workers import PermanentError, RetryPolicy, TaskContext, Worker
from workers.runtime.late_running import LATE_RUNNING_SECONDS, LateRunning

LATE = 0.5
NO_RETRY = RetryPolicy(max_retries=0)


def label(event: TaskEvent) -> str:
    if event.event is EventType.TASK_STATUS_UPDATE:
        return "progress" if "progress" in event.data else str(event.data["status"])
    return event.event.value


async def next_of(tap: Tap, task_id: str) -> tuple[TaskEvent, AbstractIncomingMessage]:
    """The task's next event, with the message that carried it (heartbeats and other tasks' events skipped)."""
    while True:
        message = await tap.next_message()
        if (message.routing_key or "").startswith("_system."):
            continue
        event = CODECS.decode(TaskEvent, message.body, message.content_type)
        if event.task_id == task_id:
            return event, message


class Quiet:
    """A service whose handler announces nothing as it starts; what its payload says it does:
    `progress` reports first, `hold` waits for `finish`, `sleep` sleeps that long, `fail` fails for good."""

    def __init__(self, service: str) -> None:
        self.started = asyncio.Event()
        self.finish = asyncio.Event()
        self.worker = Worker(service, retry=NO_RETRY, track_started=False)
        self.worker.handler("work")(self.work)
        self.worker.handler("limited", time_limit=0.2)(self.work)

    async def work(self, payload: dict[str, Any], ctx: TaskContext) -> str:
        self.started.set()
        if payload.get("progress"):
            await ctx.progress(50, "half way")
        if payload.get("hold"):
            await self.finish.wait()
        await asyncio.sleep(payload.get("sleep", 0))
        if payload.get("fail"):
            raise PermanentError("refused for good")
        return "done"


async def test_a_quiet_handler_still_running_after_the_delay_announces_running_then(
    rabbitmq_url: str, channel: AbstractChannel, service: str
) -> None:
    quiet = Quiet(service)
    tap = await Tap.open(channel, f"*.{service}.*")
    task = envelope(service, "work", {"hold": True})
    async with running(quiet.worker, rabbitmq_url, late_running_seconds=LATE):
        await publish_task(channel, task)
        await asyncio.wait_for(quiet.started.wait(), 10)
        started = time.monotonic()
        first, message = await next_of(tap, task.task_id)
        announced_after = time.monotonic() - started
        assert not quiet.finish.is_set()  # announced while the handler runs
        quiet.finish.set()
        rest = await tap.task_events(task.task_id)

    events = [first, *rest]
    assert [label(e) for e in events] == ["running", "task_completed"]
    assert announced_after >= LATE * 0.8, announced_after  # not as it started
    assert message.delivery_mode is DeliveryMode.NOT_PERSISTENT  # the same transient event as an immediate one
    # The first of its attempt's sequence, as an immediate one would be: the outcome's follows it.
    assert [e.seq for e in events] == [task.attempt * ATTEMPT_SEQ_STRIDE + 1, task.attempt * ATTEMPT_SEQ_STRIDE + 2]


@pytest.mark.parametrize(
    ("job_type", "payload", "expected"),
    [
        ("work", {}, ["task_completed"]),
        ("work", {"fail": True}, ["task_failed"]),
        ("limited", {"sleep": 5}, ["task_failed"]),  # its time limit (0.2 s) cancels it before the delay
        ("work", {"progress": True, "sleep": 2 * LATE}, ["progress", "task_completed"]),  # running past the delay
    ],
    ids=["returns", "raises", "time-limit", "reported-progress"],
)
async def test_a_quiet_handler_that_ends_or_reports_progress_before_the_delay_never_announces_running(
    rabbitmq_url: str,
    channel: AbstractChannel,
    service: str,
    job_type: str,
    payload: dict[str, Any],
    expected: list[str],
) -> None:
    quiet = Quiet(service)
    tap = await Tap.open(channel, f"*.{service}.*")
    task = envelope(service, job_type, payload)
    async with running(quiet.worker, rabbitmq_url, late_running_seconds=LATE):
        await publish_task(channel, task)
        events = await tap.task_events(task.task_id)
        await asyncio.sleep(2 * LATE)  # past the delay, counted from the handler's start: nothing follows
        later = [e for e in tap.drain_events() if e.task_id == task.task_id]

    assert [label(e) for e in events] == expected
    assert later == []
    assert [e.seq for e in events] == sorted(e.seq for e in events)


async def test_late_running_announces_once_after_the_delay_while_the_handler_runs() -> None:
    announced: list[float] = []
    late = LateRunning(lambda: announced.append(time.monotonic()), delay_seconds=0.05)
    began = time.monotonic()

    async def handler() -> str:
        await asyncio.sleep(0.2)
        return "done"

    assert await late.around(handler) == "done"
    assert len(announced) == 1 and announced[0] - began >= 0.05
    assert LATE_RUNNING_SECONDS == 10.0  # what the README and workers.sdk promise


async def test_late_running_dropped_announces_nothing() -> None:
    announced: list[bool] = []
    late = LateRunning(lambda: announced.append(True), delay_seconds=0.05)

    async def handler() -> None:
        late.drop()  # as a progress report does
        await asyncio.sleep(0.2)

    await late.around(handler)
    assert announced == []


async def test_a_handler_returning_in_the_loop_turn_its_timer_falls_due_is_not_announced() -> None:
    """The timer is cancelled in the handler's own step as it returns, not by a callback a turn later: a
    timer already due, queued behind that step, is skipped."""
    loop = asyncio.get_running_loop()
    announced: list[bool] = []
    late = LateRunning(lambda: announced.append(True), delay_seconds=0.05)
    release = asyncio.Event()

    def release_then_block() -> None:
        release.set()  # the handler's next step is queued for the next loop turn...
        time.sleep(0.1)  # ...by when its timer is due too, and queued behind it

    async def handler() -> str:
        await release.wait()
        return "done"

    loop.call_later(0.01, release_then_block)
    assert await late.around(handler) == "done"
    await asyncio.sleep(0.1)
    assert announced == []
