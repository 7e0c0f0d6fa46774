"""WorkflowAnnouncement: the workflows a Worker declares, published so the orchestrator offers them.

Announced once the heartbeat has made the worker's job types routable (the orchestrator validates the
steps' job types against what it knows), and again every ANNOUNCE_EVERY_BEATS heartbeats: an
orchestrator that was down, or one whose Redis lost the declarations, learns them again, and a
declaration refused because another service's job type was not yet known gets another chance.
"""

from __future__ import annotations

import logging
from typing import Final

from protocol.control import WorkflowAnnouncement
from workers.errors import BrokerError
from workers.runtime.event_publisher import EventPublisher
from workers.sdk import Worker

log = logging.getLogger(__name__)

ANNOUNCE_EVERY_BEATS: Final[int] = 12


class WorkflowAnnouncer:
    def __init__(self, *, worker_id: str, worker: Worker, events: EventPublisher) -> None:
        self._worker_id = worker_id
        self._worker = worker
        self._events = events

    def build(self) -> WorkflowAnnouncement | None:
        """The announcement, or None when the worker declares no workflow."""
        if not self._worker.workflows:
            return None
        return WorkflowAnnouncement(
            worker_id=self._worker_id,
            service=self._worker.service,
            workflows=[declared.announced() for declared in self._worker.workflows.values()],
        )

    async def announce(self) -> None:
        announcement = self.build()
        if announcement is None:
            return
        try:
            await self._events.publish_workflows(announcement)
        except BrokerError as exc:
            log.warning("workflow announcement not published (the next one follows): %s", exc)
