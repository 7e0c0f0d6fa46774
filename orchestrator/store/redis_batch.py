"""Coalesce concurrent Redis commands into one pipeline round trip.

Under load many coroutines each wait on their own round trip (an event applied, an update
published). The batcher queues the commands given while a pipeline is in flight and sends them
together in the next one, in call order; each caller gets its own reply or error, untranslated
(callers translate redis-py errors at their boundary as before).

Lua scripts go in by SHA (EVALSHA) rather than as redis-py Script objects: a pipeline holding a
Script first asks SCRIPT EXISTS, one more round trip per pipeline. The rare NOSCRIPT (a Redis
restarted or flushed since) is answered by running that one call as a Script, which loads it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

Command = Callable[[Pipeline], object]  # adds one command to the pipeline it is given


class PipelineBatcher:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._pending: list[tuple[Command, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, command: Command) -> Any:
        """Queue `command` (which adds one command to the pipeline it is given) and return its reply."""
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((command, reply))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="baton-redis-batch")
        return await reply

    async def script(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a registered Lua script in the next pipeline; its reply, or the error it raised."""
        try:
            return await self.run(lambda pipe: pipe.evalsha(script.sha, len(keys), *keys, *args))
        except NoScriptError:
            return await script(keys=list(keys), args=list(args))

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for command, _ in batch:
                        command(pipe)
                    replies = await pipe.execute(raise_on_error=False)
            except Exception as exc:  # the link failed: every caller in the batch learns it
                for _, reply in batch:
                    if not reply.done():
                        reply.set_exception(exc)
                continue
            for (_, reply), value in zip(batch, replies, strict=True):
                if reply.done():
                    continue
                if isinstance(value, Exception):
                    reply.set_exception(value)
                else:
                    reply.set_result(value)
