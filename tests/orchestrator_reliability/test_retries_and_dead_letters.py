"""Retrying events, and the dead-letter API: tenant filtering, the admin view, replay as a new attempt."""

from __future__ import annotations

from orchestrator.app import PUBLISHER
from orchestrator.broker.dead_letter_queues import DeadLetterQueues
from protocol.codec import MSGPACK
from protocol.events import ATTEMPT_SEQ_STRIDE, JobStatus, status_event
from protocol.topology import ATTEMPTS_HEADER, ERROR_HEADER, REASON_HEADER, TENANT_HEADER
from tests.api_server import Api
from tests.orchestrator_reliability.dead_letters import create_job, dead_depth, failed_job, job_record, park
from tests.polling import eventually

SEQ = ATTEMPT_SEQ_STRIDE


async def test_retrying_is_applied_with_the_attempt(api: Api) -> None:
    job_id = await create_job(api, api.headers_a)
    [(_, envelope)] = await api.queued_envelopes()
    await api.emit(status_event(envelope, JobStatus.RUNNING, SEQ + 1))
    await api.emit(status_event(envelope, JobStatus.RETRYING, SEQ + 2))

    async def retrying() -> bool:
        return (await job_record(api, job_id))["status"] == "retrying"

    await eventually(retrying)
    second = envelope.next_attempt()
    await api.emit(status_event(second, JobStatus.RUNNING, 2 * SEQ + 1))

    async def second_attempt_running() -> bool:
        record = await job_record(api, job_id)
        return bool(record["status"] == "running" and record["attempt"] == 2)

    await eventually(second_attempt_running)
    assert "envelope" not in await job_record(api, job_id)  # kept for republishing, not shown


async def test_listing_filters_by_tenant_and_the_admin_sees_all(api: Api) -> None:
    mine = await failed_job(api, api.headers_a)
    theirs = await failed_job(api, api.headers_b)
    await park(
        api, "garbage-1", b"\xc1 not msgpack", MSGPACK, {REASON_HEADER: "undecodable", ERROR_HEADER: "bad bytes"}
    )
    admin = {"Authorization": f"Bearer admin-{api.tenant_a.removeprefix('ta-')}"}

    listed = await api.client.get(f"/dead-letters/{api.service}", headers=api.headers_a)
    assert listed.status == 200, await listed.text()
    body = await listed.json()
    [entry] = body["entries"]
    assert entry.pop("size") == len(api.codecs.encode(mine))
    assert entry.pop("headers")[TENANT_HEADER] == api.tenant_a
    assert entry == {
        "task_id": mine.task_id,
        "job_id": mine.global_task_id,
        "tenant_id": api.tenant_a,
        "type": api.job_type,
        "reason": "max_retries",
        "attempts": 1,
        "error": "boom",
        "error_type": "RuntimeError",
        "dead_at": "2026-01-01T00:00:00+00:00",
        "decodable": True,
        "decode_error": None,
    }
    assert (body["matched"], body["scanned"], body["truncated"]) == (1, 3, False)

    everything = await (await api.client.get(f"/dead-letters/{api.service}", headers=admin)).json()
    assert [e["task_id"] for e in everything["entries"]] == [mine.task_id, theirs.task_id, "garbage-1"]
    garbage = everything["entries"][2]
    assert (garbage["decodable"], garbage["reason"], garbage["error"]) == (False, "undecodable", "bad bytes")
    assert garbage["decode_error"]

    paged = await (await api.client.get(f"/dead-letters/{api.service}?offset=1&limit=1", headers=admin)).json()
    assert [e["task_id"] for e in paged["entries"]] == [theirs.task_id]
    assert (await api.client.get(f"/dead-letters/{api.service}?limit=1001", headers=admin)).status == 422
    assert await dead_depth(api) == 3, "listing must not take anything off the queue"


