"""Running one attempt of a task: checks, the running event, the handler, and what came of it.

The running event goes out as the handler starts; for a handler with track_started=False, only should
it still run LATE_RUNNING_SECONDS later without having reported progress (workers.runtime.late_running).

An attempt ends in an Outcome (a terminal event to publish: completed or cancelled), an
AttemptFailed (the runner decides between retry, dead letter and final failure, as the Worker's
RetryPolicy allows), or None when the process is shutting down and the message must go back to
its queue.

Its events carry sequence numbers attempt * ATTEMPT_SEQ_STRIDE + n, n = 1, 2, 3... The registry
drops an event whose seq is not above the last one it saw for the task. An attempt runs at most
once: a redelivered message is never run again in place but republished as the next attempt, so
every run starts a fresh, higher range. The few events a worker emits for a redelivered message
without running it (its job was cancelled, or its attempts are used up) come from the range after
the attempt, above whatever its interrupted run emitted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import aiohttp
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from protocol.envelope import TaskEnvelope
from protocol.errors import summarise_validation
from protocol.events import (
    ATTEMPT_SEQ_STRIDE,
    JobStatus,
    Progress,
    TaskEvent,
    cancelled_event,
    completed_event,
    failed_event,
    status_event,
)
from workers.breaker import CircuitBreakers
from workers.config import WorkerSettings
from workers.context import ChildCaller, JobSubmitter, TaskContext
from workers.errors import BrokerError, CircuitOpenError, DeadlineExceeded, PermanentError, TimeLimitExceeded
from workers.http import ContextHttpClient, HttpPolicy, context_headers
from workers.runtime.advisories import Advisories
from workers.runtime.cancellations import CancelledJobs
from workers.runtime.event_publisher import EventPublisher
from workers.runtime.executions import Execution, Executions, Interrupted, StopReason, seconds_until
from workers.runtime.handler_traceback import handler_traceback
from workers.runtime.ids_and_spans import TaskTelemetry
from workers.runtime.intake import Accepted
from workers.runtime.late_running import LATE_RUNNING_SECONDS, LateRunning
from workers.sdk import HandlerSpec

log = logging.getLogger(__name__)

MAX_ERROR_CHARS: Final[int] = 2000

VALIDATION_ERROR: Final[str] = "ValidationError"
DEADLINE_EXCEEDED: Final[str] = DeadlineExceeded.__name__
TIME_LIMIT_EXCEEDED: Final[str] = TimeLimitExceeded.__name__
WORKER_LOST: Final[str] = "WorkerLost"


class EventSequence:
    """The seq numbers of one attempt's events (see the module docstring)."""

    def __init__(self, attempt: int) -> None:
        self._base = attempt * ATTEMPT_SEQ_STRIDE
        self._n = 0

    @classmethod
    def for_delivery(cls, envelope: TaskEnvelope, *, redelivered: bool) -> EventSequence:
        return cls(envelope.attempt + 1 if redelivered else envelope.attempt)

    def next(self) -> int:
        self._n += 1
        return self._base + self._n


