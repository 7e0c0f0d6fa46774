"""Listing and replaying parked tasks (DESIGN "HTTP API": /dead-letters/{service}).

A tenant sees and replays only its own parked tasks: an envelope's, or an undecodable message
the registry attributes to it (dead_letter_owners); the admin (tenant None) sees all of them.
A replay is a NEW attempt of the same task of the same job: the job is reopened in the registry
first (so the new attempt's events are applied), then the envelope is published with attempt + 1
and confirmed, and only then is the parked copy acked away.
Only a task that failed or timed out is replayed: one whose job is queued, running or retrying
may be running right now (an earlier attempt parked, a later one live), and would run twice.
A parked message that cannot be replayed (undecodable, or an envelope that cannot be sent again)
is skipped with its reason in the report and stays parked; nothing in a body fails the request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from orchestrator.broker.dead_letter_queues import DeadLetter
from orchestrator.errors import BrokerError, RegistryUnavailable, UnpublishableJob
from orchestrator.jobs.ports import DeadLetterBrowse, DeadLetterSource, TaskOwnership, TaskPublisher, UpdateBus
from orchestrator.jobs.recovery import JobRecovery, ReopenStatus

log = logging.getLogger(__name__)

REPLAY_REASON: Final[str] = "replayed from the dead-letter queue"


@dataclass(frozen=True)
class DeadLetterPage:
    service: str
    queue_exists: bool
    entries: list[dict[str, Any]]
    matched: int  # visible parked tasks seen in this scan (offset + entries + the rest)
    scanned: int
    truncated: bool  # the scan stopped at its bound: there may be more


@dataclass
class ReplayReport:
    replayed: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False

    def fail(self, task_id: str | None, error: str, detail: str) -> None:
        self.errors.append({"task_id": task_id, "error": error, "detail": detail})


class DeadLetterService:
    def __init__(
        self,
        queues: DeadLetterSource,
        recovery: JobRecovery,
        publisher: TaskPublisher,
        bus: UpdateBus,
        owners: TaskOwnership,
    ) -> None:
        self._queues = queues
        self._recovery = recovery
        self._publisher = publisher
        self._bus = bus
        self._owners = owners

    async def _visible(self, letter: DeadLetter, tenant_id: str | None, proven: dict[tuple[str, str], bool]) -> bool:
        """The admin (None) sees everything; a tenant only what is provably its own."""
        if tenant_id is None:
            return True
        if letter.tenant_id != tenant_id:
            return False
        if letter.decodable:
            return True
        if letter.job_id is None or letter.task_id is None:
            return False
        key = (letter.job_id, letter.task_id)
        if key not in proven:
            proven[key] = await self._owners.owns(tenant_id, letter.job_id, letter.task_id)
        return proven[key]

    async def list(self, service: str, tenant_id: str | None, *, offset: int, limit: int) -> DeadLetterPage:
        entries: list[dict[str, Any]] = []
        matched = 0
        proven: dict[tuple[str, str], bool] = {}
        async with self._queues.browse(service) as browse:
            if browse is None:
                return DeadLetterPage(service, False, [], 0, 0, False)
            async for letter in browse.letters():
                if not await self._visible(letter, tenant_id, proven):
                    continue
                if offset <= matched < offset + limit:
                    entries.append(letter.public())
                matched += 1
            return DeadLetterPage(service, True, entries, matched, browse.scanned, browse.truncated)

    async def replay(self, service: str, tenant_id: str | None, task_ids: Sequence[str] | None) -> ReplayReport:
        """Replay the named parked tasks, or all visible ones when `task_ids` is None."""
        wanted = set(task_ids) if task_ids is not None else None
        report = ReplayReport()
        seen: set[str] = set()
        proven: dict[tuple[str, str], bool] = {}
        async with self._queues.browse(service) as browse:
            if browse is not None:
                async for letter in browse.letters():
                    if not await self._visible(letter, tenant_id, proven):
                        continue
                    if wanted is not None and letter.task_id not in wanted:
                        continue
                    if letter.task_id is not None and letter.task_id in seen:
                        report.fail(letter.task_id, "duplicate", "parked more than once; replayed once, kept parked")
                        continue
                    if letter.task_id is not None:
                        seen.add(letter.task_id)
                    await self._replay_one(browse, letter, report)
                report.truncated = browse.truncated
        for task_id in sorted((wanted or set()) - seen):
            report.fail(task_id, "not_found", f"no parked task {task_id} of yours in {service}'s dead-letter queue")
        return report

    async def _replay_one(self, browse: DeadLetterBrowse, letter: DeadLetter, report: ReplayReport) -> None:
        envelope = letter.envelope
        if envelope is None:
            report.fail(letter.task_id, "undecodable", letter.decode_error or "the body is not a task envelope")
            return
        following = envelope.next_attempt()  # at least: reopen numbers it above every attempt the registry saw
        try:
            # Checked before the job is reopened: a replay that cannot be published changes nothing.
            # What decoded from a parked body may still hold what the encoder refuses (an integer past 64 bits).
            self._publisher.encode_task(following)
        except UnpublishableJob as exc:
            report.fail(letter.task_id, "unsendable", f"the envelope cannot be sent again: {exc}")
            return
        reopened = await self._recovery.reopen(envelope, reason=REPLAY_REASON, min_attempt=following.attempt)
        if reopened.status is ReopenStatus.NOT_FOUND:
            report.fail(letter.task_id, "job_not_found", f"job {envelope.global_task_id} is gone (expired?)")
            return
        if reopened.status is not ReopenStatus.REOPENED or reopened.envelope is None:
            if reopened.task_status:
                report.fail(
                    letter.task_id,
                    f"task_{reopened.task_status}",
                    f"task {envelope.task_id} of job {envelope.global_task_id} is {reopened.task_status}: "
                    "only a failed or timed-out task is run again",
                )
            else:
                report.fail(
                    letter.task_id,
                    f"job_{reopened.job_status}",
                    f"job {envelope.global_task_id} is {reopened.job_status}: its task is not run again "
                    "(a root task needs a failed or timed-out job, a child task an open job)",
                )
            return
        if reopened.update is not None:
            try:
                await self._bus.publish(reopened.update)
            except RegistryUnavailable as exc:
                log.warning("job %s reopened but not announced: %s", envelope.global_task_id, exc)
        try:
            await self._publisher.publish_task(reopened.envelope, reply_to=letter.reply_to)
        except BrokerError as exc:
            # The job stays queued with this attempt's envelope stored, so the sweeper publishes it
            # again if its queue turns out empty; the parked copy stays (replays of it are refused
            # while the job is queued, so the attempt cannot run twice).
            if exc.maybe_sent:
                report.fail(letter.task_id, "publish_unconfirmed", f"{exc}; the new attempt may still run")
            else:
                report.fail(letter.task_id, "publish_failed", str(exc))
            return
        await browse.ack(letter)
        report.replayed.append(
            {"task_id": envelope.task_id, "job_id": envelope.global_task_id, "attempt": reopened.envelope.attempt}
        )
