"""Workers consume their service's tenant lanes: opened by broadcast, found in Redis at start or on the
re-read, each lane delivering into the fair slots (the orchestrator's real publisher publishes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aio_pika
import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel

from orchestrator.broker.publisher import TaskPublisher
from orchestrator.store.lanes import RedisLanes
from protocol.codec import MSGPACK, CodecSet
from protocol.envelope import TaskEnvelope
from protocol.events import EventType
from protocol.lanes import lanes_key
from protocol.topology import TASKS_EXCHANGE, declare_lane, declare_service, lane_queue, lane_routing_key
from tests.polling import eventually
from tests.workers.helpers import CODECS, Tap, envelope, running
from workers import TaskContext, Worker

# Long enough that only the broadcast (or the read at start) can have opened a lane within a test.
NO_REREAD_SECONDS = 600.0


def echo(service: str, started: list[str] | None = None) -> Worker:
    worker = Worker(service, concurrency=2)

    @worker.handler("echo")
    async def handle(payload: dict[str, str], ctx: TaskContext) -> dict[str, str]:
        if started is not None:
            started.append(ctx.tenant_id)
        return {"tenant": ctx.tenant_id}

    return worker


@pytest.fixture
async def publisher(rabbitmq_url: str, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[TaskPublisher]:
    real = TaskPublisher(
        rabbitmq_url, CodecSet(), connection_name=f"test-lanes-{unique}", lanes=RedisLanes(redis_client)
    )
    await real.start()
    yield real
    await real.close()


@pytest.fixture
async def lanes_of(channel: AbstractChannel, redis_client: aioredis.Redis, service: str) -> AsyncIterator[RedisLanes]:
    """The service's lane set; the lanes and the set are deleted at teardown."""
    lanes = RedisLanes(redis_client)
    yield lanes
    for tenant in (await lanes.tenants([service]))[service]:
        await channel.queue_delete(lane_queue(service, tenant))
    await redis_client.delete(lanes_key(service))


@pytest.fixture
async def tap(channel: AbstractChannel, service: str) -> Tap:
    return await Tap.open(channel, f"*.{service}.*")


@pytest.fixture
def tenant(unique: str) -> str:
    return f"tn-{unique}"


def task(service: str, tenant: str) -> TaskEnvelope:
    return envelope(service, "echo", {}, tenant_id=tenant)


async def completes_within(tap: Tap, sent: TaskEnvelope, seconds: float) -> float:
    started = time.monotonic()
    events = await tap.task_events(sent.task_id, within=seconds)
    assert events[-1].event == EventType.TASK_COMPLETED
    assert events[-1].data["result"] == {"tenant": sent.tenant_id}
    return time.monotonic() - started


async def test_a_running_worker_consumes_a_new_lane_as_soon_as_it_is_broadcast(
    rabbitmq_url: str, service: str, tenant: str, tap: Tap, publisher: TaskPublisher, lanes_of: RedisLanes
) -> None:
    async with running(echo(service), rabbitmq_url, lane_refresh_seconds=NO_REREAD_SECONDS) as runtime:
        assert runtime.lanes == frozenset()
        sent = task(service, tenant)
        await publisher.publish_task(sent)
        await completes_within(tap, sent, 2.0)
        assert runtime.lanes == {tenant}
    assert await lanes_of.tenants([service]) == {service: [tenant]}


async def test_a_worker_started_after_the_lane_was_opened_reads_it_from_redis(
    rabbitmq_url: str, service: str, tenant: str, tap: Tap, publisher: TaskPublisher, lanes_of: RedisLanes
) -> None:
    sent = task(service, tenant)
    await publisher.publish_task(sent)  # nobody listens to its broadcast
    async with running(echo(service), rabbitmq_url, lane_refresh_seconds=NO_REREAD_SECONDS):
        await completes_within(tap, sent, 2.0)


async def test_a_lane_whose_broadcast_was_missed_is_found_by_the_periodic_re_read(
    rabbitmq_url: str, channel: AbstractChannel, service: str, tenant: str, tap: Tap, lanes_of: RedisLanes
) -> None:
    async with running(echo(service), rabbitmq_url, lane_refresh_seconds=0.2) as runtime:
        # The orchestrator's steps without the broadcast: declare, record, publish.
        await declare_service(channel, service)
        await declare_lane(channel, service, tenant)
        await lanes_of.record(service, tenant)
        sent = task(service, tenant)
        await publish_to_lane(channel, sent)
        await completes_within(tap, sent, 2.0)
        assert runtime.lanes == {tenant}


async def test_tenants_share_a_busy_worker_and_stop_hands_back_what_never_started(
    rabbitmq_url: str,
    channel: AbstractChannel,
    service: str,
    unique: str,
    publisher: TaskPublisher,
    lanes_of: RedisLanes,
) -> None:
    started: list[str] = []
    turns = asyncio.Semaphore(0)  # one handler ends per release
    worker = Worker(service, concurrency=1, prefetch=50)

    @worker.handler("echo")
    async def handle(payload: dict[str, str], ctx: TaskContext) -> None:
        started.append(ctx.tenant_id)
        await turns.acquire()

    big, small = f"big-{unique}", f"small-{unique}"
    async with running(
        worker, rabbitmq_url, lane_refresh_seconds=NO_REREAD_SECONDS, shutdown_grace_seconds=0.5
    ) as runtime:
        for _ in range(20):
            await publisher.publish_task(task(service, big))
        await eventually(lambda: started == [big])
        await publisher.publish_task(task(service, small))
        await eventually(lambda: small in runtime.lanes)
        await asyncio.sleep(0.2)  # the small tenant's task is in this process, waiting for the slot
        turns.release()
        turns.release()
        await eventually(lambda: len(started) == 3)
        assert started == [big, small, big]  # the next turn, not after the 19 queued before it
    # The 18 deliveries still waiting for the slot went back to the service queue as they came.
    assert runtime.stats.handed_back == 18


async def publish_to_lane(channel: AbstractChannel, sent: TaskEnvelope) -> None:
    exchange = await channel.get_exchange(TASKS_EXCHANGE, ensure=False)
    message = aio_pika.Message(CODECS.encode(sent), content_type=MSGPACK, **sent.amqp_properties())
    await exchange.publish(message, lane_routing_key(sent.service, sent.tenant_id), mandatory=True)
