"""Coalescing Redis round trips: while one is in flight, the calls that arrive go together in the next.

Under load many coroutines each wait on their own round trip (an event applied, an update
published, a delivery checked against the ledger). `RoundTripBatcher` keeps at most one round trip
in flight and sends the items queued meanwhile together in the next, in call order; each caller
gets its own reply or error. What a batch becomes on the wire is its user's: a pipeline of
commands (`PipelineBatcher`, the orchestrator's registry), one MGET or one script call (the
worker's delivery ledger), one PUBLISH of many updates (the orchestrator's update bus).

Two ways in. `enqueue` takes the item's place in the order at once, without waiting; a background
task sends it. `submit` sends an item at once, in the caller's own task, when nothing is in flight
(a lone call costs what it would without batching), and otherwise waits for the next batch.
With `gather_turn` the background task lets one loop turn pass before each batch, so that the callers
woken by the round trip that just ended can add their next calls to it (the update bus: announcements
come in bursts from many lanes). Without it the next batch goes as soon as the last one is answered
(the registry's pipeline and the worker's ledger, as they were before this class served them).

Lua scripts go in by SHA (EVALSHA) rather than as redis-py Script objects: a pipeline holding a
Script first asks SCRIPT EXISTS, one more round trip per pipeline. The rare NOSCRIPT (a Redis
restarted or flushed since) is answered by running that one call as a Script, which loads it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from plumbing.cancellation import cancel_and_wait

Item = TypeVar("Item")
Reply = TypeVar("Reply")

Command = Callable[[Pipeline], object]  # adds one command to the pipeline it is given


class RoundTripBatcher(Generic[Item, Reply]):
    """`send` answers a batch with one outcome per item, in order: a reply, or an Exception that
    only that item's caller gets. When `send` raises, every caller in the batch gets that error."""

    def __init__(
        self,
        send: Callable[[list[Item]], Awaitable[Sequence[Reply | Exception]]],
        name: str,
        *,
        gather_turn: bool = False,
    ) -> None:
        self._send = send
        self._name = name
        self._gather_turn = gather_turn
        self._waiting: list[tuple[Item, asyncio.Future[Reply]]] = []
        self._in_flight: list[tuple[Item, asyncio.Future[Reply]]] = []  # the background task's batch
        self._busy = False  # a round trip is in flight, or the background task is about to send one
        self._drainer: asyncio.Task[None] | None = None

    def enqueue(self, item: Item) -> asyncio.Future[Reply]:
        """Queue `item` behind every item queued before it; the future gets its outcome."""
        reply: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, reply))
        if not self._busy:
            self._busy = True
            self._drainer = asyncio.create_task(self._drain(), name=self._name)
        return reply

    async def submit(self, item: Item, *, timeout: float | None = None) -> Reply:
        """The outcome of `item`: sent at once when nothing is in flight (bounded by `send` itself),
        else in the next batch; TimeoutError when that waiting saw no answer within `timeout` s."""
        if not self._busy:
            self._busy = True
            try:
                outcome = (await self._send([item]))[0]
            finally:
                self._next()
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        reply = self.enqueue(item)
        try:
            async with asyncio.timeout(timeout):
                return await reply
        except BaseException:
            if reply.done() and not reply.cancelled():
                reply.exception()  # answered just as this caller gave up: retrieved, so never logged
            raise

    async def close(self, error: BaseException) -> None:
        """Stop the background task; the calls it was sending and those still waiting get `error`.
        A call sent at once in its caller's task ends as its own round trip does."""
        drainer, self._drainer = self._drainer, None
        if drainer is not None:
            await cancel_and_wait(drainer)
        _fail(self._in_flight + self._waiting, error)
        self._in_flight, self._waiting = [], []
        self._busy = False

    def _next(self) -> None:
        if self._waiting:
            self._drainer = asyncio.create_task(self._drain(), name=self._name)
        else:
            self._busy = False

    async def _drain(self) -> None:
        try:
            while True:
                if self._gather_turn:
                    await asyncio.sleep(0)  # let the calls of this loop turn join
                if not self._waiting:
                    return
                batch, self._waiting = self._waiting, []
                self._in_flight = batch
                await self._answer(batch)
                self._in_flight = []
        finally:
            if self._drainer is asyncio.current_task():
                self._busy = False
                self._drainer = None

    async def _answer(self, batch: list[tuple[Item, asyncio.Future[Reply]]]) -> None:
        try:
            outcomes = await self._send([item for item, _ in batch])
            answered = list(zip(batch, outcomes, strict=True))
        except Exception as exc:  # the link failed: every caller in the batch learns it
            _fail(batch, exc)
            return
        for (_, reply), outcome in answered:
            if reply.done():  # its caller gave up
                continue
            if isinstance(outcome, Exception):
                _fail_one(reply, outcome)
            else:
                reply.set_result(outcome)


def _fail(batch: Sequence[tuple[object, asyncio.Future[Any]]], error: BaseException) -> None:
    for _, reply in batch:
        _fail_one(reply, error)


def _fail_one(reply: asyncio.Future[Any], error: BaseException) -> None:
    if not reply.done():
        reply.set_exception(error)
        reply.exception()  # a caller that awaits it still gets it; one that never does logs nothing


class PipelineBatcher:
    """Redis commands of concurrent callers, sent together as one pipeline (no transaction)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._pipelines: RoundTripBatcher[Command, Any] = RoundTripBatcher(self._execute, "baton-redis-batch")

    async def run(self, command: Command) -> Any:
        """Queue `command` (which adds one command to the pipeline it is given) and return its reply."""
        return await self._pipelines.enqueue(command)

    async def script(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a registered Lua script in the next pipeline; its reply, or the error it raised."""
        try:
            return await self.run(lambda pipe: pipe.evalsha(script.sha, len(keys), *keys, *args))
        except NoScriptError:
            return await script(keys=list(keys), args=list(args))

    async def _execute(self, commands: list[Command]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for command in commands:
                command(pipe)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            return replies
