"""The session's clean-up forgets only the services named with its own suffixes."""

from __future__ import annotations

import redis.asyncio as aioredis

from orchestrator.store import keys
from tests.directory_cleanup import forget_named_services


async def test_only_services_named_with_the_sessions_suffixes_are_forgotten(
    redis_client: aioredis.Redis, unique: str
) -> None:
    ours, theirs = f"t-svc-{unique}", f"someone-{unique[::-1]}x"
    await redis_client.sadd(keys.ANNOUNCED_SERVICES, ours, theirs)
    await redis_client.zadd(keys.SERVICES_SEEN, {ours: 1.0, theirs: 1.0})
    await redis_client.hset(keys.ROUTES, mapping={f"job_{unique}": ours, f"other_{unique}": theirs})
    await redis_client.hset(keys.workers(ours), "w-1", "{}")
    try:
        assert await forget_named_services(redis_client, [unique]) == 1
        assert not await redis_client.sismember(keys.ANNOUNCED_SERVICES, ours)
        assert await redis_client.zscore(keys.SERVICES_SEEN, ours) is None
        assert not await redis_client.hexists(keys.ROUTES, f"job_{unique}")
        assert not await redis_client.exists(keys.workers(ours))
        assert await redis_client.sismember(keys.ANNOUNCED_SERVICES, theirs)
        assert await redis_client.hget(keys.ROUTES, f"other_{unique}") == theirs.encode()
    finally:
        await redis_client.srem(keys.ANNOUNCED_SERVICES, ours, theirs)
        await redis_client.zrem(keys.SERVICES_SEEN, ours, theirs)
        await redis_client.hdel(keys.ROUTES, f"job_{unique}", f"other_{unique}")
        await redis_client.delete(keys.workers(ours))