async def test_replay_publishes_a_new_attempt_and_reopens_the_job(api: Api) -> None:
    mine = await failed_job(api, api.headers_a)
    theirs = await failed_job(api, api.headers_b)
    await park(api, "garbage-2", b"\xc1", MSGPACK, {REASON_HEADER: "undecodable", TENANT_HEADER: api.tenant_a})
    job_id = mine.global_task_id
    before = await job_record(api, job_id)

    ws = await api.client.ws_connect("/ws/task_updates", headers=api.headers_a)
    await ws.send_json({"type": "subscribe", "job_ids": [job_id]})
    assert (await ws.receive_json(timeout=5))["type"] == "connection_established"
    assert (await ws.receive_json(timeout=5))["type"] == "job_snapshot"

    response = await api.client.post(
        f"/dead-letters/{api.service}/replay",
        json={"task_ids": [mine.task_id, theirs.task_id, "garbage-2"]},
        headers=api.headers_a,
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["replayed"] == [{"task_id": mine.task_id, "job_id": job_id, "attempt": 2}]
    errors = {e["task_id"]: e["error"] for e in body["errors"]}
    # The header alone does not make the garbage tenant A's: no job of A's has that task.
    assert errors == {theirs.task_id: "not_found", "garbage-2": "not_found"}

    [(message, envelope)] = await api.queued_envelopes()
    assert (envelope.task_id, envelope.global_task_id, envelope.attempt) == (mine.task_id, job_id, 2)
    assert message.message_id == mine.task_id
    assert await dead_depth(api) == 2  # theirs and the garbage stay parked

    reopened = await job_record(api, job_id)
    assert (reopened["status"], reopened["attempt"], reopened["error"]) == ("queued", 2, None)
    assert reopened["seq"] > before["seq"]
    queued = await ws.receive_json(timeout=5)
    assert (queued["data"]["status"], queued["seq"]) == ("queued", reopened["seq"])

    await api.emit(status_event(envelope, JobStatus.RUNNING, 2 * SEQ + 1))
    running = await ws.receive_json(timeout=5)
    assert (running["data"]["status"], running["seq"]) == ("running", reopened["seq"] + 1)
    await ws.close()

    again = await api.client.post(f"/dead-letters/{api.service}/replay", json={"all": True}, headers=api.headers_b)
    assert [r["task_id"] for r in (await again.json())["replayed"]] == [theirs.task_id]
    bad = await api.client.post(f"/dead-letters/{api.service}/replay", json={}, headers=api.headers_a)
    assert bad.status == 422


async def test_replay_never_runs_a_task_whose_job_is_still_live(api: Api) -> None:
    """An earlier attempt parked while a later one runs: replaying it would run the task twice at once."""
    job_id = await create_job(api, api.headers_a)
    [(_, envelope)] = await api.queued_envelopes()
    await park(
        api, envelope.task_id, api.codecs.encode(envelope), MSGPACK, {TENANT_HEADER: api.tenant_a, ATTEMPTS_HEADER: 1}
    )
    replay = {"task_ids": [envelope.task_id]}

    queued = await (
        await api.client.post(f"/dead-letters/{api.service}/replay", json=replay, headers=api.headers_a)
    ).json()
    assert queued["replayed"] == []
    assert [(e["task_id"], e["error"]) for e in queued["errors"]] == [(envelope.task_id, "job_queued")]
    assert "is queued" in queued["errors"][0]["detail"]

    await api.emit(status_event(envelope.next_attempt(), JobStatus.RUNNING, 2 * SEQ + 1))

    async def running() -> bool:
        return (await job_record(api, job_id))["status"] == "running"

    await eventually(running)
    before = await job_record(api, job_id)
    body = await (
        await api.client.post(f"/dead-letters/{api.service}/replay", json=replay, headers=api.headers_a)
    ).json()
    assert [(e["task_id"], e["error"]) for e in body["errors"]] == [(envelope.task_id, "job_running")]
    assert await api.queue_depth() == 0  # nothing published
    assert await dead_depth(api) == 1  # still parked
    assert await job_record(api, job_id) == before


async def test_a_browse_lock_lives_only_while_it_is_used(api: Api) -> None:
    queues = DeadLetterQueues(api.app[PUBLISHER], api.codecs)
    for name in ("no-such-service-1", "no-such-service-2", api.service):
        async with queues.browse(name) as browse:
            assert browse is None  # no dead-letter queue declared for any of them yet
            assert list(queues._turns) == [name]
    assert queues._turns == {}  # names from URLs leave nothing behind
