"""The gate a delivery passes just before its attempt runs when its service has flow limits.

A task over a limit waits here, its message unacked, without blocking the event loop: for a rate
slot it sleeps the time the store reserved; for a lease it sleeps until a task of this process
releases one or, for other processes' releases, up to POLL_SECONDS. While it waits it still ends as
its job is cancelled (finished as cancelled, never run), as the process stops (handed back to the
queue unchanged, as an unstarted delivery) and as its deadline passes (timed out). It never waits
longer than `max_wait`, which keeps the broker's consumer timeout (counted from delivery) away:
past it the delivery is handed back too.

A service without limits has no gate at all: its deliveries make no Redis call for it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from protocol.envelope import TaskEnvelope, utc_now
from workers.config import WorkerSettings
from workers.runtime.cancellations import CancelledJobs
from workers.runtime.flow_store import FlowLimits, FlowLimitStore, Verdict
from workers.sdk import Worker

log = logging.getLogger(__name__)

POLL_SECONDS: Final[float] = 0.2


def resolve_limits(worker: Worker, settings: WorkerSettings) -> FlowLimits:
    """The Worker's limits, each overridden by its setting when set."""
    return FlowLimits(
        rate=settings.rate_limit or worker.rate_limit_for(settings),
        max_concurrency=settings.max_concurrency or worker.max_concurrency,
    )


@dataclass(frozen=True)
class Admitted:
    lease_id: str | None  # None: no concurrency limit, or Redis did not answer


class Refusal(StrEnum):
    CANCELLED = "cancelled"  # the job was cancelled while the task waited: finish it as cancelled
    DEADLINE = "deadline"  # its deadline passed while it waited: time it out
    HAND_BACK = "hand_back"  # the process is stopping, or the wait would be too long: give it back unstarted


@dataclass(frozen=True)
class Refused:
    refusal: Refusal
    detail: str


class _Waiter:
    def __init__(self, envelope: TaskEnvelope) -> None:
        self.envelope = envelope
        self.wants_lease = False  # woken by a local release only while it asks for a lease
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def sleep(self, seconds: float) -> None:
        """Up to `seconds`, or until woken."""
        if seconds > 0:
            try:
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
            except TimeoutError:
                pass
        self._wake.clear()


class FlowGate:
    def __init__(self, store: FlowLimitStore, cancelled: CancelledJobs, *, poll_seconds: float = POLL_SECONDS) -> None:
        self._store = store
        self._cancelled = cancelled
        self._poll = poll_seconds
        self._waiters: dict[_Waiter, None] = {}  # ordered: a release wakes the longest waiting first
        self._stopping = False
        cancelled.on_cancel(self._wake_job)

    @property
    def limits(self) -> FlowLimits:
        return self._store.limits

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def admit(self, envelope: TaskEnvelope, max_wait: float) -> Admitted | Refused:
        """Wait until the task may start; Admitted holds its lease, to `release` when the attempt ends."""
        waiter = _Waiter(envelope)
        self._waiters[waiter] = None
        asked_at = time.monotonic()
        try:
            while True:
                waited = time.monotonic() - asked_at
                refused = self._interruption(envelope)
                if refused is None and waited >= max_wait:
                    refused = Refused(Refusal.HAND_BACK, f"waited {waited:.1f} s for a flow limit, the most it may")
                if refused is not None:
                    if waiter.wants_lease:
                        await self._store.record_abandoned_wait(waited)
                    return refused
                lease_id = uuid.uuid4().hex if self.limits.max_concurrency else None
                lease_wait = waited if waiter.wants_lease else 0.0  # counted as a concurrency wait when granted
                answer = await self._store.acquire(lease_id, max_wait=max_wait - waited, waited=lease_wait)
                if answer is None:
                    return Admitted(None)
                if answer.verdict is Verdict.RATE_TOO_FAR:
                    return Refused(Refusal.HAND_BACK, f"its rate slot is {answer.seconds:.1f} s away")
                if answer.verdict is Verdict.CONCURRENCY_FULL:
                    waiter.wants_lease = True
                    # Jittered, so the waiters of every process do not ask in step.
                    poll = min(answer.seconds, self._poll) * random.uniform(0.5, 1.5)
                    await waiter.sleep(self._capped(envelope, min(poll, max_wait - waited)))
                    continue
                waiter.wants_lease = False
                admitted = Admitted(lease_id)
                try:
                    refused = await self._sleep_for_slot(waiter, answer.seconds)
                except BaseException:
                    # Cancelled while it slept (a handler stuck past the stop's grace period, say): no longer
                    # renewed, its lease expires on its own.
                    self._store.abandon(lease_id)
                    raise
                if refused is not None:
                    await self.release(admitted)
                    return refused
                return admitted
        finally:
            del self._waiters[waiter]

    async def release(self, admitted: Admitted) -> None:
        """The attempt ended, whatever its outcome: free its lease and wake a local task waiting for one."""
        if admitted.lease_id is None:
            return
        await self._store.release(admitted.lease_id)
        for waiter in self._waiters:
            if waiter.wants_lease:
                waiter.wake()
                break

    def stop_waiting(self) -> None:
        """The process is stopping: every waiting task, and each one arriving from now on, is handed back."""
        self._stopping = True
        for waiter in self._waiters:
            waiter.wake()

    async def _sleep_for_slot(self, waiter: _Waiter, seconds: float) -> Refused | None:
        """Sleep until the reserved rate slot, unless a cancel, the stop or the deadline comes first."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            await waiter.sleep(self._capped(waiter.envelope, left))
            refused = self._interruption(waiter.envelope)
            if refused is not None:
                return refused
        return None

    def _interruption(self, envelope: TaskEnvelope) -> Refused | None:
        if self._stopping:
            return Refused(Refusal.HAND_BACK, "the worker is stopping")
        reason = self._cancelled.reason_for(envelope)
        if reason is not None:
            return Refused(Refusal.CANCELLED, reason)
        if envelope.is_expired():
            return Refused(Refusal.DEADLINE, f"deadline {envelope.deadline} passed while waiting for a flow limit")
        return None

    @staticmethod
    def _capped(envelope: TaskEnvelope, seconds: float) -> float:
        """No sleep past the task's deadline."""
        if envelope.deadline is None:
            return seconds
        return max(0.0, min(seconds, (envelope.deadline - utc_now()).total_seconds()))

    def _wake_job(self, tenant_id: str, global_task_id: str) -> None:
        for waiter in self._waiters:
            if waiter.envelope.tenant_id == tenant_id and waiter.envelope.global_task_id == global_task_id:
                waiter.wake()
