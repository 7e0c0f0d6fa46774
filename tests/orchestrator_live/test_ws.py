"""The WebSocket routes and hub on a real aiohttp server, with the real registry and update bus."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import WSCloseCode, WSMsgType

from orchestrator.live.hub import SLOW_CONSUMER_CODE
from orchestrator.models import JobUpdate, created_update
from orchestrator.store import keys
from protocol.envelope import new_id
from protocol.events import EventType
from tests.orchestrator_live.ws_rig import (
    ALL_JOBS_REMEMBERED,
    SERVICE,
    SERVICE_TOKEN,
    Server,
    closed_with,
    nothing_more,
    receive,
)
from tests.records import event_for, make_record


async def test_auth_by_header_query_and_first_message(server: Server) -> None:
    ws = await server.connect()
    await ws.close()
    ws = await server.client.ws_connect(f"/ws/task_updates?token={server.key}")
    assert (await receive(ws))["tenant_id"] == server.tenant
    await ws.close()
    ws = await server.client.ws_connect("/ws/task_updates")
    await ws.send_json({"type": "auth", "token": server.other_key})
    hello = await receive(ws)
    assert hello["type"] == "connection_established" and hello["tenant_id"] == server.other
    assert hello["connection_id"]
    await ws.close()


async def test_bad_credentials_are_refused(server: Server) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await server.client.ws_connect("/ws/task_updates", headers={"Authorization": "Bearer wrong"})
    assert refused.value.status == 401
    ws = await server.client.ws_connect("/ws/task_updates")
    await ws.send_json({"type": "auth", "token": "wrong"})
    assert await closed_with(ws) == 4401
    silent = await server.client.ws_connect("/ws/task_updates")
    assert await closed_with(silent) == 4401


async def test_snapshot_then_live_in_order(server: Server) -> None:
    record = await server.job()
    await server.emit(record, EventType.TASK_STATUS_UPDATE, 1, status="running")
    ws = await server.connect()
    await ws.send_json({"type": "subscribe", "job_ids": [record.job_id]})
    snapshot = await receive(ws)
    assert snapshot["type"] == "job_snapshot" and snapshot["seq"] == 2 and snapshot["job_id"] == record.job_id
    assert snapshot["job"]["status"] == "running" and snapshot["job"]["job_id"] == record.job_id
    await server.emit(record, EventType.TASK_COMPLETED, 2, result="done")
    event = await receive(ws)
    assert event["event"] == "task_completed" and event["seq"] == 3 and event["data"] == {"result": "done"}
    await nothing_more(ws)


@pytest.mark.parametrize("read_first", [True, False], ids=["events-after-read", "events-before-read"])
async def test_updates_racing_the_snapshot_are_neither_lost_nor_repeated(server: Server, read_first: bool) -> None:
    record = await server.job()
    ws = await server.connect()
    server.registry.delay_after, server.registry.delay_before = (0.4, 0.0) if read_first else (0.0, 0.4)
    await ws.send_json({"type": "subscribe", "job_ids": [record.job_id]})
    await asyncio.sleep(0.1)  # the snapshot read is under way
    await server.emit(record, EventType.TASK_STATUS_UPDATE, 1, status="running")
    await server.emit(record, EventType.TASK_STATUS_UPDATE, 2, status="running", progress={"percentage": 10.0})
    server.registry.delay_after = server.registry.delay_before = 0.0
    snapshot = await receive(ws)
    assert snapshot["type"] == "job_snapshot"
    seqs = [snapshot["seq"]]
    while seqs[-1] < 3:
        seqs.append((await receive(ws))["seq"])
    assert seqs == ([1, 2, 3] if read_first else [3])
    await server.emit(record, EventType.TASK_COMPLETED, 3, result=1)
    assert (await receive(ws))["seq"] == 4
    await nothing_more(ws)


async def test_all_subscription_and_tenant_isolation(server: Server) -> None:
    mine = await server.connect()
    theirs = await server.connect(key=server.other_key)
    await mine.send_json({"type": "subscribe", "all": True})
    await theirs.send_json({"type": "subscribe", "all": True})
    await nothing_more(mine)
    await nothing_more(theirs)
    record = await server.job()
    await server.emit(record, EventType.TASK_STATUS_UPDATE, 1, status="running")
    assert (await receive(mine))["global_task_id"] == record.job_id

    await theirs.send_json({"type": "subscribe", "job_ids": [record.job_id]})
    assert await receive(theirs) == {"type": "error", "error": "not_found", "detail": f"job {record.job_id} not found"}
    await theirs.send_json({"type": "cancel_job", "job_id": record.job_id})
    assert (await receive(theirs))["status"] == "not_found"
    await nothing_more(theirs)  # their "all" saw nothing of this tenant

    sneaky = await server.client.ws_connect(
        f"/ws/jobs/{record.job_id}", headers={"Authorization": f"Bearer {server.other_key}"}
    )
    assert (await receive(sneaky))["type"] == "connection_established"
    assert await closed_with(sneaky) == 4404


async def test_job_routes_subscribe_to_their_job(server: Server) -> None:
    record = await server.job()
    for path in (f"/ws/jobs/{record.job_id}", f"/ws/{record.job_id}"):
        ws = await server.connect(path)
        snapshot = await receive(ws)
        assert snapshot["type"] == "job_snapshot" and snapshot["job"]["status"] == "queued"
        await ws.close()
    missing = await server.connect("/ws/jobs/no-such-job")
    assert await closed_with(missing) == 4404


async def test_cancel_over_the_socket(server: Server) -> None:
    record = await server.job()
    ws = await server.connect()
    await ws.send_json({"type": "subscribe", "job_ids": [record.job_id]})
    assert (await receive(ws))["type"] == "job_snapshot"
    await ws.send_json({"type": "cancel_job", "job_id": record.job_id})
    replies = [await receive(ws), await receive(ws)]
    assert {
        "type": "cancel_result",
        "job_id": record.job_id,
        "status": "cancelled",
        "job_status": "cancelled",
    } in replies
    event = next(r for r in replies if r.get("event"))
    assert event["event"] == "task_cancelled" and event["seq"] == 2
    await ws.send_json({"type": "cancel_job", "job_id": record.job_id})
    assert (await receive(ws))["status"] == "already_terminal"


async def test_bad_messages_get_errors_and_the_socket_stays(server: Server) -> None:
    ws = await server.connect()
    await ws.send_str("{not json")
    assert (await receive(ws))["error"] == "bad_message"
    await ws.send_str('{"type": "ping", "n": NaN}')  # Python's json would take it; JSON does not
    refused = await receive(ws)
    assert refused["error"] == "bad_message" and "NaN" in refused["detail"]
    await ws.send_json({"type": "dance"})
    assert (await receive(ws))["error"] == "unknown_type"
    await ws.send_json([1, 2])
    assert (await receive(ws))["error"] == "bad_message"
    await ws.send_json({"type": "subscribe", "job_ids": "not-a-list"})
    assert (await receive(ws))["error"] == "bad_message"
    await ws.send_bytes(b"\x00")
    assert (await receive(ws))["error"] == "bad_message"
    await nothing_more(ws)


async def test_a_service_publishes_events_over_the_socket(server: Server) -> None:
    record = await server.job()
    client = await server.connect()
    await client.send_json({"type": "subscribe", "job_ids": [record.job_id]})
    assert (await receive(client))["type"] == "job_snapshot"
    service = await server.client.ws_connect("/ws/task_updates", headers={"Authorization": f"Bearer {SERVICE_TOKEN}"})
    assert (await receive(service))["role"] == "service"
    event = event_for(record, EventType.TASK_STATUS_UPDATE, 1, status="running")
    await service.send_str(event.model_dump_json())
    assert await receive(service) == {
        "type": "event_ack",
        "task_id": record.root_task_id,
        "seq": 1,
        "applied": True,
        "job_seq": 2,
    }
    assert (await receive(client))["seq"] == 2
    await service.send_str(event.model_dump_json())
    assert (await receive(service))["applied"] is False
    await service.send_json({"event": "task_completed"})
    assert (await receive(service))["error"] == "invalid_event"
    await service.send_json({"type": "subscribe", "all": True})
    assert (await receive(service))["error"] == "forbidden"


async def test_a_service_token_reports_for_its_own_service_only(server: Server) -> None:
    record = await server.job()
    service = await server.client.ws_connect("/ws/task_updates", headers={"Authorization": f"Bearer {SERVICE_TOKEN}"})
    assert (await receive(service))["role"] == "service"
    forged = event_for(record, EventType.TASK_COMPLETED, 1, service="embedding", result={"made": "up"})
    await service.send_str(forged.model_dump_json())
    refusal = await receive(service)
    assert refusal["type"] == "error" and refusal["error"] == "forbidden"
    assert "'query'" in refusal["detail"]
    stored = await server.registry.get(record.tenant_id, record.job_id)
    assert stored is not None and stored.status == "queued" and stored.result is None
    # Claiming its own service for another service's job does not help: the registry holds each
    # task to the service it was routed to.
    embedding_job = make_record(server.tenant, job_type="embedding_request", service="embedding")
    await server.registry.create(embedding_job)
    claimed = event_for(embedding_job, EventType.TASK_COMPLETED, 1, service=SERVICE, result={"made": "up"})
    await service.send_str(claimed.model_dump_json())
    ack = await receive(service)
    assert ack["type"] == "event_ack" and ack["applied"] is False
    untouched = await server.registry.get(embedding_job.tenant_id, embedding_job.job_id)
    assert untouched is not None and untouched.status == "queued" and untouched.result is None


async def test_a_slow_client_is_cut_off_without_slowing_a_fast_one(server: Server) -> None:
    fast = await server.connect()
    slow = await server.connect()
    for ws in (fast, slow):
        await ws.send_json({"type": "subscribe", "all": True})
        await nothing_more(ws) if ws is fast else await asyncio.sleep(0.1)
    padding = "x" * 512 * 1024
    started = time.monotonic()
    sent = 0
    # The slow client never reads: once the socket buffers fill, its 8-message queue overflows.
    while server.metrics.registry.get_sample_value("baton_websocket_clients_dropped_total") == 0:
        sent += 1
        assert sent < 400, "the slow client was never cut off"
        event = {"event": "task_status_update", "global_task_id": "j", "seq": sent, "data": {"pad": padding}}
        server.parts.hub.dispatch(
            JobUpdate(tenant_id=server.tenant, job_id="j", seq=sent, status="running", terminal=False, event=event)
        )
        assert (await receive(fast))["seq"] == sent
    assert time.monotonic() - started < 20
    await nothing_more(fast)
    assert await closed_with(slow, skip_text=True) == SLOW_CONSUMER_CODE


async def test_shutdown_closes_sockets_going_away(server: Server) -> None:
    ws = await server.connect()
    await server.parts.hub.close_all()
    assert await closed_with(ws) == WSCloseCode.GOING_AWAY


async def test_an_update_older_than_the_terminal_one_never_reaches_all_subscribers(server: Server) -> None:
    # The API's "queued" announcement (seq 1) can arrive after a fast worker's terminal event.
    watcher = await server.connect()
    await watcher.send_json({"type": "subscribe", "all": True})
    await nothing_more(watcher)

    def update(seq: int, status: str, terminal: bool) -> JobUpdate:
        event = {"event": "task_status_update", "global_task_id": "late", "seq": seq, "data": {"status": status}}
        return JobUpdate(tenant_id=server.tenant, job_id="late", seq=seq, status=status, terminal=terminal, event=event)

    server.parts.hub.dispatch(update(3, "completed", True))
    server.parts.hub.dispatch(update(1, "queued", False))
    server.parts.hub.dispatch(update(3, "completed", True))
    assert (await receive(watcher))["seq"] == 3
    await nothing_more(watcher)


async def test_a_client_following_all_remembers_only_its_most_recent_jobs(server: Server) -> None:
    ws = await server.connect()
    subscribed = await server.job()
    await ws.send_json({"type": "subscribe", "job_ids": [subscribed.job_id]})
    assert (await receive(ws))["type"] == "job_snapshot"
    await ws.send_json({"type": "subscribe", "all": True})
    await nothing_more(ws)
    hub = server.parts.hub
    [conn] = hub._connections
    # Jobs whose terminal update never reaches this replica: each would otherwise stay for good.
    others = [new_id() for _ in range(ALL_JOBS_REMEMBERED + 2)]
    for job_id in others:
        event = {"event": "task_status_update", "global_task_id": job_id, "seq": 2}
        hub.dispatch(JobUpdate(server.tenant, job_id, seq=2, status="running", terminal=False, event=event))
        assert (await receive(ws))["global_task_id"] == job_id
    assert list(conn._all_seq) == others[-ALL_JOBS_REMEMBERED:]
    assert subscribed.job_id in conn._last_seq  # a job subscribed to by id is never pushed out


async def test_an_idle_client_holds_no_task_and_no_buffer(server: Server) -> None:
    record = await server.job()
    ws = await server.connect(f"/ws/jobs/{record.job_id}")
    assert (await receive(ws))["type"] == "job_snapshot"
    await nothing_more(ws)
    [conn] = server.parts.hub._connections
    # Thousands of clients wait like this for one job's events: the writer and its queue exist only
    # while there is something to send, and the connection has no per-instance __dict__.
    assert conn._flusher is None and conn._outbox is None and conn._held is None and conn._all_seq is None
    assert not hasattr(conn, "__dict__")
    await server.emit(record, EventType.TASK_COMPLETED, 1, result="done")
    assert (await receive(ws))["seq"] == 2
    await nothing_more(ws)
    assert conn._flusher is None and conn._outbox is None


@pytest.mark.parametrize("server", [{"heartbeat": 0.4}], indirect=True)
async def test_the_heartbeat_drops_a_peer_that_never_answers_pings(server: Server) -> None:
    live = await server.connect()
    answering = asyncio.create_task(receive(live))  # aiohttp's client answers pings while it waits
    dead = await server.client.ws_connect(
        "/ws/task_updates", headers={"Authorization": f"Bearer {server.key}"}, autoping=False
    )
    assert (await receive(dead))["type"] == "connection_established"
    started = time.monotonic()
    assert (await dead.receive(timeout=5)).type is WSMsgType.PING  # pinged after 0.4 s of silence
    while (msg := await dead.receive(timeout=5)).type is WSMsgType.PING:
        pass
    assert msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR)  # aborted: a dead peer gets no close handshake
    assert time.monotonic() - started < 3
    await asyncio.sleep(0.1)
    assert server.metrics.registry.get_sample_value("baton_websocket_connections") == 1
    await asyncio.sleep(1.0)  # several more heartbeats: the client that answers stays
    assert not answering.done()
    await live.send_json({"type": "ping"})
    assert await answering == {"type": "pong"}
    await live.close()
    await asyncio.sleep(0.5)
    assert server.parts.hub._heartbeats is None  # no clients, no heartbeat task
    again = await server.client.ws_connect(
        "/ws/task_updates", headers={"Authorization": f"Bearer {server.key}"}, autoping=False
    )
    assert (await receive(again))["type"] == "connection_established"
    assert (await again.receive(timeout=5)).type is WSMsgType.PING  # the next client starts it again
    await again.close()


async def test_protocol_pings_from_the_client_get_pongs_also_before_auth(server: Server) -> None:
    ws = await server.client.ws_connect("/ws/task_updates", autoping=False)
    await ws.ping(b"before auth")
    pong = await ws.receive(timeout=5)
    assert pong.type is WSMsgType.PONG and pong.data == b"before auth"
    await ws.send_json({"type": "auth", "token": server.key})
    assert (await receive(ws))["type"] == "connection_established"
    await ws.ping(b"after")
    pong = await ws.receive(timeout=5)
    assert pong.type is WSMsgType.PONG and pong.data == b"after"
    await ws.close()


async def events_until_pong(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    """Every message sent before the answer to a ping sent now."""
    await ws.send_json({"type": "ping"})
    got = []
    while (body := await receive(ws)) != {"type": "pong"}:
        got.append(body)
    return got


async def test_resume_after_a_disconnect_gets_exactly_the_missed_events(server: Server) -> None:
    record = await server.job()
    ws = await server.connect()
    await ws.send_json({"type": "subscribe", "job_ids": [record.job_id]})
    assert (await receive(ws))["type"] == "job_snapshot"
    await server.emit(record, EventType.TASK_STATUS_UPDATE, 1, status="running")
    seen = await receive(ws)
    assert seen["seq"] == 2 and seen["job_status"] == "running"
    await ws.close()
    missed = [
        await server.emit(record, EventType.TASK_STATUS_UPDATE, 2, status="running", progress={"percentage": 50.0}),
        await server.emit(record, EventType.TASK_COMPLETED, 3, task_id="child", service="tool", result=1),
    ]
    ws = await server.connect()
    await ws.send_json({"type": "subscribe", "job_ids": [record.job_id], "since": {record.job_id: seen["seq"]}})
    assert await events_until_pong(ws) == [update.event for update in missed]
    assert missed[1].event["event"] == "task_completed" and missed[1].event["job_status"] == "running"
    done = await server.emit(record, EventType.TASK_COMPLETED, 4, result="done")
    assert await receive(ws) == done.event and done.event["job_status"] == "completed"
    # Caught up already: nothing again, nothing missing.
    await ws.send_json({"type": "subscribe", "job_ids": [record.job_id], "since": {record.job_id: done.seq}})
    await nothing_more(ws)


async def test_resume_where_the_history_falls_short_gets_the_snapshot(
    server: Server, redis_client: aioredis.Redis
) -> None:
    trimmed, long = await server.job(), await server.job()
    for seq in range(1, 4):
        await server.emit(trimmed, EventType.TASK_STATUS_UPDATE, seq, status="running")
    await redis_client.ltrim(keys.job_events(server.tenant, trimmed.job_id), -2, -1)  # keeps seqs 3 and 4
    for seq in range(1, 10):  # more events than the client's outbox takes (8)
        await server.emit(long, EventType.TASK_STATUS_UPDATE, seq, status="running")
    ws = await server.connect()
    await ws.send_json({"type": "subscribe", "job_ids": [trimmed.job_id], "since": {trimmed.job_id: 1}})
    snapshot = await receive(ws)
    assert snapshot["type"] == "job_snapshot" and snapshot["seq"] == 4 and snapshot["job"]["status"] == "running"
    await ws.send_json({"type": "subscribe", "job_ids": [trimmed.job_id], "since": {trimmed.job_id: 2}})
    assert [event["seq"] for event in await events_until_pong(ws)] == []  # had them: the snapshot said 4
    await ws.send_json({"type": "subscribe", "job_ids": [long.job_id], "since": {long.job_id: 0}})
    snapshot = await receive(ws)
    assert snapshot["type"] == "job_snapshot" and snapshot["seq"] == 10
    await nothing_more(ws)


async def test_all_with_since_resumes_the_jobs_the_client_knows(server: Server) -> None:
    known = await server.job()
    missed = [await server.emit(known, EventType.TASK_STATUS_UPDATE, seq, status="running") for seq in (1, 2)]
    ws = await server.connect()
    await ws.send_json({"type": "subscribe", "all": True, "since": {known.job_id: 1}})
    assert await events_until_pong(ws) == [update.event for update in missed]
    later = await server.emit(known, EventType.TASK_STATUS_UPDATE, 3, status="running")
    assert await receive(ws) == later.event  # once, through "all"
    await nothing_more(ws)
    await ws.send_json({"type": "unsubscribe", "all": True})
    await server.emit(known, EventType.TASK_STATUS_UPDATE, 4, status="running")
    await nothing_more(ws)  # it was followed through "all" only


async def test_one_job_sockets_resume_with_since_in_the_url(server: Server) -> None:
    record = await server.job()
    updates = [await server.emit(record, EventType.TASK_STATUS_UPDATE, seq, status="running") for seq in (1, 2)]
    for path in (f"/ws/jobs/{record.job_id}", f"/ws/{record.job_id}"):
        ws = await server.connect(f"{path}?since=2")
        assert await events_until_pong(ws) == [updates[1].event]
        await ws.close()
    ws = await server.connect(f"/ws/jobs/{record.job_id}?since=0")
    assert await events_until_pong(ws) == [
        {"seq": 1, "job_status": "queued", **created_update(record).event},
        *(update.event for update in updates),
    ]
    await ws.close()
    refusals = [("abc", "bad_message"), ("-1", "bad_message"), ("1.5", "bad_message"), ("99", "since_beyond_job")]
    for seq, (since, error) in enumerate(refusals, 3):
        ws = await server.connect(f"/ws/jobs/{record.job_id}?since={since}")
        refused = await receive(ws)
        assert refused["type"] == "error" and refused["error"] == error, refused
        await nothing_more(ws)  # open, and subscribed to nothing
        await server.emit(record, EventType.TASK_STATUS_UPDATE, seq, status="running")
        await nothing_more(ws)
        await ws.close()


@pytest.mark.parametrize(
    ("since", "detail"),
    [
        ([1], "must be an object"),
        ({"JOB": -1}, "integer seq"),
        ({"JOB": 1.5}, "integer seq"),
        ({"JOB": "1"}, "integer seq"),
        ({"JOB": True}, "integer seq"),
        ({"JOB": 2**53}, "integer seq"),
        ({"other-job": 1}, 'not in "job_ids"'),
        ({f"j{i}": 0 for i in range(1001)}, "at most 1000 jobs"),
    ],
)
async def test_a_bad_since_gets_an_error_and_the_socket_stays(server: Server, since: Any, detail: str) -> None:
    record = await server.job()
    if isinstance(since, dict) and "JOB" in since:
        since = {record.job_id: since["JOB"]}
    ws = await server.connect()
    await ws.send_json({"type": "subscribe", "job_ids": [record.job_id], "since": since})
    refused = await receive(ws)
    assert refused["type"] == "error" and refused["error"] == "bad_message" and detail in refused["detail"]
    await server.emit(record, EventType.TASK_STATUS_UPDATE, 1, status="running")
    await nothing_more(ws)  # nothing subscribed


async def test_since_past_the_job_is_refused_for_that_job_only(server: Server) -> None:
    ahead, fine = await server.job(), await server.job()
    ws = await server.connect()
    await ws.send_json(
        {"type": "subscribe", "job_ids": [ahead.job_id, fine.job_id], "since": {ahead.job_id: 5, fine.job_id: 1}}
    )
    refused = await receive(ws)
    assert refused["type"] == "error" and refused["error"] == "since_beyond_job" and refused["job_id"] == ahead.job_id
    await server.emit(ahead, EventType.TASK_STATUS_UPDATE, 1, status="running")
    update = await server.emit(fine, EventType.TASK_STATUS_UPDATE, 1, status="running")
    assert await events_until_pong(ws) == [update.event]
