"""Running one delivery end to end: intake, checks, handler, outcome event, ack.

Order of one task: task_status_update{running} -> progress updates -> one outcome
(task_completed | task_failed | task_cancelled). The message is acked only after the
outcome event is confirmed by the broker; if it cannot be, the message is requeued.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from protocol.envelope import TaskEnvelope
from protocol.events import JobStatus, Progress, TaskEvent, cancelled_event, completed_event, status_event
from workers.config import WorkerSettings
from workers.context import ChildCaller, TaskContext
from workers.errors import BrokerError
from workers.http import ContextHttpClient, HttpPolicy, context_headers
from workers.runtime import acks
from workers.runtime.control import CancelledJobs
from workers.runtime.dead_letters import DeadLetterer
from workers.runtime.events import EventPublisher
from workers.runtime.executions import DeadlineExceeded, Execution, Executions, Interrupted, StopReason
from workers.runtime.failures import Failure, FailurePolicy
from workers.runtime.intake import Accepted, Rejection, classify
from workers.runtime.lru import BoundedMap
from workers.runtime.sequence import EventSequence
from workers.sdk import Worker

log = logging.getLogger(__name__)

DEFAULT_REMEMBERED_TASKS: Final[int] = 10_000


@dataclass(frozen=True)
class Outcome:
    event: TaskEvent
    body: bytes | None = None  # already encoded (and size-checked), when the runner had to encode it


@dataclass(frozen=True)
class RunnerDeps:
    """What the runner talks to; built once by the runtime."""

    worker: Worker
    settings: WorkerSettings
    events: EventPublisher
    dead_letters: DeadLetterer
    executions: Executions
    cancelled: CancelledJobs
    caller: ChildCaller
    http_session: aiohttp.ClientSession
    http_policy: HttpPolicy
    failures: FailurePolicy


class TaskRunner:
    def __init__(self, deps: RunnerDeps) -> None:
        self._d = deps
        self._codecs = deps.events.codecs
        # Tasks whose outcome this process already published: a redelivery after a lost ack
        # is acked without running the handler a second time.
        self._finished: BoundedMap[str, bool] = BoundedMap(DEFAULT_REMEMBERED_TASKS)
        self._in_progress: dict[str, asyncio.Future[bool]] = {}

    async def process(self, message: AbstractIncomingMessage) -> None:
        verdict = classify(message, self._d.worker, self._codecs)
        if isinstance(verdict, Rejection):
            await self._park(message, verdict)
            return
        task_id = verdict.envelope.task_id
        if task_id in self._finished:
            log.debug("task %s already finished in this process; acking the redelivery", task_id)
            await acks.ack(message)
            return
        running = self._in_progress.get(task_id)
        if running is not None:
            # Redelivered after a channel loss while the first copy still runs here (its ack will
            # fail): settle this copy with that run's result instead of running the handler twice.
            log.debug("task %s redelivered while running here; waiting for the running copy", task_id)
            await (acks.ack(message) if await asyncio.shield(running) else acks.requeue(message))
            return
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._in_progress[task_id] = done
        try:
            published = await self._run_and_publish(verdict, message)
            done.set_result(published)
        finally:
            del self._in_progress[task_id]
            if not done.done():
                done.set_result(False)

    async def _run_and_publish(self, verdict: Accepted, message: AbstractIncomingMessage) -> bool:
        """Run the task, publish its outcome and settle the message; True when the outcome was published."""
        task_id = verdict.envelope.task_id
        started = time.monotonic()
        outcome = await self._execute(verdict, redelivered=bool(message.redelivered))
        if outcome is None:
            log.debug("task %s interrupted by shutdown; requeued", task_id)
            await acks.requeue(message)
            return False
        if not await self._d.events.publish_outcome(outcome.event, message.reply_to, outcome.body):
            await acks.requeue(message)
            return False
        self._finished.put(task_id, True)
        await acks.ack(message)
        log.debug(
            "task %s (%s) %s in %.3f s",
            task_id,
            verdict.envelope.type,
            outcome.event.status.value,
            time.monotonic() - started,
        )
        return True

    async def _park(self, message: AbstractIncomingMessage, rejection: Rejection) -> None:
        log.warning("dead-lettering message %s: %s: %s", message.message_id, rejection.reason.value, rejection.error)
        try:
            await self._d.dead_letters.park(message, rejection)
        except BrokerError as exc:
            # The queue's own dead-letter route still parks it (without our reason headers).
            log.error("could not park message %s with its reason (%s); rejecting it", message.message_id, exc)
            await acks.reject(message)
            return
        await acks.ack(message)

    async def _execute(self, accepted: Accepted, *, redelivered: bool) -> Outcome | None:
        """The outcome to publish, or None when the message must go back to the queue."""
        envelope, handler = accepted.envelope, accepted.handler
        seq = EventSequence.for_delivery(envelope, redelivered=redelivered)
        execution = self._d.executions.add(envelope)
        try:
            reason = self._d.cancelled.reason_for(envelope)
            if reason is not None:
                return Outcome(cancelled_event(envelope, reason, seq.next()))
            if envelope.is_expired():
                failure = Failure.deadline(f"deadline {envelope.deadline} passed before the task started")
                return Outcome(self._d.failures.outcome(envelope, failure, seq.next()))
            try:
                payload = handler.parse_payload(envelope.payload)
            except ValidationError as exc:
                failure = Failure.invalid_payload(handler.payload_type, exc)
                return Outcome(self._d.failures.outcome(envelope, failure, seq.next()))
            await self._publish_progress_event(status_event(envelope, JobStatus.RUNNING, seq.next()))
            return await self._run_handler(execution, handler.func, payload, seq)
        finally:
            self._d.executions.remove(execution)

    async def _run_handler(self, execution: Execution, func: Any, payload: Any, seq: EventSequence) -> Outcome | None:
        envelope = execution.envelope
        ctx = self._context(envelope, seq)
        try:
            result = await execution.run(func(payload, ctx))
        except Interrupted as stop:
            if stop.reason is StopReason.SHUTDOWN:
                return None
            return Outcome(cancelled_event(envelope, stop.detail, seq.next()))
        except DeadlineExceeded as exc:
            return Outcome(self._d.failures.outcome(envelope, Failure.deadline(str(exc)), seq.next()))
        except Exception as exc:
            log.debug("handler of task %s (%s) raised", envelope.task_id, envelope.type, exc_info=True)
            return Outcome(self._d.failures.outcome(envelope, Failure.from_exception(exc), seq.next()))
        return self._completed(envelope, result, seq)

    def _completed(self, envelope: TaskEnvelope, result: Any, seq: EventSequence) -> Outcome:
        try:
            # Pydantic's JSON conventions: models and dataclasses dumped, NaN/Infinity as null.
            data = to_jsonable_python(result, inf_nan_mode="null")
        except PydanticSerializationError as exc:
            failure = Failure.permanent(f"result of type {type(result).__name__} is not serialisable: {exc}",
                                        "ResultNotSerializable")
            return Outcome(self._d.failures.outcome(envelope, failure, seq.next()))
        event = completed_event(envelope, data, seq.next())
        body = self._d.events.encode(event)
        if len(body) > self._d.settings.max_message_bytes:
            failure = Failure.permanent(
                f"result encodes to {len(body)} bytes, over the {self._d.settings.max_message_bytes}-byte message cap",
                "ResultTooLarge",
            )
            return Outcome(self._d.failures.outcome(envelope, failure, event.seq))
        return Outcome(event, body)

    def _context(self, envelope: TaskEnvelope, seq: EventSequence) -> TaskContext:
        async def report_progress(progress: Progress) -> None:
            await self._publish_progress_event(status_event(envelope, JobStatus.RUNNING, seq.next(), progress))

        return TaskContext(
            envelope,
            settings=self._d.settings,
            http=ContextHttpClient(self._d.http_session, context_headers(envelope), self._d.http_policy),
            report_progress=report_progress,
            caller=self._d.caller,
        )

    async def _publish_progress_event(self, event: TaskEvent) -> None:
        """Running/progress events are advisory: a broker hiccup must not fail the task."""
        try:
            await self._d.events.publish_event(event)
        except BrokerError as exc:
            log.warning("status event of task %s not published: %s", event.task_id, exc)