@dataclass(frozen=True)
class Failure:
    """What a failed attempt is: its error, its type, and whether another attempt could help
    (whether it gets one is the RetryPolicy's call, applied by the runner)."""

    error: str
    error_type: str
    status: Literal[JobStatus.FAILED, JobStatus.TIMED_OUT] = JobStatus.FAILED
    retryable: bool = True
    # The error's own word on when another attempt could succeed (an open circuit breaker's cooldown):
    # the next attempt waits at least this long, whatever the retry policy's backoff says.
    not_before_seconds: float = 0.0
    # Where a handler failed (handler_traceback); None for the failures the runtime itself decides.
    traceback: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException) -> Failure:
        """A handler's exception, with its traceback; PermanentError (and its subclasses) are never retryable."""
        message = str(exc) or repr(exc)
        wait = exc.retry_after_seconds() if isinstance(exc, CircuitOpenError) else 0.0
        return cls(
            clip(message),
            type(exc).__name__,
            retryable=not isinstance(exc, PermanentError),
            not_before_seconds=wait,
            traceback=handler_traceback(exc),
        )

    @classmethod
    def invalid_payload(cls, model: object, exc: ValidationError) -> Failure:
        name = getattr(model, "__name__", None) or repr(model)
        return cls(f"payload does not match {name}: {summarise_validation(exc)}", VALIDATION_ERROR, retryable=False)

    @classmethod
    def deadline(cls, detail: str) -> Failure:
        return cls(detail, DEADLINE_EXCEEDED, JobStatus.TIMED_OUT, retryable=False)

    @classmethod
    def time_limit(cls, detail: str) -> Failure:
        return cls(detail, TIME_LIMIT_EXCEEDED)

    @classmethod
    def worker_lost(cls, attempt: int) -> Failure:
        """A delivery came back unsettled: its run died with its worker or its connection."""
        return cls(f"attempt {attempt} did not finish (worker crash, lost connection or shutdown)", WORKER_LOST)

    @classmethod
    def permanent(cls, error: str, error_type: str) -> Failure:
        return cls(clip(error), error_type, retryable=False)

    def event(self, envelope: TaskEnvelope, seq: int) -> TaskEvent:
        """The final task_failed event reporting this failure. A workflow step's also says whether another
        attempt could help (`retryable`): the workflow engine, not this runtime, decides its retries."""
        event = failed_event(
            envelope,
            error=self.error,
            error_type=self.error_type,
            seq=seq,
            status=self.status,
            traceback=self.traceback,
        )
        if envelope.metadata.source != "workflow":
            return event
        return event.model_copy(update={"data": {**event.data, "retryable": self.retryable}})


