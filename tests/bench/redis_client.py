"""The client-side cost of Redis commands, as the orchestrator and the workers send them.

    bash tests/bench/run.sh --help   # (makes the bench venv once), then:
    tests/bench/.venv/bin/python -m tests.bench.redis_client [--rounds 200] [--repeat 3]

Two comparisons, each against its baseline in the same run, printed as microseconds of this
process's CPU per command and as a ratio:
- replies read by redis-py's pure-Python RESP3 parser vs hiredis (HGETALL, HSET, PUBLISH);
- a registry-shaped EVALSHA (one key, 28 arguments) sent argument by argument vs as one msgpack
  array unpacked by the script (`registry_codec.packed_args`), with Redis's own CPU per command.
Needs Redis (REDIS_URL, default 127.0.0.1); touches only keys under `bench:redis-client:`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis._parsers import _AsyncHiredisParser
from redis._parsers.resp3 import _AsyncRESP3Parser
from redis.asyncio.client import Pipeline

from orchestrator.store.codec import packed_args

PREFIX = "bench:redis-client:"
PIPELINE_SIZE = 200
HASH = {f"field{i}": "v" * 40 for i in range(12)}
SCRIPT_ARGS = [text for i in range(14) for text in (f"field{i}", "v" * 30)]
BY_ARGUMENT = "redis.call('HSET', KEYS[1], unpack(ARGV)); return {1, 'ok', 3}"
PACKED = "local ARGV = cmsgpack.unpack(ARGV[1]); redis.call('HSET', KEYS[1], unpack(ARGV)); return {1, 'ok', 3}"


async def redis_cpu(client: aioredis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


Adder = Callable[[Pipeline], object]  # adds one round's commands to a pipeline


async def per_command(
    url: str, parser: type, rounds: int, prepare: Callable[[aioredis.Redis], Awaitable[Adder]], commands: int
) -> tuple[float, float]:
    """Microseconds of this process's CPU, and of Redis's, per command."""
    client = aioredis.Redis(connection_pool=aioredis.ConnectionPool.from_url(url, parser_class=parser))
    try:
        add = await prepare(client)
        redis_before, before = await redis_cpu(client), time.process_time()
        for _ in range(rounds):
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(PIPELINE_SIZE):
                    add(pipe)
                await pipe.execute()
        ours, theirs = time.process_time() - before, await redis_cpu(client) - redis_before
        sent = rounds * PIPELINE_SIZE * commands
        return 1e6 * ours / sent, 1e6 * theirs / sent
    finally:
        await client.delete(f"{PREFIX}hash", f"{PREFIX}script")
        await client.aclose()


async def reads(client: aioredis.Redis) -> Adder:
    def add(pipe: Pipeline) -> None:
        pipe.hgetall(f"{PREFIX}hash")
        pipe.hset(f"{PREFIX}hash", mapping=HASH)
        pipe.publish(f"{PREFIX}channel", b"x" * 200)

    return add


def script_call(source: str, packed: bool) -> Callable[[aioredis.Redis], Awaitable[Adder]]:
    async def prepare(client: aioredis.Redis) -> Adder:
        sha = await client.script_load(source)
        return lambda pipe: pipe.evalsha(
            sha, 1, f"{PREFIX}script", *([packed_args(SCRIPT_ARGS)] if packed else SCRIPT_ARGS)
        )

    return prepare


async def main(url: str, rounds: int, repeat: int) -> None:
    for _ in range(repeat):
        python, _ = await per_command(url, _AsyncRESP3Parser, rounds, reads, 3)
        hiredis, _ = await per_command(url, _AsyncHiredisParser, rounds, reads, 3)
        print(f"HGETALL/HSET/PUBLISH  pure-Python parser {python:6.1f} us  hiredis {hiredis:6.1f} us  ", end="")
        print(f"ratio {hiredis / python:.2f}")
    for _ in range(repeat):
        args, redis_args = await per_command(url, _AsyncHiredisParser, rounds, script_call(BY_ARGUMENT, False), 1)
        packed, redis_packed = await per_command(url, _AsyncHiredisParser, rounds, script_call(PACKED, True), 1)
        print(
            f"EVALSHA, 28 arguments  one by one {args:6.1f} us  packed {packed:6.1f} us  ratio {packed / args:.2f}",
            end="",
        )
        print(f"   (Redis: {redis_args:.1f} vs {redis_packed:.1f} us)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="pipelines of 200 commands per measurement")
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    asyncio.run(main(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), options.rounds, options.repeat))
