"""One deployment per vhost: notices when something else consumes this deployment's events queue.

Every replica consumes `baton.orchestrator.events`, and RabbitMQ hands each message to one of the
queue's consumers in turn. A second deployment on the same vhost (with a Redis of its own) consumes
the same queue, so each silently takes a share of the other's events and applies them to a registry
that does not know those jobs: they stall for no visible reason.

Replicas of one deployment share its Redis, so each replica registers itself there every period
(a sorted set scored by Redis's clock, entries older than `ttl` dropped). A queue with more
consumers than registered replicas has a consumer from elsewhere. It must be seen on
`confirmations` checks in a row (a replica that just started may consume before it registers, one
that stops consumes until it ends) before it is logged at ERROR and flagged on /health. This needs
no message of its own on the events path, and also catches consumers that know nothing of Baton
(which is also why replicas of a version without this check, during a rolling upgrade, count as foreign).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis
import redis.exceptions as redis_exc
from pydantic import BaseModel, Field

from orchestrator.broker.queue_inspector import QueueStats
from orchestrator.errors import BrokerError
from orchestrator.store import keys
from plumbing.cancellation import cancel_and_wait
from protocol.topology import ORCHESTRATOR_EVENTS_QUEUE

log = logging.getLogger(__name__)

DEFAULT_PERIOD_SECONDS: Final[float] = 5.0

# Registers a replica and counts the live ones, on Redis's clock so that replicas' clocks may differ.
# KEYS[1] the set; ARGV: replica id, ttl in seconds.
_REGISTER: Final[str] = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000))
return redis.call('ZCARD', KEYS[1])
"""

QueueStatsReader = Callable[[Sequence[str]], Awaitable[dict[str, QueueStats | None]]]


class DeploymentHealth(BaseModel):
    shared_events_queue: bool = Field(
        default=False,
        description="true when something outside this deployment (another deployment on the same vhost) "
        "consumes its events queue and takes a share of its events",
    )
    reason: str | None = None
    consumers: int | None = Field(default=None, description="consumers of the events queue at the last check")
    replicas: int | None = Field(default=None, description="this deployment's orchestrator replicas at the last check")


@dataclass(frozen=True)
class DeploymentSettings:
    """Which events queue this deployment consumes and how often a replica checks it is alone on it.

    Tests give a queue and a replica set of their own, so they never meet a real deployment."""

    events_queue: str = ORCHESTRATOR_EVENTS_QUEUE
    replicas_key: str = keys.replicas()
    period_seconds: float = DEFAULT_PERIOD_SECONDS
    confirmations: int = 2
    # Last, so that the positional (queue, replicas key) of earlier callers keeps its meaning.
    events_routing_keys: tuple[str, ...] = ("#",)  # its bindings on the events exchange

    @property
    def ttl_seconds(self) -> float:
        return 3 * self.period_seconds


def replica_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class DeploymentCheck:
    def __init__(self, redis: aioredis.Redis, queue_stats: QueueStatsReader, settings: DeploymentSettings) -> None:
        self._settings = settings
        self._queue_stats = queue_stats
        self._register = redis.register_script(_REGISTER)
        self._id = replica_id()
        self._excess_checks = 0
        self._health = DeploymentHealth()
        self._task: asyncio.Task[None] | None = None

    @property
    def health(self) -> DeploymentHealth:
        return self._health

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="baton-deployment-check")

    async def stop(self) -> None:
        # The registration is left to age out: removing it while this replica's consumer still
        # consumes would make the others count one consumer too many.
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    async def _run(self) -> None:
        await self._registered_replicas()  # at once: this replica's consumer is starting meanwhile
        while True:
            await asyncio.sleep(self._settings.period_seconds)
            try:
                await self.check()
            except Exception:
                log.exception("deployment check failed; trying again next period")  # a bug must not end the loop

    async def check(self) -> None:
        """One round: register, count, compare. A round without Redis or the broker changes nothing."""
        replicas = await self._registered_replicas()
        consumers = await self._consumers()
        if replicas is None or consumers is None:
            return
        if consumers <= replicas:
            self._excess_checks = 0
            if self._health.shared_events_queue:
                log.warning("queue %s has no consumer from elsewhere any more", self._settings.events_queue)
            self._health = DeploymentHealth(consumers=consumers, replicas=replicas)
            return
        self._excess_checks += 1
        if self._excess_checks < self._settings.confirmations:
            return
        reason = (
            f"queue {self._settings.events_queue} has {consumers} consumers but this deployment has {replicas} "
            "orchestrator replicas (replicas of one deployment share its Redis): another deployment or program "
            "on this RabbitMQ vhost takes a share of this deployment's events, and their jobs stall. "
            "Run one deployment per vhost."
        )
        if not self._health.shared_events_queue:
            log.error("%s", reason)
        self._health = DeploymentHealth(shared_events_queue=True, reason=reason, consumers=consumers, replicas=replicas)

    async def _registered_replicas(self) -> int | None:
        settings = self._settings
        try:
            count = await self._register(keys=[settings.replicas_key], args=[self._id, settings.ttl_seconds])
        except redis_exc.RedisError as exc:
            log.warning("deployment check: Redis failed (%s); trying again in %.0f s", exc, settings.period_seconds)
            return None
        return int(count)

    async def _consumers(self) -> int | None:
        try:
            async with asyncio.timeout(self._settings.period_seconds):
                stats = (await self._queue_stats([self._settings.events_queue])).get(self._settings.events_queue)
        except (BrokerError, TimeoutError):
            return None  # /health reports the broker down already
        return None if stats is None else stats.consumers