def clip(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


@dataclass(frozen=True)
class Outcome:
    event: TaskEvent
    body: bytes | None = None  # already encoded (and size-checked), when the runner had to encode it
    # The attempt's running and progress events whose confirms are still due. Their frames left ahead
    # of the outcome's on the same channel (workers.runtime.advisories), so the outcome need not wait
    # for them; whoever publishes the outcome settles them before acking the task.
    advisories: Advisories | None = None


@dataclass(frozen=True)
class AttemptFailed:
    failure: Failure
    seq: EventSequence  # the attempt's sequence, for the events that report the failure


@dataclass(frozen=True)
class AttemptDeps:
    settings: WorkerSettings
    events: EventPublisher
    executions: Executions
    cancelled: CancelledJobs
    caller: ChildCaller
    jobs: JobSubmitter
    http_session: aiohttp.ClientSession
    http_policy: HttpPolicy
    breakers: CircuitBreakers
    # Whether an attempt of a handler announces `running` as it starts (Worker.track_started_for).
    track_started: Callable[[HandlerSpec], bool]
    # When one that does not still announces it, should its handler run that long (workers.runtime.late_running).
    late_running_seconds: float = LATE_RUNNING_SECONDS
    telemetry: TaskTelemetry = field(default_factory=lambda: TaskTelemetry("", ""))


class AttemptRunner:
    def __init__(self, deps: AttemptDeps) -> None:
        self._d = deps

    async def run(self, accepted: Accepted, time_limit: float) -> Outcome | AttemptFailed | None:
        envelope, handler = accepted.envelope, accepted.handler
        seq = EventSequence(envelope.attempt)
        execution = self._d.executions.add(envelope)
        try:
            # Checked after registering: a cancel broadcast from now on stops the execution instead.
            reason = self._d.cancelled.reason_for(envelope)
            if reason is not None:
                return Outcome(cancelled_event(envelope, reason, seq.next()))
            if envelope.is_expired():
                return AttemptFailed(
                    Failure.deadline(f"deadline {envelope.deadline} passed before the task started"), seq
                )
            try:
                payload = handler.parse_payload(envelope.payload)
            except ValidationError as exc:
                return AttemptFailed(Failure.invalid_payload(handler.payload_type, exc), seq)
            # Running and progress events are not awaited before the handler or the outcome, only
            # collected before the ack (workers.runtime.advisories): their frames go out first.
            advisories = Advisories(self.publish_advisory)
            late: LateRunning | None = None
            if self._d.track_started(handler):
                advisories.send(status_event(envelope, JobStatus.RUNNING, seq.next()))
            else:
                late = LateRunning(
                    lambda: advisories.send(status_event(envelope, JobStatus.RUNNING, seq.next())),
                    self._d.late_running_seconds,
                )
            try:
                with self._d.telemetry.handler(envelope):
                    result = await self._run_handler(
                        execution, handler.func, payload, seq, time_limit, advisories, late
                    )
            except BaseException:
                await advisories.abandon()
                raise
            if isinstance(result, Outcome):
                return Outcome(result.event, result.body, advisories)
            await advisories.settle()  # cancelled with this task, should it be cancelled while waiting
            return result
        finally:
            self._d.executions.remove(execution)

    async def _run_handler(
        self,
        execution: Execution,
        func: Any,
        payload: Any,
        seq: EventSequence,
        time_limit: float,
        advisories: Advisories,
        late: LateRunning | None,
    ) -> Outcome | AttemptFailed | None:
        envelope = execution.envelope
        ctx = self._context(envelope, seq, time_limit, advisories, late)
        # With a late announcement the handler's coroutine is made inside its run (LateRunning.around).
        handler_run = func(payload, ctx) if late is None else late.around(lambda: func(payload, ctx))
        try:
            result = await execution.run(handler_run, time_limit)
        except Interrupted as stop:
            if stop.reason is StopReason.SHUTDOWN:
                return None
            return Outcome(cancelled_event(envelope, stop.detail, seq.next()))
        except DeadlineExceeded as exc:
            return AttemptFailed(Failure.deadline(str(exc)), seq)
        except TimeLimitExceeded as exc:
            log.warning("task %s (%s) attempt %d: %s", envelope.task_id, envelope.type, envelope.attempt, exc)
            return AttemptFailed(Failure.time_limit(str(exc)), seq)
        except Exception as exc:
            log.debug("handler of task %s (%s) raised", envelope.task_id, envelope.type, exc_info=True)
            return AttemptFailed(Failure.from_exception(exc), seq)
        finally:
            if late is not None:
                late.drop()  # however the attempt ends, its announcement ends with it
        return self._completed(envelope, result, seq)

    def _completed(self, envelope: TaskEnvelope, result: Any, seq: EventSequence) -> Outcome | AttemptFailed:
        try:
            # Pydantic's JSON conventions: models and dataclasses dumped, NaN/Infinity as null.
            data = to_jsonable_python(result, inf_nan_mode="null")
        except PydanticSerializationError as exc:
            error = f"result of type {type(result).__name__} is not serialisable: {exc}"
            return AttemptFailed(Failure.permanent(error, "ResultNotSerializable"), seq)
        event = completed_event(envelope, data, seq.next())
        body = self._d.events.encode(event)
        cap = self._d.settings.max_message_bytes
        if len(body) > cap:
            error = f"result encodes to {len(body)} bytes, over the {cap}-byte message cap"
            return AttemptFailed(Failure.permanent(error, "ResultTooLarge"), seq)
        return Outcome(event, body)

    def _context(
        self,
        envelope: TaskEnvelope,
        seq: EventSequence,
        time_limit: float,
        advisories: Advisories,
        late: LateRunning | None,
    ) -> TaskContext:
        async def report_progress(progress: Progress) -> None:
            if late is not None:
                # A progress event marks the job running already. And a running event fired while a report
                # waits for the one before it would take a later seq yet go out first: the registry would
                # then drop that report.
                late.drop()
            # The seq is taken when the report is made, so reports keep the handler's order.
            await advisories.progress(status_event(envelope, JobStatus.RUNNING, seq.next(), progress))

        # The handler's budget, as Execution.run bounds it: the time limit, or the deadline when sooner.
        to_deadline = seconds_until(envelope.deadline)
        budget = time_limit if to_deadline is None else min(time_limit, to_deadline)
        http = ContextHttpClient(
            self._d.http_session,
            context_headers(envelope),
            self._d.http_policy,
            breakers=self._d.breakers,
            budget_ends_at=time.monotonic() + budget,
        )
        return TaskContext(
            envelope,
            settings=self._d.settings,
            http=http,
            report_progress=report_progress,
            caller=self._d.caller,
            jobs=self._d.jobs,
        )

    async def publish_advisory(self, event: TaskEvent) -> None:
        """Running, progress and retrying events: a broker hiccup must not fail the task."""
        try:
            await self._d.events.publish_event(event)
        except BrokerError as exc:
            log.warning("status event of task %s not published: %s", event.task_id, exc)
