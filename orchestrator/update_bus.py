"""UpdateBus: JobUpdates shared by every orchestrator replica over Redis pub/sub.

The replica that applies an event publishes the update once; every replica (itself
included) receives it on its single subscription and hands it to local listeners (the
WebSocket hub) and to local waiters (`POST /jobs` with `wait`). Pub/sub keeps nothing:
updates published while a replica is disconnected never reach it; the registry stays the
source of truth (clients get a fresh snapshot when they subscribe again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final

import msgpack
import redis.asyncio as aioredis
import redis.exceptions as redis_exc

from orchestrator import keys
from orchestrator.models import JobUpdate
from orchestrator.redis_batch import PipelineBatcher
from orchestrator.registry import redis_errors

log = logging.getLogger(__name__)

Listener = Callable[[JobUpdate], None]

_RETRY_MIN_SECONDS: Final[float] = 0.1
_RETRY_MAX_SECONDS: Final[float] = 5.0
_START_WAIT_SECONDS: Final[float] = 5.0


def encode_update(update: JobUpdate) -> bytes:
    body = {
        "tenant_id": update.tenant_id,
        "job_id": update.job_id,
        "seq": update.seq,
        "status": update.status,
        "terminal": update.terminal,
        "event": update.event,
    }
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def decode_update(data: bytes) -> JobUpdate:
    body = msgpack.unpackb(data, raw=False)
    return JobUpdate(
        tenant_id=str(body["tenant_id"]),
        job_id=str(body["job_id"]),
        seq=int(body["seq"]),
        status=str(body["status"]),
        terminal=bool(body["terminal"]),
        event=dict(body["event"]),
    )


class JobWatch:
    """Waits for one job's terminal update; enter it before the job is created so none is missed."""

    def __init__(self, bus: UpdateBus, tenant_id: str, job_id: str) -> None:
        self._bus = bus
        self.key = (tenant_id, job_id)
        self._done: asyncio.Future[JobUpdate] = asyncio.get_running_loop().create_future()

    def deliver(self, update: JobUpdate) -> None:
        if update.terminal and not self._done.done():
            self._done.set_result(update)

    async def terminal(self, timeout: float) -> JobUpdate | None:
        """The terminal update, or None when none came within `timeout` seconds."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._done), timeout)
        except TimeoutError:
            return None

    def __enter__(self) -> JobWatch:
        self._bus._add_watch(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bus._remove_watch(self)
        self._done.cancel()

    async def __aenter__(self) -> JobWatch:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class UpdateBus:
    def __init__(self, redis: aioredis.Redis, channel: str = keys.TASK_UPDATES_CHANNEL) -> None:
        self._redis = redis
        self._channel = channel
        self._listeners: list[Listener] = []
        self._watches: dict[tuple[str, str], set[JobWatch]] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._batch = PipelineBatcher(redis)

    async def publish(self, update: JobUpdate) -> None:
        """Publish once Redis took it; updates published meanwhile share one pipeline, in call order."""
        body = encode_update(update)
        with redis_errors("publishing a job update"):
            await self._batch.run(lambda pipe: pipe.publish(self._channel, body))

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        """Call `fn` with every update this replica receives; returns the remover."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn)

    def watch(self, tenant_id: str, job_id: str) -> JobWatch:
        return JobWatch(self, tenant_id, job_id)

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    async def start(self) -> None:
        """Subscribe; waits briefly for the first subscription, then keeps retrying in the background."""
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="baton-update-bus")
        try:
            await asyncio.wait_for(self._subscribed.wait(), _START_WAIT_SECONDS)
        except TimeoutError:
            log.warning("update bus not subscribed yet; retrying in the background")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._subscribed.clear()

    def _add_watch(self, watch: JobWatch) -> None:
        self._watches.setdefault(watch.key, set()).add(watch)

    def _remove_watch(self, watch: JobWatch) -> None:
        watches = self._watches.get(watch.key)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._watches[watch.key]

    async def _run(self) -> None:
        delay = _RETRY_MIN_SECONDS
        first = True
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    self._subscribed.set()
                    if not first:
                        log.info("update bus resubscribed; updates published meanwhile were missed")
                    first, delay = False, _RETRY_MIN_SECONDS
                    await self._read(pubsub)
            except (redis_exc.ConnectionError, redis_exc.TimeoutError, OSError) as exc:
                log.warning("update bus lost Redis (%s); resubscribing in %.1fs", exc, delay)
            except Exception:
                # The subscription must outlive any surprise, or this replica goes silent.
                log.exception("update bus subscription failed; resubscribing in %.1fs", delay)
            self._subscribed.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_SECONDS)

    async def _read(self, pubsub: Any) -> None:
        while True:
            # A bounded wait (not a blocking read) lets the client's health check find a dead link.
            message = await pubsub.get_message(timeout=1.0)
            if message is None or message.get("type") != "message":
                continue
            try:
                update = decode_update(message["data"])
            except (ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
                log.warning("ignoring an undecodable job update: %s", exc)
                continue
            self._deliver(update)

    def _deliver(self, update: JobUpdate) -> None:
        for watch in list(self._watches.get((update.tenant_id, update.job_id), ())):
            watch.deliver(update)
        for listener in list(self._listeners):
            try:
                listener(update)
            except Exception:  # one broken listener must not starve the others
                log.exception("job update listener failed")
