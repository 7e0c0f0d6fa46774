"""The broadcasts of baton.control: cancellations, remembered and applied to the running tasks, and
`lane_opened`, handed to the consumer of the lane's service."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from plumbing.amqp import AMQP_ERRORS
from protocol.codec import CodecSet
from protocol.control import CancelCommand, LaneOpened
from protocol.envelope import TaskEnvelope
from protocol.errors import DecodeError
from protocol.topology import CONTROL_EXCHANGE
from workers.errors import BrokerError
from workers.runtime.bounded_map import BoundedMap
from workers.runtime.executions import Executions

log = logging.getLogger(__name__)

DEFAULT_REMEMBERED_CANCELS: Final[int] = 10_000


class CancelledJobs:
    """Jobs whose cancel broadcast this process received recently (bounded), with when it arrived.

    A remembered cancel stands in for the Redis ledger, it does not outrank it. The orchestrator
    sets a job's cancelled key before it broadcasts, and deletes it when it reopens the job (a
    dead-letter replay of a job the sweeper had failed and cancelled). So when the ledger, read
    after a broadcast arrived, has no cancelled key, the job was reopened since: `forget_stale`
    drops the cancel and the replayed attempt runs. The memory alone decides only when Redis
    cannot answer, and for a broadcast that arrives after the ledger was read (then it is news).

    Not scoped by `issued_at` against the envelope's `created_at`: a replayed attempt keeps its
    task's `created_at` (the orchestrator copies the envelope with the attempt raised), so it would
    still look older than the cancel; and the two stamps come from different machines' clocks.
    """

    def __init__(self, capacity: int = DEFAULT_REMEMBERED_CANCELS) -> None:
        self._jobs: BoundedMap[tuple[str, str], tuple[str, float]] = BoundedMap(capacity)
        self._listeners: list[Callable[[str, str], None]] = []

    def on_cancel(self, listener: Callable[[str, str], None]) -> None:
        """Call `listener(tenant_id, global_task_id)` on every cancel from now on: tasks waiting before
        they run (for a flow limit) are not executions, and learn of it this way."""
        self._listeners.append(listener)

    def add(self, command: CancelCommand) -> None:
        self._jobs.put((command.tenant_id, command.global_task_id), (command.reason, time.monotonic()))
        for listener in self._listeners:
            listener(command.tenant_id, command.global_task_id)

    def reason_for(self, envelope: TaskEnvelope) -> str | None:
        entry = self._jobs.get((envelope.tenant_id, envelope.global_task_id))
        return entry[0] if entry is not None else None

    def forget_stale(self, envelope: TaskEnvelope, ledger_read_at: float) -> None:
        """The ledger, read from `ledger_read_at` (monotonic) on, says the job is not cancelled:
        drop a cancel of it that arrived before that read, as the job was reopened since."""
        key = (envelope.tenant_id, envelope.global_task_id)
        entry = self._jobs.get(key)
        if entry is not None and entry[1] < ledger_read_at:
            self._jobs.pop(key)


class ControlListener:
    """An exclusive, auto-delete queue of this process bound to the baton.control fanout."""

    def __init__(
        self,
        queue_name: str,
        codecs: CodecSet,
        cancelled: CancelledJobs,
        executions: Executions,
        on_lane_opened: Callable[[LaneOpened], Awaitable[None]] | None = None,
    ) -> None:
        self.queue_name = queue_name
        self._codecs = codecs
        self._cancelled = cancelled
        self._executions = executions
        self._on_lane_opened = on_lane_opened
        self._queue: AbstractQueue | None = None

    async def start(self, channel: AbstractChannel) -> None:
        try:
            self._queue = await channel.declare_queue(self.queue_name, exclusive=True, auto_delete=True)
            await self._queue.bind(CONTROL_EXCHANGE, routing_key="")
            await self._queue.consume(self._on_message, no_ack=True)
        except AMQP_ERRORS as exc:
            raise BrokerError(f"cannot listen on {CONTROL_EXCHANGE}: {exc}") from exc

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # A broadcast says its kind in the AMQP type; one that does not is a cancel, as before kinds.
        try:
            if message.type == "lane_opened":
                lane = self._codecs.decode(LaneOpened, message.body, message.content_type)
                if self._on_lane_opened is not None:
                    await self._on_lane_opened(lane)
                return
            command = self._codecs.decode(CancelCommand, message.body, message.content_type)
        except DecodeError as exc:
            # Other broadcast kinds may come later; an old worker ignores what it does not know.
            log.debug("ignoring control message: %s", exc)
            return
        self.apply(command)

    def apply(self, command: CancelCommand) -> None:
        # Remember first: a task registered after this line sees the cancel before it starts.
        self._cancelled.add(command)
        stopped = self._executions.stop_job(command.tenant_id, command.global_task_id, command.reason)
        if stopped:
            log.debug("cancelled %d running task(s) of job %s", stopped, command.global_task_id)
