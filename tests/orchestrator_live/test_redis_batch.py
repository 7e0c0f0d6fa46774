"""PipelineBatcher on the real Redis: many callers, few round trips, each its own reply or error."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
import redis.exceptions as redis_exc

from orchestrator.store.redis_client import make_redis
from plumbing.redis_batch import PipelineBatcher


async def test_concurrent_commands_share_pipelines_in_call_order(redis_client: aioredis.Redis, unique: str) -> None:
    key = f"test:batch:{unique}"
    batcher = PipelineBatcher(redis_client)
    pipelines = 0
    real_pipeline = redis_client.pipeline

    def counting_pipeline(*args: object, **kwargs: object) -> object:
        nonlocal pipelines
        pipelines += 1
        return real_pipeline(*args, **kwargs)  # type: ignore[arg-type]

    redis_client.pipeline = counting_pipeline  # type: ignore[method-assign]
    try:
        replies = await asyncio.gather(*(batcher.run(lambda pipe: pipe.incr(key)) for _ in range(200)))
    finally:
        redis_client.pipeline = real_pipeline  # type: ignore[method-assign]
        await redis_client.delete(key)
    assert replies == list(range(1, 201))  # applied in the order the callers asked
    assert pipelines < 10  # not one round trip each


async def test_an_error_reaches_only_its_caller(redis_client: aioredis.Redis, unique: str) -> None:
    text_key, counter = f"test:batch:{unique}:text", f"test:batch:{unique}:n"
    await redis_client.set(text_key, "not a number")
    batcher = PipelineBatcher(redis_client)
    try:
        good, bad = await asyncio.gather(
            batcher.run(lambda pipe: pipe.incr(counter)),
            batcher.run(lambda pipe: pipe.incr(text_key)),
            return_exceptions=True,
        )
    finally:
        await redis_client.delete(text_key, counter)
    assert good == 1
    assert isinstance(bad, redis_exc.ResponseError)


async def test_a_dead_link_fails_every_waiting_caller() -> None:
    client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    batcher = PipelineBatcher(client)
    try:
        outcomes = await asyncio.gather(
            *(batcher.run(lambda pipe: pipe.ping()) for _ in range(5)), return_exceptions=True
        )
    finally:
        await client.aclose()
    assert all(isinstance(outcome, redis_exc.ConnectionError) for outcome in outcomes)


async def test_a_lone_command_is_sent_at_once(redis_client: aioredis.Redis) -> None:
    batcher = PipelineBatcher(redis_client)
    async with asyncio.timeout(2):
        assert await batcher.run(lambda pipe: pipe.ping()) is True


async def _script_exists_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_script|exists", {}).get("calls", 0))


async def test_scripts_go_by_sha_without_an_existence_check_per_pipeline(
    redis_client: aioredis.Redis, unique: str
) -> None:
    """A redis-py Script in a pipeline asks SCRIPT EXISTS first: one more round trip each time."""
    key = f"test:batch:{unique}:script"
    script = redis_client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    batcher = PipelineBatcher(redis_client)
    await script(keys=[key], args=[0])  # loaded once, as a registering caller would
    before = await _script_exists_calls(redis_client)
    try:
        replies = await asyncio.gather(*(batcher.script(script, [key], [1]) for _ in range(100)))
    finally:
        await redis_client.delete(key)
    assert sorted(replies) == list(range(1, 101))
    assert await _script_exists_calls(redis_client) == before


async def test_a_script_redis_forgot_is_loaded_again(redis_client: aioredis.Redis, unique: str) -> None:
    """After a Redis restart (or SCRIPT FLUSH) EVALSHA answers NOSCRIPT: the call still succeeds."""
    key = f"test:batch:{unique}:flushed"
    script = redis_client.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1]) + 1000")
    batcher = PipelineBatcher(redis_client)
    await redis_client.script_flush()
    try:
        replies = await asyncio.gather(*(batcher.script(script, [key], [1]) for _ in range(5)))
        assert await batcher.script(script, [key], [1]) == 1006  # loaded again: by SHA from now on
    finally:
        await redis_client.delete(key)
    assert sorted(replies) == [1001, 1002, 1003, 1004, 1005]


async def test_replies_are_read_by_the_c_parser(redis_url: str) -> None:
    """The `hiredis` extra is installed and taken: replies cost a third of the pure-Python parser's CPU."""
    client = make_redis(redis_url)
    try:
        async with client.client() as single:
            await single.ping()
            connection = single.connection
            assert connection is not None
            assert type(connection._parser).__name__ == "_AsyncHiredisParser"
    finally:
        await client.aclose()
