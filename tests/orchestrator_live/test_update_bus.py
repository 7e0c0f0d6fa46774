"""UpdateBus across two instances (two replicas) on the real Redis."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import msgpack
import pytest
import redis.asyncio as aioredis

from orchestrator.errors import RegistryUnavailable
from orchestrator.live.update_bus import UpdateBus, update_body
from orchestrator.models import JobUpdate, job_update
from tests.polling import eventually


@pytest.fixture
async def replicas(redis_url: str, unique: str) -> AsyncIterator[tuple[UpdateBus, UpdateBus]]:
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    buses = [UpdateBus(client, channel=f"test:task_updates:{unique}") for client in clients]
    for bus in buses:
        await bus.start()
    yield buses[0], buses[1]
    for bus in buses:
        await bus.stop()
    for client in clients:
        await client.aclose()


def update(tenant: str, job: str, seq: int, *, terminal: bool = False) -> JobUpdate:
    status = "completed" if terminal else "running"
    event = {"event": "task_completed" if terminal else "task_status_update", "seq": seq, "data": {"r": "é"}}
    return job_update(tenant, job, seq, status, event)


async def test_an_update_reaches_listeners_of_both_replicas(replicas: tuple[UpdateBus, UpdateBus]) -> None:
    first, second = replicas
    got: tuple[list[JobUpdate], list[JobUpdate]] = ([], [])
    first.add_listener(got[0].append)
    remove = second.add_listener(got[1].append)
    sent = update("t", "j", 2)
    await first.publish(sent)
    await eventually(lambda: bool(got[0] and got[1]))
    assert got == ([sent], [sent])
    remove()
    await first.publish(update("t", "j", 3))
    await eventually(lambda: len(got[0]) == 2)
    assert len(got[1]) == 1


async def test_a_replica_delivers_its_own_update_at_once_and_skips_it_when_it_comes_back(
    replicas: tuple[UpdateBus, UpdateBus],
) -> None:
    first, second = replicas
    got: tuple[list[JobUpdate], list[JobUpdate]] = ([], [])
    first.add_listener(got[0].append)
    second.add_listener(got[1].append)
    sent = update("t", "j", 2)
    published = first.announce(sent)
    assert got[0] == [sent]  # no Redis round trip in between
    await published
    # Pub/sub keeps a channel's order: once a later message is back on both replicas, so is the
    # first replica's own copy (the marker is published by neither, so both read it from Redis).
    marker = update("t", "marker", 1)
    await first._redis.publish(first._channel, msgpack.packb(update_body(marker), use_bin_type=True))
    await eventually(lambda: marker in got[0] and marker in got[1])
    assert got == ([sent, marker], [sent, marker])


async def test_a_watch_on_another_replica_gets_the_terminal_update(replicas: tuple[UpdateBus, UpdateBus]) -> None:
    first, second = replicas
    with second.watch("t", "job-1") as watch:
        await first.publish(update("t", "job-1", 2))
        await first.publish(update("t", "job-2", 3, terminal=True))
        await first.publish(update("t", "job-1", 4, terminal=True))
        done = await watch.terminal(5)
    assert done is not None and done.seq == 4 and done.terminal


async def test_a_watch_times_out_with_none(replicas: tuple[UpdateBus, UpdateBus]) -> None:
    async with replicas[0].watch("t", "never") as watch:
        assert await watch.terminal(0.1) is None


async def test_a_failing_listener_does_not_starve_the_others(replicas: tuple[UpdateBus, UpdateBus]) -> None:
    first, _ = replicas
    got: list[JobUpdate] = []

    def broken(_: JobUpdate) -> None:
        raise RuntimeError("listener bug")

    first.add_listener(broken)
    first.add_listener(got.append)
    await first.publish(update("t", "j", 2))
    await eventually(lambda: bool(got))


async def test_the_subscription_comes_back_after_its_connection_is_killed(redis_url: str, unique: str) -> None:
    name = f"bus-{unique}"
    listener_client = aioredis.Redis.from_url(redis_url, client_name=name)
    admin = aioredis.Redis.from_url(redis_url)
    bus = UpdateBus(listener_client, channel=f"test:task_updates:{unique}")
    got: list[JobUpdate] = []
    bus.add_listener(got.append)
    await bus.start()
    try:
        ours = [c for c in await admin.client_list(_type="pubsub") if c.get("name") == name]
        assert len(ours) == 1
        await admin.client_kill_filter(_id=ours[0]["id"])
        # Publish until the resubscribed bus hears one: none may be lost once it is back.
        seqs = itertools.count(2)

        async def heard_after_publishing_another() -> bool:
            await UpdateBus(admin, channel=f"test:task_updates:{unique}").publish(update("t", "j", next(seqs)))
            return bool(got)

        await eventually(heard_after_publishing_another)
        assert bus.subscribed
        now = [c for c in await admin.client_list(_type="pubsub") if c.get("name") == name]
        assert [c["id"] for c in now] != [ours[0]["id"]]  # it really is a new subscription
    finally:
        await bus.stop()
        await listener_client.aclose()
        await admin.aclose()


async def test_updates_published_together_share_one_message_in_order(redis_url: str, unique: str) -> None:
    channel = f"test:task_updates:{unique}"
    client, raw = aioredis.Redis.from_url(redis_url), aioredis.Redis.from_url(redis_url)
    bus = UpdateBus(client, channel=channel)
    got: list[JobUpdate] = []
    bus.add_listener(got.append)
    await bus.start()
    messages: list[bytes] = []
    async with raw.pubsub(ignore_subscribe_messages=True) as watcher:
        await watcher.subscribe(channel)
        try:
            sent = [update("t", f"j{i % 7}", i) for i in range(300)]
            await asyncio.gather(*(bus.publish(u) for u in sent))
            await eventually(lambda: len(got) == 300)
            quiet_until = asyncio.get_running_loop().time() + 0.5
            while asyncio.get_running_loop().time() < quiet_until:  # (None also stands for the subscribe reply)
                message = await watcher.get_message(timeout=0.1)
                if message is not None:
                    messages.append(message["data"])
        finally:
            await bus.stop()
            await client.aclose()
            await raw.aclose()
    assert got == sent  # every update, once, in the order they were published
    assert 1 <= len(messages) < 30  # not one pub/sub message per update
    on_the_wire = [(item["job_id"], item["seq"]) for data in messages for item in msgpack.unpackb(data)]
    assert on_the_wire == [(u.job_id, u.seq) for u in sent]  # in that order on the channel too


async def test_a_single_update_from_an_older_replica_is_still_read(replicas: tuple[UpdateBus, UpdateBus]) -> None:
    """A replica that publishes one map per update (the earlier format) is understood."""
    first, _ = replicas
    got: list[JobUpdate] = []
    first.add_listener(got.append)
    sent = update("t", "old", 5, terminal=True)
    await first._redis.publish(first._channel, msgpack.packb(update_body(sent), use_bin_type=True))
    await eventually(lambda: bool(got))
    assert got == [sent]


async def test_a_message_that_is_not_updates_is_skipped_and_the_subscription_stays(
    replicas: tuple[UpdateBus, UpdateBus],
) -> None:
    first, _ = replicas
    got: list[JobUpdate] = []
    first.add_listener(got.append)
    for garbage in ([1, "x"], "text", {"job_id": "no tenant"}):
        await first._redis.publish(first._channel, msgpack.packb(garbage, use_bin_type=True))
    await first._redis.publish(first._channel, b"\xc1 not msgpack")
    sent = update("t", "after-garbage", 2)
    await first._redis.publish(first._channel, msgpack.packb(update_body(sent), use_bin_type=True))
    await eventually(lambda: bool(got))
    assert got == [sent]
    assert first.subscribed


async def test_a_publish_while_redis_is_gone_fails_every_caller_and_none_hangs() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.3)
    bus = UpdateBus(dead, channel="test:task_updates:dead")
    try:
        async with asyncio.timeout(5):
            outcomes = await asyncio.gather(
                *(bus.publish(update("t", "j", i)) for i in range(20)), return_exceptions=True
            )
    finally:
        await bus.stop()
        await dead.aclose()
    assert all(isinstance(outcome, RegistryUnavailable) for outcome in outcomes), outcomes


async def test_stopping_the_bus_releases_a_waiting_publisher(redis_url: str, unique: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    bus = UpdateBus(client, channel=f"test:task_updates:{unique}")
    waiting = asyncio.ensure_future(bus.publish(update("t", "j", 2)))
    await asyncio.sleep(0)  # the publish is waiting; its sender has not run yet
    await bus.stop()
    try:
        async with asyncio.timeout(2):
            with pytest.raises(RegistryUnavailable):
                await waiting
    finally:
        await client.aclose()
