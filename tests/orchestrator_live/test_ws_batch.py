"""Batched frames (`?batch=1`): what waits in a client's outbox goes out as one {"type": "events"} frame."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import WSMsgType

from orchestrator.live.hub import BATCH_FRAME_BYTES, SLOW_CONSUMER_CODE
from orchestrator.models import JobUpdate
from protocol.codec import compact_json
from protocol.envelope import new_id
from protocol.events import EventType
from tests.api_server import serve_api
from tests.orchestrator_live.ws_rig import Server, closed_with, receive
from tests.workers.helpers import running
from workers import TaskContext, Worker

BIG_BUFFER = {"client_buffer": 1000}


def update(tenant_id: str, job_id: str, seq: int, **data: Any) -> JobUpdate:
    event = {"event": "task_status_update", "global_task_id": job_id, "seq": seq, "data": data}
    return JobUpdate(tenant_id=tenant_id, job_id=job_id, seq=seq, status="running", terminal=False, event=event)


async def frames_until_pong(ws: aiohttp.ClientWebSocketResponse) -> list[list[dict[str, Any]]]:
    """The messages of each frame sent before the answer to a ping sent now (a lone message is a frame of one);
    the pong itself is left out, and so is the frame it came in when it came alone."""
    await ws.send_json({"type": "ping"})
    frames: list[list[dict[str, Any]]] = []
    while True:
        msg = await ws.receive(timeout=10)
        assert msg.type is WSMsgType.TEXT, msg
        body = json.loads(msg.data)
        messages = body["events"] if body.get("type") == "events" else [body]
        if body.get("type") == "events":
            assert len(messages) >= 2, "a message that waits alone comes alone"
        rest = [message for message in messages if message != {"type": "pong"}]
        if rest:
            frames.append(rest)
        if len(rest) < len(messages):
            assert messages[-1] == {"type": "pong"}, "the pong comes after everything sent before it"
            return frames


async def one_by_one_until_pong(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    """Every message sent before the answer to a ping sent now, each in a frame of its own."""
    await ws.send_json({"type": "ping"})
    got = []
    while (body := await receive(ws)) != {"type": "pong"}:
        assert body.get("type") != "events"
        got.append(body)
    return got


async def batching(server: Server, path: str = "/ws/task_updates") -> aiohttp.ClientWebSocketResponse:
    ws = await server.connect(f"{path}?batch=1")
    await ws.send_json({"type": "subscribe", "all": True})
    assert await frames_until_pong(ws) == []
    return ws


async def one_by_one(server: Server) -> aiohttp.ClientWebSocketResponse:
    ws = await server.connect()
    await ws.send_json({"type": "subscribe", "all": True})
    assert await one_by_one_until_pong(ws) == []
    return ws


@pytest.mark.parametrize("server", [BIG_BUFFER], indirect=True)
async def test_a_window_reaches_a_batching_client_as_one_frame_and_others_one_by_one(server: Server) -> None:
    batched, single = await batching(server), await one_by_one(server)
    job_a, job_b = new_id(), new_id()
    window = [update(server.tenant, job_id, seq) for seq in (2, 3, 4) for job_id in (job_a, job_b)]
    sent_before = server.metrics.registry.get_sample_value("baton_websocket_messages_sent_total")
    await server.parts.bus.announce_many(window)  # the event consumer's one step per delivery window
    assert await frames_until_pong(batched) == [[u.event for u in window]]
    assert await one_by_one_until_pong(single) == [u.event for u in window]  # one per frame, as without batching
    # The metric counts messages, not frames: 6 events and a pong to each client.
    sent = server.metrics.registry.get_sample_value("baton_websocket_messages_sent_total")
    assert sent_before is not None and sent == sent_before + 2 * (len(window) + 1)


@pytest.mark.parametrize("server", [BIG_BUFFER], indirect=True)
async def test_a_burst_of_500_events_is_neither_lost_nor_duplicated_nor_reordered(server: Server) -> None:
    batched, single = await batching(server), await one_by_one(server)
    jobs = [new_id() for _ in range(20)]
    updates = [update(server.tenant, job_id, seq) for seq in range(2, 27) for job_id in jobs]
    assert len(updates) == 500
    rng = random.Random(14)
    windows, start = 0, 0
    while start < len(updates):
        size = rng.randint(1, 64)
        server.parts.bus.announce_many(updates[start : start + size])
        windows += 1
        start += size
        if rng.random() < 0.5:
            await asyncio.sleep(0)  # sometimes the flusher writes between windows, sometimes not
    frames = await frames_until_pong(batched)
    got = [message for frame in frames for message in frame]
    assert got == [u.event for u in updates]
    assert len(frames) <= windows < len(updates)
    assert await one_by_one_until_pong(single) == [u.event for u in updates]


@pytest.mark.parametrize("server", [BIG_BUFFER], indirect=True)
async def test_errors_and_pongs_ride_in_order_with_the_events(server: Server) -> None:
    record = await server.job()
    ws = await server.connect(f"/ws/jobs/{record.job_id}?batch=1")
    snapshot = await receive(ws)
    assert snapshot["type"] == "job_snapshot" and snapshot["seq"] == 1
    [conn] = server.parts.hub._connections
    running = await server.emit(record, EventType.TASK_STATUS_UPDATE, 1, status="running")
    # Queued in one step: an error between two events goes out in their frame, in its place.
    server.parts.hub.dispatch(update(server.tenant, record.job_id, 3, n=3))
    conn.send({"type": "error", "error": "bad_message", "detail": "in between"})
    server.parts.hub.dispatch(update(server.tenant, record.job_id, 4, n=4))
    frames = await frames_until_pong(ws)
    messages = [message for frame in frames for message in frame]
    assert messages == [
        running.event,
        update(server.tenant, record.job_id, 3, n=3).event,
        {"type": "error", "error": "bad_message", "detail": "in between"},
        update(server.tenant, record.job_id, 4, n=4).event,
    ]
    assert len(frames) < len(messages)


@pytest.mark.parametrize("server", [BIG_BUFFER], indirect=True)
async def test_a_batched_frame_stays_under_its_size_cap(server: Server) -> None:
    ws = await batching(server)
    job_id = new_id()
    pad = "x" * (BATCH_FRAME_BYTES // 3 - 200)  # three fit in a frame, four do not
    window = [update(server.tenant, job_id, seq, pad=pad) for seq in range(2, 7)]
    huge = update(server.tenant, job_id, 7, pad="y" * (BATCH_FRAME_BYTES + 10))
    server.parts.bus.announce_many([*window, huge, update(server.tenant, job_id, 8)])
    frames = await frames_until_pong(ws)
    assert [len(frame) for frame in frames] == [3, 2, 1, 1]  # the huge one alone, then the last
    assert [m["seq"] for frame in frames for m in frame] == list(range(2, 9))


def padded(tenant_id: str, job_id: str, seq: int, size: int, pad: str) -> JobUpdate:
    """An update whose message is about `size` bytes of UTF-8 (at most a `pad` character less), padded with `pad`."""
    bare = len(compact_json(update(tenant_id, job_id, seq, pad="").event).encode())
    return update(tenant_id, job_id, seq, pad=pad * ((size - bare) // len(pad.encode())))


@pytest.mark.parametrize("server", [BIG_BUFFER], indirect=True)
@pytest.mark.parametrize("pad", ["x", "\u20ac"], ids=["ascii", "three-byte"])
async def test_no_batched_frame_is_over_the_cap_in_bytes_framing_included(server: Server, pad: str) -> None:
    """Two messages that fit the cap together, but not with the frame's head, comma and tail (and, in
    three-byte characters, take a third of it in characters): the first must go alone. A client with a 1 MiB
    frame limit (the `websockets` library's default) would be cut off by the frame of both."""
    ws = await batching(server)
    job_id = new_id()
    window = [padded(server.tenant, job_id, seq, (BATCH_FRAME_BYTES - 12) // 2, pad) for seq in (2, 3)]
    window.append(update(server.tenant, job_id, 4))  # fits with the second
    assert BATCH_FRAME_BYTES - 30 < sum(len(compact_json(u.event).encode()) for u in window[:2]) <= BATCH_FRAME_BYTES
    server.parts.bus.announce_many(window)
    first, second = await ws.receive(timeout=10), await ws.receive(timeout=10)
    assert json.loads(first.data) == window[0].event
    assert json.loads(second.data) == {"type": "events", "events": [window[1].event, window[2].event]}
    assert len(second.data.encode()) <= BATCH_FRAME_BYTES
    assert await frames_until_pong(ws) == []


@pytest.mark.parametrize("server", [{"client_buffer": 8}], indirect=True)
async def test_the_slow_consumer_bound_counts_messages_not_frames(server: Server) -> None:
    ws = await batching(server)
    job_id = new_id()
    # One being written and 8 waiting: the outbox's 8, all in one frame.
    server.parts.bus.announce_many([update(server.tenant, job_id, seq) for seq in range(2, 11)])
    assert [len(frame) for frame in await frames_until_pong(ws)] == [9]
    # One more would have gone in the same frame, but it is the 9th message waiting: cut off.
    server.parts.bus.announce_many([update(server.tenant, job_id, seq) for seq in range(11, 21)])
    assert await closed_with(ws, skip_text=True) == SLOW_CONSUMER_CODE
    assert server.metrics.registry.get_sample_value("baton_websocket_clients_dropped_total") == 1


@pytest.mark.parametrize("server", [{"client_buffer": 8}], indirect=True)
async def test_a_slow_batching_client_is_cut_off_without_slowing_a_fast_one(server: Server) -> None:
    fast = await batching(server)
    slow = await batching(server)
    padding = "x" * 512 * 1024
    sent = 0
    got: list[int] = []
    # The slow client never reads: once the socket buffers fill, its 8-message outbox overflows.
    while server.metrics.registry.get_sample_value("baton_websocket_clients_dropped_total") == 0:
        sent += 1
        assert sent < 400, "the slow client was never cut off"
        server.parts.hub.dispatch(update(server.tenant, "j", sent, pad=padding))
        for frame in await frames_until_pong(fast):
            got.extend(message["seq"] for message in frame)
    assert got == list(range(1, sent + 1))
    assert await closed_with(slow, skip_text=True) == SLOW_CONSUMER_CODE


async def test_a_bad_batch_value_gets_an_error_and_single_frames(server: Server) -> None:
    record = await server.job()
    ws = await server.connect(f"/ws/{record.job_id}?batch=yes")
    refused = await receive(ws)
    assert refused == {"type": "error", "error": "bad_message", "detail": "?batch must be 1 or 0, not 'yes'"}
    assert (await receive(ws))["type"] == "job_snapshot"
    [conn] = server.parts.hub._connections
    assert conn.batch is False
    seen = {conn}
    for value, batch in (("1", True), ("true", True), ("0", False), ("false", False)):
        await server.connect(f"/ws/task_updates?batch={value}")
        [new] = server.parts.hub._connections - seen
        assert new.batch is batch
        seen.add(new)


async def test_batched_and_single_watchers_of_a_real_system_see_the_same_events(
    rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str
) -> None:
    """300 jobs through the real orchestrator, event consumer and a worker: the per-job seqs a batching watcher
    unpacks are exactly those a one-per-frame watcher gets, in fewer frames."""
    worker = Worker(f"svc-{unique}", concurrency=16)

    @worker.handler(f"job_{unique}")
    async def step(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        await ctx.progress(50.0, "half")
        return {}

    async with serve_api(rabbitmq_url, redis_url, redis_client, unique) as api:
        assert (api.service, api.job_type) == (f"svc-{unique}", f"job_{unique}")
        sockets = {}
        for batch in ("1", "0"):
            ws = await api.client.ws_connect(f"/ws/task_updates?batch={batch}", headers=api.headers_a)
            await ws.send_json({"type": "subscribe", "all": True})
            sockets[batch] = ws
        for ws in sockets.values():
            assert [m["type"] for frame in await frames_until_pong(ws) for m in frame] == ["connection_established"]
        async with running(worker, rabbitmq_url, redis_url=redis_url):
            response = await api.client.post(
                "/jobs/batch", json={"jobs": [{"type": api.job_type} for _ in range(300)]}, headers=api.headers_a
            )
            assert response.status == 200
            ids = {item["job_id"] for item in (await response.json())["jobs"]}
            seen = {batch: await seqs_until_ended(ws, ids) for batch, ws in sockets.items()}
        batched_seqs, batched_frames = seen["1"]
        single_seqs, single_frames = seen["0"]
        assert batched_seqs == single_seqs
        assert all(seqs == sorted(set(seqs)) and seqs[-1] >= 4 for seqs in single_seqs.values())
        assert single_frames == sum(len(seqs) for seqs in single_seqs.values())
        assert batched_frames < single_frames


async def seqs_until_ended(ws: aiohttp.ClientWebSocketResponse, ids: set[str]) -> tuple[dict[str, list[int]], int]:
    """Each job's seqs as they came, until every one of `ids` completed; and how many frames carried them."""
    seqs: dict[str, list[int]] = {job_id: [] for job_id in ids}
    pending, frames = set(ids), 0
    while pending:
        msg = await ws.receive(timeout=60)
        assert msg.type is WSMsgType.TEXT, msg
        body = json.loads(msg.data)
        frames += 1
        for message in body["events"] if body.get("type") == "events" else [body]:
            job_id = message.get("global_task_id")
            if job_id in seqs:
                seqs[job_id].append(message["seq"])
                if message.get("job_status") == "completed":
                    pending.discard(job_id)
    return seqs, frames
