"""FakeTaskPublisher: TaskPublisher's rules with in-memory queues in place of RabbitMQ.

Encodes with the same CodecSet and refuses what the real one refuses (UnpublishableJob past the
message cap or for a value the wire cannot carry; BrokerUnavailable, nothing sent, while
`connected` is False). A published task lands in its tenant's lane of its service, declared on first
use, where `queue_stats` counts it and `taken` takes it off, as a worker would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.broker.queue_inspector import QueueStats
from orchestrator.errors import BrokerUnavailable, UnpublishableJob
from protocol.codec import CodecSet
from protocol.control import CancelCommand
from protocol.envelope import TaskEnvelope
from protocol.topology import lane_queue


@dataclass(frozen=True)
class Published:
    envelope: TaskEnvelope
    body: bytes
    reply_to: str | None


class FakeTaskPublisher:
    def __init__(self, codecs: CodecSet | None = None) -> None:
        self._codecs = codecs or CodecSet()
        self.connected = True  # set False to act as a publisher whose broker is down
        self.queues: dict[str, list[Published]] = {}
        self.lanes: dict[str, set[str]] = {}  # service -> tenants with a lane
        self.cancels: list[CancelCommand] = []

    def encode_task(self, envelope: TaskEnvelope) -> bytes:
        try:
            body = self._codecs.encode(envelope, self._codecs.default)
        except (OverflowError, ValueError, TypeError) as exc:
            raise UnpublishableJob(f"the payload cannot be sent to a worker: {exc}", too_large=False) from exc
        if len(body) > self._codecs.max_bytes:
            raise UnpublishableJob(
                f"the task message would be {len(body)} bytes, over the {self._codecs.max_bytes}-byte cap",
                too_large=True,
            )
        return body

    async def publish_task(
        self, envelope: TaskEnvelope, *, reply_to: str | None = None, body: bytes | None = None
    ) -> None:
        if body is None:
            body = self.encode_task(envelope)
        self._require_link()
        self.lanes.setdefault(envelope.service, set()).add(envelope.tenant_id)
        lane = lane_queue(envelope.service, envelope.tenant_id)
        self.queues.setdefault(lane, []).append(Published(envelope, body, reply_to))

    async def publish_cancel(self, command: CancelCommand) -> None:
        self._require_link()
        self.cancels.append(command)

    async def queue_stats(self, queues: Sequence[str]) -> dict[str, QueueStats | None]:
        self._require_link()
        return {
            name: QueueStats(messages=len(self.queues[name]), consumers=0) if name in self.queues else None
            for name in queues
        }

    async def lane_queues(self, services: Sequence[str]) -> dict[str, list[str]]:
        return {service: [lane_queue(service, t) for t in sorted(self.lanes.get(service, ()))] for service in services}

    def waiting(self, service: str) -> int:
        """Tasks waiting in the service's lanes."""
        return sum(len(self.queues.get(lane_queue(service, t), [])) for t in self.lanes.get(service, ()))

    def taken(self, service: str) -> list[TaskEnvelope]:
        """Every task waiting in the service's lanes, taken off them."""
        taken: list[TaskEnvelope] = []
        for tenant in sorted(self.lanes.get(service, ())):
            waiting = self.queues.get(lane_queue(service, tenant), [])
            taken, waiting[:] = taken + [p.envelope for p in waiting], []
        return taken

    def _require_link(self) -> None:
        if not self.connected:
            raise BrokerUnavailable("no connection to RabbitMQ")
