"""A token bucket in Redis: one Lua script refills and spends it atomically, so every replica
sharing the Redis spends from the same bucket.

The script reads Redis's own clock (TIME), not the caller's: replicas whose clocks disagree still
refill one bucket at one rate. A bucket left alone until it is full again expires: an absent key
is a full bucket, so nothing is lost and idle tenants cost no memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis

from orchestrator.rates import Rate
from orchestrator.store.registry import redis_errors
from plumbing.redis_batch import PipelineBatcher

# KEYS[1]: the bucket, a hash {tokens, at}. ARGV: tokens per second, burst, cost.
# Answers {granted (1|0), tokens left or available (string: Lua truncates numbers it returns)}.
TAKE: Final[str] = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(held[1]) or burst
local at = tonumber(held[2]) or now
if now > at then tokens = math.min(burst, tokens + (now - at) * rate) end
if tokens < cost then return {0, tostring(tokens)} end
tokens = tokens - cost
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {1, tostring(tokens)}
"""


@dataclass(frozen=True)
class Taken:
    granted: bool
    tokens: float  # left after the spend when granted, else available now

    def wait_for(self, cost: int, rate: Rate) -> float:
        """Seconds until `cost` tokens are there (0 when granted)."""
        return 0.0 if self.granted else rate.seconds_until(cost - self.tokens)


class RedisTokenBucket:
    """Buckets by key; each `take` is one EVALSHA, in the shared pipeline when others are waiting."""

    def __init__(self, redis: aioredis.Redis, batcher: PipelineBatcher | None = None) -> None:
        self._script = redis.register_script(TAKE)
        self._batch = batcher or PipelineBatcher(redis)

    async def take(self, key: str, rate: Rate, cost: int) -> Taken:
        """Spend `cost` tokens of the bucket at `key` if it holds them; RegistryError when Redis failed."""
        with redis_errors("taking quota tokens"):
            granted, tokens = await self._batch.script(self._script, [key], [repr(rate.per_second), rate.burst, cost])
        return Taken(granted == 1, float(tokens))
