"""Consuming a service queue with a concurrency limit, and draining it on shutdown.

aiormq runs each delivery callback in a task it cancels when the channel closes; the
callback here only spawns our own task, so a broker blip never cancels a running handler
(its ack then fails, is logged, and the broker redelivers: at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, ConsumerTag

from plumbing.amqp import AMQP_ERRORS
from protocol.topology import service_queues
from workers.errors import BrokerError
from workers.runtime.executions import Executions, StopReason
from workers.runtime.runner import TaskRunner
from workers.runtime.settle import Happened, decide, settle

log = logging.getLogger(__name__)

# After the grace period handlers are cancelled; this is how long they get to unwind.
CANCEL_UNWIND_SECONDS = 5.0


class TaskConsumer:
    def __init__(self, service: str, runner: TaskRunner, executions: Executions, concurrency: int) -> None:
        self._service = service
        self._runner = runner
        self._executions = executions
        self._concurrency = concurrency
        self._active = 0
        self._stopping = False
        self._slots = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._queue: AbstractQueue | None = None
        self._consumer_tag: ConsumerTag | None = None

    @property
    def queue_name(self) -> str:
        return service_queues(self._service)[0].name

    async def start(self, channel: AbstractChannel) -> None:
        spec = service_queues(self._service)[0]
        try:
            # Declared with the full arguments (not passively), so a robust reconnect re-creates it as well.
            self._queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
            self._consumer_tag = await self._queue.consume(self._on_message)
        except AMQP_ERRORS as exc:
            raise BrokerError(f"cannot consume {spec.name}: {exc}") from exc

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # The broker's consumer timeout runs from delivery, so the time limit budget does too.
        task = asyncio.create_task(self._handle(message, time.monotonic()), name=f"task:{message.message_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, message: AbstractIncomingMessage, received_at: float) -> None:
        if not await self._acquire():
            # Delivered but never started: another process takes it, as the same attempt.
            await self._runner.hand_back(message)
            return
        try:
            await self._runner.process(message, received_at)
        except Exception as exc:
            # A bug in the pipeline (not the handler, whose errors are outcomes): log it and park the
            # message rather than requeue it into a hot loop; the worker keeps serving.
            log.exception("processing message %s failed", message.message_id)
            if not message.processed:
                await self._quarantine(message, exc)
        finally:
            await self._release()

    async def _quarantine(self, message: AbstractIncomingMessage, exc: Exception) -> None:
        try:
            await self._runner.quarantine(message, exc)
        except Exception:
            log.exception("parking message %s failed; rejecting it", message.message_id)
            if not message.processed:
                await settle(message, decide(Happened.PARK_FAILED))

    async def _acquire(self) -> bool:
        async with self._slots:
            await self._slots.wait_for(lambda: self._stopping or self._active < self._concurrency)
            if self._stopping:
                return False
            self._active += 1
            return True

    async def _release(self) -> None:
        async with self._slots:
            self._active -= 1
            self._slots.notify()

    async def stop(self, grace_seconds: float) -> None:
        """Stop taking messages, let running handlers finish within the grace period, then cancel
        the rest (their messages are requeued: an interrupted attempt). Deliveries still waiting
        for a slot are handed back unchanged, as they never started."""
        await self._cancel_consumer()
        async with self._slots:
            self._stopping = True
            self._slots.notify_all()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        if not pending:
            return
        log.warning("grace period of %.1f s over: requeueing %d running task(s)", grace_seconds, len(pending))
        self._executions.stop_all(StopReason.SHUTDOWN, "worker shutting down")
        _, stuck = await asyncio.wait(pending, timeout=CANCEL_UNWIND_SECONDS)
        if stuck:
            # Handlers that swallow cancellation: closing the channel returns their messages.
            log.error("%d task(s) ignored cancellation; their messages return when the channel closes", len(stuck))
            for task in stuck:
                task.cancel()

    async def _cancel_consumer(self) -> None:
        if self._queue is None or self._consumer_tag is None:
            return
        try:
            await self._queue.cancel(self._consumer_tag)
        except AMQP_ERRORS as exc:
            log.warning("cancelling the consumer of %s failed: %s", self.queue_name, exc)
        self._consumer_tag = None
