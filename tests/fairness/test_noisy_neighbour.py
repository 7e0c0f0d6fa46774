"""Issue 12's noisy neighbour: tenant B's jobs start within seconds behind tenant A's 10,000-job backlog
on the same service, one worker process, concurrency 10, a 5 ms handler (real RabbitMQ and Redis)."""

from __future__ import annotations

import aio_pika
import pytest
import redis.asyncio as aioredis

from protocol.lanes import lanes_key
from protocol.topology import lane_queue
from tests.fairness.scenario import Neighbours, run_neighbours


@pytest.mark.timeout(120)
async def test_a_small_tenant_is_served_within_seconds_behind_a_large_backlog(
    rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str
) -> None:
    run = Neighbours(service=f"t-noisy-{unique}", tenant_a=f"noisy-{unique}", tenant_b=f"quiet-{unique}")
    figures = await run_neighbours(rabbitmq_url, redis_url, run)
    print(*figures.lines("with lanes"), sep="\n")
    assert figures.b_p95_s < 5.0
    # What the run made is gone: A's lane (with the rest of the backlog) and the lane set.
    assert not await redis_client.exists(lanes_key(run.service))
    connection = await aio_pika.connect(rabbitmq_url)
    try:
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await (await connection.channel()).declare_queue(lane_queue(run.service, run.tenant_a), passive=True)
    finally:
        await connection.close()
