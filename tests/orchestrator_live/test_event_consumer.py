"""EventConsumer end to end: TaskEvents on baton.events -> registry -> update bus listeners."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from orchestrator.jobs.event_sink import EventSink
from orchestrator.live.update_bus import UpdateBus
from orchestrator.store import keys
from orchestrator.store.registry import RedisTaskRegistry
from orchestrator.workflows.declared import DECLARED_KEY, DeclaredDefinitions, WorkflowDeclarations
from protocol.codec import JSON
from protocol.control import (
    BREAKERS_KIND,
    WORKFLOWS_KIND,
    BreakerStatus,
    CircuitBreakerReport,
    DeclaredWorkflow,
    WorkerHeartbeat,
    WorkflowAnnouncement,
)
from protocol.envelope import utc_now
from protocol.events import EventType
from protocol.topology import system_routing_key
from tests.orchestrator_live.event_rig import CODECS, Rig, sample
from tests.polling import eventually
from tests.records import event_for, make_record, worker_heartbeat


async def test_events_flow_to_the_registry_and_listeners(rig: Rig, tenant: str) -> None:
    record = make_record(tenant)
    await rig.registry.create(record)
    consumer = rig.consumer()
    await consumer.start()
    try:
        await rig.publish_event(event_for(record, EventType.TASK_STATUS_UPDATE, 1, status="running"))
        await rig.publish_event(
            event_for(record, EventType.TASK_STATUS_UPDATE, 2, status="running", progress={"percentage": 50.0}), JSON
        )
        await rig.publish_event(event_for(record, EventType.TASK_COMPLETED, 3, result={"ok": True}))
        await eventually(lambda: len(rig.updates) == 3)
    finally:
        await consumer.stop()
    assert [u.seq for u in rig.updates] == [2, 3, 4]
    assert rig.updates[-1].terminal and rig.updates[-1].event["data"] == {"result": {"ok": True}}
    stored = await rig.registry.get(tenant, record.job_id)
    assert stored is not None and stored.status == "completed" and stored.result == {"ok": True}
    labels = {"type": "llm_request", "status": "completed"}
    assert sample(rig.metrics, "baton_jobs_finished_total", **labels) == 1
    assert sample(rig.metrics, "baton_job_duration_seconds_count", **labels) == 1
    assert sample(rig.metrics, "baton_events_applied_total", event="task_status_update") == 2


async def test_each_jobs_events_stay_in_order_while_jobs_proceed_in_parallel(rig: Rig, tenant: str) -> None:
    records = [make_record(tenant) for _ in range(12)]
    for record in records:
        await rig.registry.create(record)
    consumer = rig.consumer()
    await consumer.start()
    try:
        for seq in range(1, 21):  # interleaved: job 0 seq 1, job 1 seq 1, ..., job 0 seq 2, ...
            for record in records:
                progress = {"percentage": float(seq)}
                await rig.publish_event(
                    event_for(record, EventType.TASK_STATUS_UPDATE, seq, status="running", progress=progress)
                )
        await eventually(lambda: len(rig.updates) == 12 * 20)
    finally:
        await consumer.stop()
    assert sample(rig.metrics, "baton_events_dropped_total", reason="stale") == 0  # none overtaken within a job
    for record in records:
        stored = await rig.registry.get(tenant, record.job_id)
        assert stored is not None and stored.seq == 21 and stored.progress == {"percentage": 20.0}


async def test_undecodable_messages_are_dropped_and_do_not_block(rig: Rig, tenant: str) -> None:
    record = make_record(tenant)
    await rig.registry.create(record)
    consumer = rig.consumer()
    await consumer.start()
    try:
        await rig.publish(f"{tenant}.query.task_completed", b"\xc1 not msgpack")
        await rig.publish(f"{tenant}.query.task_completed", b'{"event": "nope"}', JSON)
        await rig.publish(f"{tenant}.query.task_completed", b"<xml/>", "text/xml")
        await rig.publish_event(event_for(record, EventType.TASK_STATUS_UPDATE, 1, status="running"))
        await eventually(lambda: len(rig.updates) == 1)
    finally:
        await consumer.stop()
    assert sample(rig.metrics, "baton_events_dropped_total", reason="undecodable") == 3
    # Acked, not parked: nothing is left in the queue.
    queue = await rig.publisher.declare_queue(rig.queue_name, passive=True)
    assert queue.declaration_result.message_count == 0


async def test_stale_events_are_acked_and_counted(rig: Rig, tenant: str) -> None:
    record = make_record(tenant)
    await rig.registry.create(record)
    consumer = rig.consumer()
    await consumer.start()
    try:
        running = event_for(record, EventType.TASK_STATUS_UPDATE, 1, status="running")
        await rig.publish_event(running)
        await rig.publish_event(running)
        await rig.publish_event(event_for(make_record(tenant), EventType.TASK_STATUS_UPDATE, 1, status="running"))
        await eventually(lambda: sample(rig.metrics, "baton_events_dropped_total", reason="unknown_job") == 1)
    finally:
        await consumer.stop()
    assert sample(rig.metrics, "baton_events_dropped_total", reason="stale") == 1
    assert len(rig.updates) == 1


def heartbeat(service: str, job_type: str) -> WorkerHeartbeat:
    return worker_heartbeat(service, [job_type])


async def test_heartbeats_reach_the_directory(rig: Rig, unique: str) -> None:
    service = f"svc-{unique}"
    hb = heartbeat(service, f"type-{unique}")
    consumer = rig.consumer()
    await consumer.start()
    try:
        await rig.publish(system_routing_key(service, "worker_heartbeat"), CODECS.encode(hb))

        async def routed() -> bool:
            return await rig.directory.service_for(f"type-{unique}") == service

        await eventually(routed)
    finally:
        await consumer.stop()
    assert [w.worker_id for w in await rig.directory.live_workers(service)] == ["w-1"]


async def test_breaker_reports_of_known_workers_reach_the_directory(
    rig: Rig, redis_client: aioredis.Redis, unique: str
) -> None:
    service = f"svc-{unique}"
    hb = heartbeat(service, f"type-{unique}")
    open_breaker = BreakerStatus(target="http://up:80", state="open", failures=5, opened_at=utc_now(), opened_total=1)
    consumer = rig.consumer()
    await consumer.start()
    try:
        for worker_id in ("w-1", "w-unknown"):  # a worker never heard of gets nothing recorded
            report = CircuitBreakerReport(worker_id=worker_id, service=service, breakers=[open_breaker])
            await rig.publish(system_routing_key(service, BREAKERS_KIND), CODECS.encode(report))
        forged = CircuitBreakerReport(worker_id="w-1", service=service, breakers=[])
        await rig.publish(system_routing_key("other", BREAKERS_KIND), CODECS.encode(forged))
        await rig.publish(system_routing_key(service, "worker_heartbeat"), CODECS.encode(hb))
        report = CircuitBreakerReport(worker_id="w-1", service=service, breakers=[open_breaker])
        await rig.publish(system_routing_key(service, BREAKERS_KIND), CODECS.encode(report))

        async def reported() -> list[BreakerStatus]:
            return (await rig.directory.live_services([service]))[service].breakers

        await eventually(reported)
        assert await redis_client.hkeys(keys.breakers(service)) == [b"w-1"]
    finally:
        await consumer.stop()
        await redis_client.delete(keys.breakers(service))
    assert sample(rig.metrics, "baton_events_dropped_total", reason="routing_mismatch") == 1


async def test_workflow_announcements_reach_the_declared_workflows(
    rig: Rig, redis_client: aioredis.Redis, unique: str
) -> None:
    service, job_type = f"svc-{unique}", f"type-{unique}"
    hb = heartbeat(service, job_type)
    declared = DeclaredDefinitions(redis_client)

    def announcing(*workflows: tuple[str, str]) -> WorkflowAnnouncement:
        return WorkflowAnnouncement(
            worker_id="w-1",
            service=service,
            workflows=[
                DeclaredWorkflow(workflow_id=wid, definition={"name": wid, "steps": [{"name": "a", "type": t}]})
                for wid, t in workflows
            ],
        )

    consumer = rig.consumer(workflows=WorkflowDeclarations(declared, rig.directory))
    await consumer.start()
    try:
        await rig.publish(system_routing_key(service, "worker_heartbeat"), CODECS.encode(hb))
        forged = announcing((f"forged-{unique}", job_type))
        await rig.publish(system_routing_key("embedding", WORKFLOWS_KIND), CODECS.encode(forged))
        valid = announcing((f"wf-{unique}", job_type), (f"bad-{unique}", f"nobody-{unique}"))
        await rig.publish(
            system_routing_key(service, WORKFLOWS_KIND), CODECS.encode(valid, CODECS.for_content_type(JSON)), JSON
        )

        async def stored() -> bool:
            return await declared.get(f"wf-{unique}") is not None

        await eventually(stored)
        found = await declared.get(f"wf-{unique}")
        ours = [w.workflow_id for w in await declared.all() if unique in w.workflow_id]
    finally:
        await consumer.stop()
        await redis_client.hdel(DECLARED_KEY, f"wf-{unique}", f"bad-{unique}", f"forged-{unique}")
    assert found is not None and found.declared_by == service
    # The invalid one is refused; the one whose routing key names another service is dropped.
    assert ours == [f"wf-{unique}"]
    assert sample(rig.metrics, "baton_events_dropped_total", reason="routing_mismatch") == 1


async def test_redis_outage_holds_events_and_loses_nothing(
    rig: Rig, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    record = make_record(tenant)
    await rig.registry.create(record)
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    broken = rig.consumer(RedisTaskRegistry(dead))
    await broken.start()
    try:
        await rig.publish_event(event_for(record, EventType.TASK_STATUS_UPDATE, 1, status="running"))
        await asyncio.sleep(0.7)  # a few held-then-retried rounds, 0.2 s apart
    finally:
        await broken.stop()
        await dead.aclose()
    assert rig.updates == []
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert 1 <= len(retries) <= 5  # held between attempts, not spinning
    healthy = rig.consumer()
    await healthy.start()
    try:
        await eventually(lambda: len(rig.updates) == 1)
    finally:
        await healthy.stop()
    stored = await rig.registry.get(tenant, record.job_id)
    assert stored is not None and stored.status == "running"


async def test_an_event_whose_update_cannot_be_announced_stays_applied(
    rig: Rig, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The bus's PUBLISH is not awaited by the lane: its failure is logged, the event is applied once."""
    record = make_record(tenant)
    await rig.registry.create(record)
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    silent_bus = UpdateBus(dead, channel="test:task_updates:nowhere")
    sink = EventSink(rig.registry, silent_bus, rig.metrics)
    try:
        update = await sink.accept(event_for(record, EventType.TASK_COMPLETED, 1, result={"ok": True}))
        assert update is not None and update.terminal
        await eventually(lambda: any("not announced" in r.getMessage() for r in caplog.records))
    finally:
        await silent_bus.stop()
        await dead.aclose()
    stored = await rig.registry.get(tenant, record.job_id)
    assert stored is not None and stored.status == "completed" and stored.result == {"ok": True}


