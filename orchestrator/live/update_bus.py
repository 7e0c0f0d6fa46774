"""UpdateBus: JobUpdates shared by every orchestrator replica over Redis pub/sub.

The replica that applies an event hands the update to its own local listeners (the WebSocket
hub) and waiters (`POST /jobs` with `wait`) at once, and publishes it once; every other replica
receives it on its single subscription and does the same. A replica skips its own updates when
they come back (each carries its replica's `origin`): its clients are not held back by a Redis
round trip, and the bus's reader does not decode what it already delivered. Pub/sub keeps nothing:
updates published while a replica is disconnected never reach it; the registry stays the
source of truth (clients get a fresh snapshot when they subscribe again).

Updates published while a PUBLISH is in flight go out together as one message (a msgpack list):
under load that is one pub/sub message per Redis round trip instead of one per update, for
Redis and for every replica's reader. The updates of one delivery window (`announce_many`) always
share a message. A reader also takes a single update (a map).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Final, Literal

import msgpack
import redis.asyncio as aioredis
import redis.exceptions as redis_exc
from redis.asyncio.client import Pipeline

from orchestrator.models import JobUpdate, job_update
from orchestrator.store import keys
from orchestrator.store.registry import redis_errors
from plumbing.cancellation import cancel_and_wait
from plumbing.redis_batch import PipelineBatcher, RoundTripBatcher

log = logging.getLogger(__name__)

BusState = Literal["subscribed", "resubscribing"]

Listener = Callable[[JobUpdate], None]

_RETRY_MIN_SECONDS: Final[float] = 0.1
_RETRY_MAX_SECONDS: Final[float] = 5.0
_START_WAIT_SECONDS: Final[float] = 5.0


def update_body(update: JobUpdate) -> dict[str, Any]:
    return {
        "tenant_id": update.tenant_id,
        "job_id": update.job_id,
        "seq": update.seq,
        "status": update.status,
        "terminal": update.terminal,
        "event": update.event,
    }


def decode_updates(data: bytes, skip_origin: str) -> list[JobUpdate]:
    """One pub/sub message: a list of updates, or one update on its own; those published by the
    replica `skip_origin` are left out (an update of a replica older than `origin` has none)."""
    body = msgpack.unpackb(data, raw=False)
    items = body if isinstance(body, list) else [body]
    return [_update_from(item) for item in items if not (isinstance(item, dict) and item.get("origin") == skip_origin)]


def _update_from(body: dict[str, Any]) -> JobUpdate:
    if not isinstance(body, dict):
        raise TypeError(f"an update is a map, not {type(body).__name__}")
    # `terminal` is on the wire for older readers; it follows from the status, so it is not read back.
    return job_update(
        str(body["tenant_id"]), str(body["job_id"]), int(body["seq"]), str(body["status"]), dict(body["event"])
    )


def _publish(pipe: Pipeline, *, channel: str, body: bytes) -> object:
    return pipe.publish(channel, body)


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
    def __init__(
        self, redis: aioredis.Redis, channel: str = keys.TASK_UPDATES_CHANNEL, batcher: PipelineBatcher | None = None
    ) -> None:
        self._redis = redis
        self._channel = channel
        self._listeners: list[Listener] = []
        self._watches: dict[tuple[str, str], set[JobWatch]] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._batch = batcher or PipelineBatcher(redis)
        self._origin = secrets.token_hex(8)  # this replica, in the updates it publishes
        # One PUBLISH at a time, each carrying every update published since the last one.
        self._outgoing: RoundTripBatcher[list[dict[str, Any]], None] = RoundTripBatcher(
            self._publish_all, "baton-update-bus-publish", gather_turn=True
        )

    async def publish(self, update: JobUpdate) -> None:
        """Publish once Redis took it; updates published meanwhile share one message, in call order."""
        with redis_errors("publishing a job update"):
            await asyncio.shield(self.announce(update))

    def announce(self, update: JobUpdate) -> asyncio.Future[None]:
        """Deliver the update to this replica's listeners now, and queue it for the next PUBLISH
        without waiting for it: its place in the order is taken at once. A failed PUBLISH is
        logged here; the returned future (redis-py's error, untranslated) is for callers that want
        to know."""
        return self.announce_many((update,))

    def announce_many(self, updates: Sequence[JobUpdate]) -> asyncio.Future[None]:
        """`announce` for each update in order, handed to the listeners in one go and carried by one
        PUBLISH (with whatever else is queued for it): a delivery window's updates."""
        bodies = []
        for update in updates:
            self._deliver(update)
            body = update_body(update)
            body["origin"] = self._origin
            bodies.append(body)
        return self._outgoing.enqueue(bodies)

    async def _publish_all(self, batch: list[list[dict[str, Any]]]) -> list[None]:
        bodies = [body for bodies in batch for body in bodies]
        body = msgpack.packb(bodies[0] if len(bodies) == 1 else bodies, use_bin_type=True)
        try:
            await self._batch.run(functools.partial(_publish, channel=self._channel, body=body))
        except Exception as exc:
            # The changes are saved; clients see them in the registry and their next snapshot.
            log.warning("%d job update(s) saved but not announced: %s", len(bodies), exc)
            raise
        return [None] * len(batch)

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        """Call `fn` with every update this replica receives; returns the remover."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn)

    def watch(self, tenant_id: str, job_id: str) -> JobWatch:
        return JobWatch(self, tenant_id, job_id)

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    @property
    def state(self) -> BusState:
        return "subscribed" if self._subscribed.is_set() else "resubscribing"

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
        await self._outgoing.close(redis_exc.ConnectionError("the update bus stopped"))
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
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
                updates = decode_updates(message["data"], skip_origin=self._origin)
            except (ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
                log.warning("ignoring an undecodable job update: %s", exc)
                continue
            for update in updates:
                self._deliver(update)

    def _deliver(self, update: JobUpdate) -> None:
        for watch in list(self._watches.get((update.tenant_id, update.job_id), ())):
            watch.deliver(update)
        for listener in list(self._listeners):
            try:
                listener(update)
            except Exception:  # one broken listener must not starve the others
                log.exception("job update listener failed")
