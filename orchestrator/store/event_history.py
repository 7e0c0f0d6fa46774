"""A job's event history read back: the events after the seq a client last saw, for resuming clients.

The scripts that give a job a new seq append its client event to `keys.job_events` in the same step
(`scripts` module docstring), so the list has every seq once, oldest first, up to its configured
length (`event_tails`); it expires with the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import redis.asyncio as aioredis

from orchestrator.store import keys
from orchestrator.store import scripts as registry_scripts
from orchestrator.store.codec import text
from orchestrator.store.registry import redis_errors
from plumbing.redis_batch import PipelineBatcher


class HistoryRead(StrEnum):
    EVENTS = "events"
    NOT_FOUND = "not_found"  # no such job (or not the tenant's)
    BEYOND = "beyond"  # the seq asked about is past the job's


@dataclass(frozen=True)
class HistoryPage:
    outcome: HistoryRead
    seq: int = 0  # the job's current seq
    complete: bool = False  # the events start right after the seq asked about
    entries: tuple[str, ...] = ()  # client events (JSON text), oldest first


class EventHistory:
    def __init__(self, redis: aioredis.Redis, batcher: PipelineBatcher | None = None) -> None:
        self._read = redis.register_script(registry_scripts.READ_HISTORY)
        self._batch = batcher or PipelineBatcher(redis)

    async def after(self, tenant_id: str, job_id: str, since: int, limit: int) -> HistoryPage:
        """Up to `limit` kept events of the job with seq > `since`, oldest first."""
        with redis_errors("reading a job's events"):
            reply = await self._batch.script(
                self._read, [keys.job(tenant_id, job_id), keys.job_events(tenant_id, job_id)], [since, max(limit, 0)]
            )
        outcome = HistoryRead(text(reply[0]))
        if outcome is HistoryRead.NOT_FOUND:
            return HistoryPage(outcome)
        if outcome is HistoryRead.BEYOND:
            return HistoryPage(outcome, seq=int(reply[1]))
        return HistoryPage(outcome, int(reply[1]), bool(int(reply[2])), tuple(text(entry) for entry in reply[3]))
