"""One delivery end to end: intake, the delivery ledger, one attempt, and settling the message.

Order of one attempt: task_status_update{running} (with track_started=False only from a handler still
running after LATE_RUNNING_SECONDS without a progress report) -> progress updates -> one outcome:
task_completed | task_cancelled | task_failed (final) | task_status_update{retrying} with the
next attempt published to a delay queue | task_failed after the task is parked as a dead letter.
The message is acked only after what replaces it (outcome event, next attempt, dead letter) is
confirmed by the broker; if that cannot be, the message is requeued.

A message that comes back redelivered is never run in place: its earlier run may have had
effects, and its events used that attempt's seq range. It becomes the next attempt (or a dead
letter once the attempts are used up), so a crash loop ends parked rather than spinning.
The broker cannot tell a started delivery from one that only waited in this process's prefetch
buffer: after a crash (kill -9, OOM) both come back redelivered, so the prefetched-but-unstarted
ones use up an attempt too. A graceful stop avoids that: `hand_back` publishes each delivery
that never started as it came (same attempt) before acking it.

Duplicates are told by (task_id, attempt): a dead-letter replay or a sweeper's republish sends
the same task id with a higher attempt, which must run even though an earlier attempt finished.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Final

from aio_pika.abc import AbstractIncomingMessage

from protocol.codec import CodecSet
from protocol.envelope import TaskEnvelope
from protocol.errors import DecodeError
from protocol.events import JobStatus, cancelled_event, status_event
from protocol.topology import DeadLetterReason
from workers.errors import BrokerError
from workers.runtime.attempt import AttemptFailed, AttemptRunner, EventSequence, Failure, Outcome
from workers.runtime.bounded_map import BoundedMap
from workers.runtime.cancellations import CancelledJobs
from workers.runtime.event_publisher import EventPublisher
from workers.runtime.executions import TimeLimits
from workers.runtime.flow_gate import Admitted, FlowGate, Refusal, Refused
from workers.runtime.forwarding import DeadLetterer, Rescheduler
from workers.runtime.intake import Accepted, Rejection, classify
from workers.runtime.ledger import LedgerState, TaskLedger
from workers.runtime.settle import Happened, Settlement, decide, settle
from workers.runtime.task_observer import TaskObserver
from workers.sdk import Worker

log = logging.getLogger(__name__)

DEFAULT_REMEMBERED_TASKS: Final[int] = 10_000
CANCELLED_REASON: Final[str] = "job cancelled"


@dataclass
class RunnerStats:
    """What the runner did besides running handlers; read by tests and logs."""

    duplicates_skipped: int = 0  # done per the ledger: acked without running
    handed_back: int = 0  # never started before a graceful stop: published again as they came
    redeliveries_republished: int = 0
    retries_scheduled: int = 0
    dead_lettered: int = 0


@dataclass(frozen=True)
class RunnerDeps:
    """What the runner talks to; built once by the runtime."""

    worker: Worker
    codecs: CodecSet
    events: EventPublisher
    attempts: AttemptRunner
    dead_letters: DeadLetterer
    rescheduler: Rescheduler
    ledger: TaskLedger
    limits: TimeLimits
    cancelled: CancelledJobs
    observer: TaskObserver  # the process's metrics
    flow_gate: FlowGate | None = None  # None: the service has no flow limits, and no delivery asks Redis for them


class TaskRunner:
    def __init__(self, deps: RunnerDeps, stats: RunnerStats) -> None:
        self._d = deps
        self.stats = stats
        # Task id -> the highest attempt whose outcome this process published (or found done in the
        # ledger): the fast path before asking the ledger.
        self._finished: BoundedMap[str, int] = BoundedMap(DEFAULT_REMEMBERED_TASKS)
        self._in_progress: dict[tuple[str, int], asyncio.Future[Settlement]] = {}

    async def process(self, message: AbstractIncomingMessage, received_at: float) -> None:
        verdict = classify(message, self._d.worker, self._d.codecs)
        if isinstance(verdict, Rejection):
            await self.park(message, verdict)
            return
        task_id, attempt = verdict.envelope.task_id, verdict.envelope.attempt
        finished = self._finished.get(task_id)
        if finished is not None and attempt <= finished:
            log.debug("task %s attempt %d already finished in this process; acking the copy", task_id, attempt)
            await self._settle(message, Happened.ALREADY_FINISHED)
            return
        # Per attempt: the next attempt of a task may arrive while this one is still being settled.
        key = (task_id, attempt)
        running = self._in_progress.get(key)
        if running is not None:
            # Redelivered after a channel loss while the first copy still runs here (its ack will
            # fail): settle this copy as that run settles, instead of running the handler twice.
            log.debug("task %s redelivered while running here; waiting for the running copy", task_id)
            await settle(message, await asyncio.shield(running))
            return
        settled: asyncio.Future[Settlement] = asyncio.get_running_loop().create_future()
        self._in_progress[key] = settled
        try:
            settled.set_result(await self._deliver(verdict, message, received_at))
        finally:
            del self._in_progress[key]
            if not settled.done():
                settled.set_result(Settlement.REQUEUE)

    async def _deliver(self, accepted: Accepted, message: AbstractIncomingMessage, received_at: float) -> Settlement:
        """ACK when what follows this delivery (outcome, next attempt or dead letter) is published:
        a copy of it is then acked too; REQUEUE when the message went back to the queue."""
        envelope = accepted.envelope
        redelivered = bool(message.redelivered)
        ledger_read_at = time.monotonic()
        state = await self._d.ledger.check(envelope)
        if state is LedgerState.DONE:
            self.stats.duplicates_skipped += 1
            log.debug(
                "task %s attempt %d already done per the ledger; acking it unrun", envelope.task_id, envelope.attempt
            )
            self._remember_finished(envelope)
            return await self._settle(message, Happened.ALREADY_FINISHED)
        if state is LedgerState.CLEAR:
            # The ledger outranks a remembered broadcast (see CancelledJobs): the job was reopened.
            self._d.cancelled.forget_stale(envelope, ledger_read_at)
        reason = self._d.cancelled.reason_for(envelope)
        if state is LedgerState.CANCELLED or reason is not None:
            return await self._cancelled(message, envelope, reason or CANCELLED_REASON, redelivered=redelivered)
        if redelivered:
            return await self._redelivered(accepted, message)
        gate = self._d.flow_gate
        admitted: Admitted | None = None
        if gate is not None:
            verdict = await gate.admit(envelope, self._d.limits.max_wait(envelope.type, received_at))
            if isinstance(verdict, Refused):
                return await self._refused(accepted, message, verdict)
            admitted = verdict
        self._d.observer.attempt_started(envelope)
        started = time.monotonic()
        try:
            # The budget counts any wait for a flow limit: the broker's consumer timeout runs from delivery.
            result = await self._d.attempts.run(accepted, self._d.limits.budget(envelope.type, received_at))
        finally:
            self._d.observer.attempt_ran(envelope, time.monotonic() - started)
            if gate is not None and admitted is not None:
                await gate.release(admitted)
        log.debug(
            "task %s (%s) attempt %d ran %.3f s",
            envelope.task_id,
            envelope.type,
            envelope.attempt,
            time.monotonic() - started,
        )
        if result is None:
            log.debug("task %s interrupted by shutdown; requeued", envelope.task_id)
            return await self._settle(message, Happened.INTERRUPTED)
        if isinstance(result, Outcome):
            return await self._finish(message, envelope, result)
        return await self._failed(accepted, message, result)

    async def _cancelled(
        self, message: AbstractIncomingMessage, envelope: TaskEnvelope, reason: str, *, redelivered: bool
    ) -> Settlement:
        """The job was cancelled before this delivery ran: its outcome is task_cancelled."""
        seq = EventSequence.for_delivery(envelope, redelivered=redelivered)
        return await self._finish(message, envelope, Outcome(cancelled_event(envelope, reason, seq.next())))

    async def _refused(self, accepted: Accepted, message: AbstractIncomingMessage, refused: Refused) -> Settlement:
        """The delivery waited for a flow limit and will not run now."""
        envelope = accepted.envelope
        if refused.refusal is Refusal.CANCELLED:
            return await self._cancelled(message, envelope, refused.detail, redelivered=False)
        if refused.refusal is Refusal.DEADLINE:
            failed = AttemptFailed(Failure.deadline(refused.detail), EventSequence(envelope.attempt))
            return await self._failed(accepted, message, failed)
        log.info("task %s not started: %s; handing it back to the queue", envelope.task_id, refused.detail)
        return await self.hand_back(message)

    async def _failed(self, accepted: Accepted, message: AbstractIncomingMessage, failed: AttemptFailed) -> Settlement:
        envelope, failure = accepted.envelope, failed.failure
        # A workflow step's retries are its definition's (`retry`), decided by the workflow engine with a
        # new attempt of the step: the runtime reports the failure once instead of retrying it here.
        if not failure.retryable or envelope.metadata.source == "workflow":
            return await self._finish(message, envelope, Outcome(failure.event(envelope, failed.seq.next())))
        policy = self._d.worker.retry_for(accepted.handler)
        if not policy.allows_another_attempt(envelope.attempt):
            return await self._bury(message, envelope, failure, failed.seq)
        try:
            wanted = max(policy.delay_seconds(envelope.attempt), failure.not_before_seconds)
            delay = await self._d.rescheduler.later(message, envelope, wanted)
        except BrokerError as exc:
            # Requeued, it comes back redelivered and becomes the next attempt without the delay.
            log.warning("retry of task %s not scheduled (%s); requeueing it", envelope.task_id, exc)
            return await self._settle(message, Happened.PUBLISH_FAILED)
        self.stats.retries_scheduled += 1
        self._d.observer.retried(envelope)
        retrying = status_event(envelope, JobStatus.RETRYING, failed.seq.next())
        data = {
            **retrying.data,
            "next_attempt": envelope.attempt + 1,
            "delay_seconds": delay,
            "error": failure.error,
            "error_type": failure.error_type,
        }
        await self._d.attempts.publish_advisory(retrying.model_copy(update={"data": data}))
        log.info(
            "task %s attempt %d failed (%s); attempt %d in %.1f s",
            envelope.task_id,
            envelope.attempt,
            failure.error_type,
            envelope.attempt + 1,
            delay,
        )
        return await self._settle(message, Happened.NEXT_ATTEMPT_PUBLISHED)

    async def _redelivered(self, accepted: Accepted, message: AbstractIncomingMessage) -> Settlement:
        envelope = accepted.envelope
        if not self._d.worker.retry_for(accepted.handler).allows_another_attempt(envelope.attempt):
            seq = EventSequence.for_delivery(envelope, redelivered=True)
            return await self._bury(message, envelope, Failure.worker_lost(envelope.attempt), seq)
        try:
            await self._d.rescheduler.now(message, envelope)
        except BrokerError as exc:
            log.warning("redelivered task %s not republished (%s); requeueing it", envelope.task_id, exc)
            return await self._settle(message, Happened.PUBLISH_FAILED)
        self.stats.redeliveries_republished += 1
        self._d.observer.retried(envelope)
        log.info(
            "task %s attempt %d was redelivered; republished as attempt %d",
            envelope.task_id,
            envelope.attempt,
            envelope.attempt + 1,
        )
        return await self._settle(message, Happened.NEXT_ATTEMPT_PUBLISHED)

    async def _bury(
        self, message: AbstractIncomingMessage, envelope: TaskEnvelope, failure: Failure, seq: EventSequence
    ) -> Settlement:
        """The last attempt failed: park the task as received, then fail its job."""
        rejection = Rejection(
            DeadLetterReason.MAX_RETRIES_EXCEEDED, failure.error, envelope.tenant_id, envelope, failure.error_type
        )
        try:
            await self._d.dead_letters.park(message, rejection)
        except BrokerError as exc:
            log.warning("task %s not dead-lettered (%s); requeueing it", envelope.task_id, exc)
            return await self._settle(message, Happened.PUBLISH_FAILED)
        self.stats.dead_lettered += 1
        self._d.observer.parked(envelope)
        log.warning(
            "task %s dead-lettered after %d attempt(s): %s: %s",
            envelope.task_id,
            envelope.attempt,
            failure.error_type,
            failure.error,
        )
        return await self._finish(message, envelope, Outcome(failure.event(envelope, seq.next())))

    async def _finish(self, message: AbstractIncomingMessage, envelope: TaskEnvelope, outcome: Outcome) -> Settlement:
        """Publish the outcome, record the attempt as done, ack."""
        try:
            published = await self._d.events.publish_outcome(outcome.event, message.reply_to, outcome.body)
        finally:
            if outcome.advisories is not None:
                await outcome.advisories.settle()
        if not published:
            return await self._settle(message, Happened.PUBLISH_FAILED)
        self._d.observer.finished(envelope, outcome.event.status.value)
        await self._d.ledger.mark_done(envelope.task_id, envelope.attempt)
        self._remember_finished(envelope)
        settlement = await self._settle(message, Happened.OUTCOME_PUBLISHED)
        log.debug("task %s settled: %s", outcome.event.task_id, outcome.event.status.value)
        return settlement

    async def park(self, message: AbstractIncomingMessage, rejection: Rejection) -> None:
        """Dead-letter a message this worker cannot run; a valid envelope's job is failed too."""
        log.warning("dead-lettering message %s: %s: %s", message.message_id, rejection.reason.value, rejection.error)
        try:
            await self._d.dead_letters.park(message, rejection)
        except BrokerError as exc:
            # The queue's own dead-letter route still parks it (without our reason headers).
            log.error("could not park message %s with its reason (%s); rejecting it", message.message_id, exc)
            await self._settle(message, Happened.PARK_FAILED)
            return
        self.stats.dead_lettered += 1
        envelope = rejection.envelope
        self._d.observer.parked(envelope)
        if envelope is None:
            await self._settle(message, Happened.DEAD_LETTERED)  # nothing decodable: no job to tell
            return
        seq = EventSequence.for_delivery(envelope, redelivered=bool(message.redelivered))
        failure = Failure.permanent(rejection.error, rejection.error_type)
        await self._finish(message, envelope, Outcome(failure.event(envelope, seq.next())))

    async def _settle(self, message: AbstractIncomingMessage, happened: Happened) -> Settlement:
        settlement = decide(happened)
        await settle(message, settlement)
        return settlement

    def _remember_finished(self, envelope: TaskEnvelope) -> None:
        finished = self._finished.get(envelope.task_id)
        self._finished.put(envelope.task_id, max(envelope.attempt, finished or 0))

    async def hand_back(self, message: AbstractIncomingMessage) -> Settlement:
        """A delivery that never started when the process stops gracefully: back to the queue
        without using up an attempt.

        A nack with requeue would flag it redelivered, and the next worker would take it for a
        crashed run (the next attempt, or WorkerLost when none is left). So it is published again
        as it came (confirmed), then acked. One that came flagged already stands for an interrupted
        run of its attempt and is requeued as such; so is one whose publish fails (kept, at the
        cost of an attempt). Should the ack fail after the publish, both copies come back: the
        flagged one as the next attempt (at-least-once).
        """
        if message.redelivered:
            return await self._settle(message, Happened.INTERRUPTED)
        try:
            await self._d.rescheduler.as_received(message, self._d.worker.service)
        except BrokerError as exc:
            log.warning("unstarted message %s not handed back (%s); requeueing it", message.message_id, exc)
            return await self._settle(message, Happened.PUBLISH_FAILED)
        self.stats.handed_back += 1
        return await self._settle(message, Happened.HANDED_BACK)

    async def quarantine(self, message: AbstractIncomingMessage, exc: Exception) -> None:
        """The pipeline itself crashed on this message: park it instead of requeueing it into a hot loop."""
        try:
            envelope: TaskEnvelope | None = self._d.codecs.decode(TaskEnvelope, message.body, message.content_type)
        except DecodeError:
            envelope = None
        error = f"{type(exc).__name__}: {exc}"
        tenant = envelope.tenant_id if envelope is not None else None
        await self.park(message, Rejection(DeadLetterReason.PIPELINE_ERROR, error, tenant, envelope))