async def test_an_event_published_under_another_tenants_routing_key_is_refused(
    rig: Rig, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Topic permissions can bind a publisher to its tenant's routing keys: the body must agree with them."""
    record = make_record(tenant)
    await rig.registry.create(record)
    consumer = rig.consumer()
    await consumer.start()
    try:
        forged = event_for(record, EventType.TASK_COMPLETED, 1, result={"answer": "forged"})
        body = CODECS.encode(forged)
        for key in [f"x{tenant}.query.task_completed"] * 20 + [
            f"{tenant}.embedding.task_completed",  # another service's key
            f"{tenant}.query.task_status_update",  # another event's key
        ]:
            await rig.publish(key, body, correlation_id=record.job_id)
        await rig.publish_event(event_for(record, EventType.TASK_COMPLETED, 2, result={"answer": "real"}))
        await eventually(lambda: len(rig.updates) == 1)
    finally:
        await consumer.stop()
    assert sample(rig.metrics, "baton_events_dropped_total", reason="routing_mismatch") == 22
    stored = await rig.registry.get(tenant, record.job_id)
    assert stored is not None and stored.result == {"answer": "real"}
    refused = [r for r in caplog.records if "routing key" in r.getMessage()]
    assert len(refused) == 1  # once per burst
    queue = await rig.publisher.declare_queue(rig.queue_name, passive=True)
    assert queue.declaration_result.message_count == 0  # acked, not requeued


async def test_events_the_registry_refuses_are_counted_and_logged_once_per_burst(
    rig: Rig, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    record = make_record(tenant, job_type="embedding_request", service="embedding")
    await rig.registry.create(record)
    consumer = rig.consumer()
    await consumer.start()
    try:
        for _ in range(30):
            await rig.publish_event(event_for(record, EventType.TASK_COMPLETED, 1, service="query", result="forged"))
        await eventually(lambda: sample(rig.metrics, "baton_events_dropped_total", reason="wrong_service") == 30)
    finally:
        await consumer.stop()
    assert rig.updates == []
    assert len([r for r in caplog.records if "wrong_service" in r.getMessage()]) == 1


async def test_a_body_nested_too_deep_to_decode_is_dropped_not_retried(
    rig: Rig, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    record = make_record(tenant)
    await rig.registry.create(record)
    consumer = rig.consumer()
    await consumer.start()
    try:
        await rig.publish(f"{tenant}.query.task_completed", b"[" * 100_000 + b"]" * 100_000, JSON)
        # A well-formed event whose result nests past what every encoder on the way handles.
        deep: list[Any] = []
        for _ in range(900):
            deep = [deep]
        completed = event_for(record, EventType.TASK_COMPLETED, 1).model_dump(mode="json")
        completed["data"] = {"result": deep}
        await rig.publish(f"{tenant}.query.task_completed", msgpack.packb(completed))
        await rig.publish_event(event_for(record, EventType.TASK_STATUS_UPDATE, 1, status="running"))
        await eventually(lambda: len(rig.updates) == 1)
        await eventually(lambda: sample(rig.metrics, "baton_events_dropped_total", reason="undecodable") == 2)
    finally:
        await consumer.stop()
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    queue = await rig.publisher.declare_queue(rig.queue_name, passive=True)
    assert queue.declaration_result.message_count == 0


async def test_an_event_over_the_message_cap_is_dropped_and_stores_nothing(rig: Rig, tenant: str) -> None:
    """What one event can store (result, progress, error) is bounded by the message cap (4 MiB by default)."""
    record = make_record(tenant)
    await rig.registry.create(record)
    consumer = rig.consumer()
    await consumer.start()
    try:
        huge = event_for(record, EventType.TASK_COMPLETED, 1, result="x" * (4 * 1024 * 1024))
        await rig.publish_event(huge)
        progress = {"percentage": 1.0, "custom_data": {"blob": "y" * (4 * 1024 * 1024)}}
        await rig.publish_event(event_for(record, EventType.TASK_STATUS_UPDATE, 2, status="running", progress=progress))
        await eventually(lambda: sample(rig.metrics, "baton_events_dropped_total", reason="undecodable") == 2)
    finally:
        await consumer.stop()
    stored = await rig.registry.get(tenant, record.job_id)
    assert stored is not None and stored.status == "queued" and stored.result is None and stored.progress is None
