"""The event consumer's delivery windows: many events applied in one registry call, in delivery order.

A window is whatever waits when the consumer gets to run. To make one on purpose, the registry holds
its first window (a blocker job's event) until the test has published the events under test and the
broker has delivered them all: they wait together and form the next window.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgpack
import pytest
import redis.asyncio as aioredis

from orchestrator.broker.event_consumer import EventConsumer
from orchestrator.jobs.event_sink import EventSink
from orchestrator.models import JobRecord
from protocol.codec import JSON
from protocol.events import EventType, TaskEvent
from tests.faults.private_services import PrivateRedis
from tests.orchestrator_live.event_rig import (
    CODECS,
    HeldRegistry,
    RedisDownForWindows,
    Rig,
    drop_tenant,
    nothing_redelivered,
    queue_drained,
    sample,
)
from tests.polling import eventually
from tests.records import event_for, make_record, worker_heartbeat


async def hold_first_window(rig: Rig, registry: HeldRegistry, *records: JobRecord) -> EventConsumer:
    """`records` created, and a started consumer whose first window (a blocker job's event) the registry holds."""
    blocker = make_record(f"t-blocker-{rig.queue_name[-10:]}")
    for record in (blocker, *records):
        await registry.create(record)
    consumer = rig.consumer(registry, prefetch=64)
    await consumer.start()
    await rig.publish_event(event_for(blocker, EventType.TASK_STATUS_UPDATE, 1, status="running"))
    await asyncio.wait_for(registry.entered.wait(), 10)
    return consumer


async def release_when_delivered(rig: Rig, registry: HeldRegistry) -> None:
    await eventually(lambda: queue_drained(rig))
    await asyncio.sleep(0.1)  # the last deliveries' callbacks run
    registry.go.set()


def updates_of(rig: Rig, job_id: str) -> list[tuple[int, str]]:
    return [(u.seq, u.status) for u in rig.updates if u.job_id == job_id]


@pytest.fixture
async def other_tenant(redis_client: aioredis.Redis, unique: str) -> AsyncIterator[str]:
    tenant_id = f"t2-{unique}"
    yield tenant_id
    await drop_tenant(redis_client, tenant_id)


@pytest.fixture
async def blocker_keys(redis_client: aioredis.Redis, unique: str) -> AsyncIterator[None]:
    yield
    async for key in redis_client.scan_iter(match=f"orchestrator:*t-blocker-{unique}*", count=1000):
        await redis_client.delete(key)


async def test_a_window_applies_one_jobs_events_in_delivery_order(
    rig: Rig, redis_client: aioredis.Redis, tenant: str, blocker_keys: None
) -> None:
    registry, record = HeldRegistry(redis_client), make_record(tenant)
    consumer = await hold_first_window(rig, registry, record)
    try:
        running = event_for(record, EventType.TASK_STATUS_UPDATE, 1, status="running")
        progress = event_for(record, EventType.TASK_STATUS_UPDATE, 2, status="running", progress={"percentage": 50.0})
        completed = event_for(record, EventType.TASK_COMPLETED, 3, result={"ok": True})
        late = event_for(record, EventType.TASK_STATUS_UPDATE, 4, status="running")
        for event in (running, progress, progress, completed, late):
            await rig.publish_event(event)
        await release_when_delivered(rig, registry)
        await eventually(lambda: sample(rig.metrics, "baton_events_dropped_total", reason="job_terminal") == 1)
    finally:
        await consumer.stop()
    # The five were one window, applied in the order delivered: the repeat is stale, the late one after the end.
    assert registry.windows[1] == [(record.job_id, seq) for seq in (1, 2, 2, 3, 4)]
    assert updates_of(rig, record.job_id) == [(2, "running"), (3, "running"), (4, "completed")]
    assert sample(rig.metrics, "baton_events_dropped_total", reason="stale") == 1
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.status == "completed" and stored.result == {"ok": True} and stored.seq == 4
    assert sample(rig.metrics, "baton_jobs_finished_total", type="llm_request", status="completed") == 1
    assert sample(rig.metrics, "baton_events_applied_total", event="task_status_update") == 3  # blocker's too
    assert await queue_drained(rig)


async def test_a_window_of_several_tenants_and_jobs_keeps_each_jobs_order_and_goes_out_as_one_message(
    rig: Rig, redis_client: aioredis.Redis, tenant: str, other_tenant: str, blocker_keys: None
) -> None:
    registry = HeldRegistry(redis_client)
    records = [make_record(t) for t in (tenant, other_tenant) for _ in range(3)]
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(rig.bus_channel)
    consumer = await hold_first_window(rig, registry, *records)
    try:
        for seq in range(1, 4):  # interleaved: every job's seq 1, then every job's seq 2, ...
            for record in records:
                progress = {"percentage": float(seq)}
                await rig.publish_event(
                    event_for(record, EventType.TASK_STATUS_UPDATE, seq, status="running", progress=progress)
                )
        for record in records:
            await rig.publish_event(event_for(record, EventType.TASK_COMPLETED, 4, result=record.job_id), JSON)
        await release_when_delivered(rig, registry)
        await eventually(lambda: len(rig.updates) == 1 + 4 * len(records))
        messages: list[object] = []
        for _ in range(20):  # what the bus sent, the subscription's confirmation aside
            message = await pubsub.get_message(timeout=0.1)
            if message is not None and message["type"] == "message":
                messages.append(msgpack.unpackb(message["data"]))
    finally:
        await consumer.stop()
        await pubsub.aclose()
    assert len(registry.windows[1]) == 4 * len(records)
    for record in records:
        assert updates_of(rig, record.job_id) == [(2, "running"), (3, "running"), (4, "running"), (5, "completed")]
        stored = await registry.get(record.tenant_id, record.job_id)
        assert stored is not None and stored.status == "completed" and stored.result == record.job_id
    # The window's 24 updates are one pub/sub message, in the order applied.
    windows = [m for m in messages if isinstance(m, list) and len(m) == 4 * len(records)]
    assert len(windows) == 1
    assert [(u["job_id"], u["seq"]) for u in windows[0]] == [(u.job_id, u.seq) for u in rig.updates[1:]]
    assert sample(rig.metrics, "baton_events_dropped_total", reason="stale") == 0


async def test_undecodable_and_forged_events_in_a_window_are_acked_and_counted_the_good_applied(
    rig: Rig, redis_client: aioredis.Redis, tenant: str, blocker_keys: None
) -> None:
    registry, record = HeldRegistry(redis_client), make_record(tenant)
    consumer = await hold_first_window(rig, registry, record)
    try:
        await rig.publish_event(event_for(record, EventType.TASK_STATUS_UPDATE, 1, status="running"))
        await rig.publish(f"{tenant}.query.task_completed", b"\xc1 not msgpack", correlation_id=record.job_id)
        forged = event_for(record, EventType.TASK_COMPLETED, 2, result="forged")
        await rig.publish(f"x{tenant}.query.task_completed", CODECS.encode(forged), correlation_id=record.job_id)
        await rig.publish_event(event_for(record, EventType.TASK_COMPLETED, 2, service="embedding", result="forged"))
        await rig.publish_event(event_for(record, EventType.TASK_COMPLETED, 3, result="real"))
        await release_when_delivered(rig, registry)
        await eventually(lambda: len(updates_of(rig, record.job_id)) == 2)
    finally:
        await consumer.stop()
    assert updates_of(rig, record.job_id) == [(2, "running"), (3, "completed")]
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.result == "real"
    for reason in ("undecodable", "routing_mismatch", "wrong_service"):
        assert sample(rig.metrics, "baton_events_dropped_total", reason=reason) == 1
    assert await queue_drained(rig)  # all acked: none came back when the consumer's channel closed


async def test_a_window_that_meets_redis_down_is_retried_whole_and_applied_once_redis_is_back(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    private = PrivateRedis()
    await asyncio.to_thread(private.start)
    client = aioredis.Redis.from_url(private.url, socket_connect_timeout=0.2)
    try:
        registry, record = HeldRegistry(client), make_record("t-private")
        consumer = await hold_first_window(rig, registry, record)
        try:
            await asyncio.to_thread(private.kill)
            await rig.publish_event(event_for(record, EventType.TASK_STATUS_UPDATE, 1, status="running"))
            progress = {"percentage": 50.0}
            await rig.publish_event(
                event_for(record, EventType.TASK_STATUS_UPDATE, 2, status="running", progress=progress)
            )
            await rig.publish_event(event_for(record, EventType.TASK_COMPLETED, 3, result={"ok": True}))
            await release_when_delivered(rig, registry)
            await eventually(lambda: len([r for r in caplog.records if "retrying" in r.getMessage()]) >= 2)
            assert rig.updates == []
            await asyncio.to_thread(private.start)  # append-only: the job is still there
            await eventually(lambda: len(rig.updates) == 4, within=15)
        finally:
            await consumer.stop()
        assert updates_of(rig, record.job_id) == [(2, "running"), (3, "running"), (4, "completed")]
        assert sample(rig.metrics, "baton_events_dropped_total", reason="stale") == 0  # came back in their order
        stored = await registry.get("t-private", record.job_id)
        assert stored is not None and stored.status == "completed"
        assert await queue_drained(rig)
    finally:
        await client.aclose()
        await asyncio.to_thread(private.cleanup)


async def test_a_stop_during_a_window_lets_it_finish_so_what_it_applied_is_announced_and_acked(
    rig: Rig, redis_client: aioredis.Redis, tenant: str
) -> None:
    """Cancelled once Redis had run the window's script, the updates were never announced, and the events,
    requeued by the channel's close, came back stale: a job's end that no live client ever heard of."""
    registry, record = HeldRegistry(redis_client, applied_first=True), make_record(tenant)
    await registry.create(record)
    consumer = rig.consumer(registry)
    await consumer.start()
    await rig.publish_event(event_for(record, EventType.TASK_COMPLETED, 1, result={"ok": True}))
    await asyncio.wait_for(registry.entered.wait(), 10)
    stopping = asyncio.create_task(consumer.stop())
    await asyncio.sleep(0.3)  # the stop is under way: the consumer cancelled, the window waiting for Redis
    assert not stopping.done()
    registry.go.set()
    await asyncio.wait_for(stopping, 10)
    assert updates_of(rig, record.job_id) == [(2, "completed")]
    assert await queue_drained(rig)  # acked before the channel closed, not redelivered


def handled(rig: Rig) -> float:
    """How many task status events were applied or dropped as stale."""
    applied = sample(rig.metrics, "baton_events_applied_total", event="task_status_update")
    return applied + sample(rig.metrics, "baton_events_dropped_total", reason="stale")


async def test_events_delivered_while_a_window_waits_to_be_retried_never_overtake_it(
    rig: Rig, redis_client: aioredis.Redis, tenant: str
) -> None:
    """Workers keep publishing while Redis is down. Requeued, a window went back to the queue while later
    events of its jobs were being delivered: those overtook it (1 to 5 of 100 jobs' first events dropped as
    stale, in 3 runs of 3)."""
    registry = RedisDownForWindows(redis_client, windows=3, delay=0.3)
    records = [make_record(tenant) for _ in range(100)]
    for record in records:
        await registry.create(record)
    consumer = rig.consumer(registry, prefetch=256)
    await consumer.start()
    try:
        for record in records:
            await rig.publish_event(event_for(record, EventType.TASK_STATUS_UPDATE, 1, status="running"))
        for record in reversed(records):  # while the windows fail and wait to be retried
            progress = {"percentage": 50.0}
            await rig.publish_event(
                event_for(record, EventType.TASK_STATUS_UPDATE, 2, status="running", progress=progress)
            )
            await asyncio.sleep(0.002)
        await eventually(lambda: handled(rig) == 200, within=30)
    finally:
        await consumer.stop()
    assert registry.calls > 3
    assert sample(rig.metrics, "baton_events_dropped_total", reason="stale") == 0
    for record in records:
        assert updates_of(rig, record.job_id) == [(2, "running"), (3, "running")]
    assert await queue_drained(rig)


async def test_windows_leave_nothing_unacked_and_nothing_redelivered(
    rig: Rig, redis_client: aioredis.Redis, tenant: str, unique: str
) -> None:
    """Multiple acks among individually acked heartbeats: every delivery settled exactly once."""
    records = [make_record(tenant) for _ in range(20)]
    for record in records:
        await rig.registry.create(record)
    consumer = rig.consumer(prefetch=32)
    await consumer.start()
    try:
        for seq in range(1, 11):
            for record in records:
                await rig.publish_event(event_for(record, EventType.TASK_STATUS_UPDATE, seq, status="running"))
            heartbeat = worker_heartbeat(f"svc-{unique}", [f"type-{unique}"])
            await rig.publish(f"_system.svc-{unique}.worker_heartbeat", CODECS.encode(heartbeat))
        await eventually(lambda: len(rig.updates) == 200, within=30)
    finally:
        await consumer.stop()
    await nothing_redelivered(rig)  # nothing was left unacked (the channel's close would have requeued it)
    assert len(rig.updates) == 200
    assert sample(rig.metrics, "baton_events_dropped_total", reason="stale") == 0
    for record in records:
        stored = await rig.registry.get(tenant, record.job_id)
        assert stored is not None and stored.seq == 11


async def test_step_events_of_a_window_are_heard_in_order_per_job_and_a_failure_fails_that_jobs_rest(
    rig: Rig, tenant: str
) -> None:
    """The workflow engine hears a window's step events after the registry call: one job's in order, and
    from a failed one on, that job's later ones are failed too (retried after it), other jobs' unharmed."""
    heard: list[tuple[str, int]] = []
    broken = make_record(tenant)
    working = make_record(tenant)

    async def engine(event: TaskEvent) -> None:
        heard.append((event.global_task_id, event.seq))
        if event.global_task_id == broken.job_id and event.seq == 2:
            raise RuntimeError("the engine failed")

    sink = EventSink(rig.registry, rig.bus, rig.metrics, on_step_event=engine)
    for record in (broken, working):
        await rig.registry.create(record)

    def step(record: JobRecord, seq: int, kind: EventType = EventType.TASK_STATUS_UPDATE) -> TaskEvent:
        return event_for(record, kind, seq, task_id=f"{record.job_id}:s:1", service="query", status="running")

    window = [step(broken, 1), step(working, 1), step(broken, 2), step(working, 2), step(broken, 3)]
    window.append(event_for(working, EventType.TASK_STATUS_UPDATE, 1, status="running"))  # not a step
    outcome = await sink.accept_many(window)
    assert [u is not None for u in outcome.updates] == [True] * 6
    assert sorted(outcome.failed) == [2, 4]  # broken's seq 2 and, behind it, its seq 3
    assert [seq for job, seq in heard if job == broken.job_id] == [1, 2]
    assert [seq for job, seq in heard if job == working.job_id] == [1, 2]


async def test_a_step_event_the_engine_failed_on_is_heard_again_with_its_jobs_later_ones_after_it(
    rig: Rig, tenant: str
) -> None:
    """Through the consumer: what the engine failed on is retried after the delay, its job's later step
    event behind it; everything else of the window is acked once, nothing twice (the channel stays open)."""
    record, other = make_record(tenant), make_record(tenant)
    for job in (record, other):
        await rig.registry.create(job)
    heard: list[tuple[str, int]] = []

    async def engine(event: TaskEvent) -> None:
        heard.append((event.global_task_id, event.seq))
        if heard == [(record.job_id, 1)]:
            raise RuntimeError("the engine failed")

    def step(job: JobRecord, seq: int) -> TaskEvent:
        return event_for(job, EventType.TASK_STATUS_UPDATE, seq, task_id=f"{job.job_id}:s:1", status="running")

    consumer = rig.consumer(on_step_event=engine)
    await consumer.start()
    try:
        for event in (step(record, 1), step(other, 1), step(record, 2)):
            await rig.publish_event(event)
        await eventually(lambda: [seq for job, seq in heard if job == record.job_id] == [1, 1, 2])
        await asyncio.sleep(0.5)  # a redelivery, had anything been left unacked or acked twice
    finally:
        await consumer.stop()
    assert [seq for job, seq in heard if job == other.job_id] == [1]
    assert [seq for job, seq in heard if job == record.job_id] == [1, 1, 2]
    assert updates_of(rig, record.job_id) == [(2, "queued"), (3, "queued")]  # applied once (a step moves no job)
    assert await queue_drained(rig)  # nothing came back when the channel closed
