"""Informational events end to end, a real orchestrator (tests/api_server.py) and a real worker runtime:

- with `track_started=False` a job goes from queued straight to its outcome, in the registry, its kept
  events and on a following WebSocket (a progress report still marks it running), unless its handler is
  still running after the late-running delay (then it reads running until its outcome), and a workflow
  whose step handler announces nothing runs to its end;
- whatever becomes of a running event (its confirm slow to come, its publish failing, or the event
  arriving after the outcome), the outcome reaches the registry and the job ends in the right state.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import WSMsgType

from orchestrator.app import WORKFLOWS
from protocol.events import TERMINAL_STATUSES, EventType, TaskEvent
from tests.api_server import Api, serve_api
from tests.polling import poll
from tests.workers.helpers import running
from tests.workflows.gated_steps import define, finished
from workers import PermanentError, TaskContext, Worker
from workers.errors import BrokerError
from workers.runtime.event_publisher import EventPublisher


@pytest.fixture
async def api(rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[Api]:
    async with serve_api(rabbitmq_url, redis_url, redis_client, unique) as api:
        yield api


class Gated:
    """A worker whose one handler, when its payload says `gate`, waits for `release` before it reports
    progress (if asked to) and for `finish` after."""

    def __init__(self, api: Api, *, track_started: bool) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.finish = asyncio.Event()
        self.worker = Worker(api.service, concurrency=4)
        self.worker.handler(api.job_type, track_started=track_started)(self.run)

    async def run(self, payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        self.started.set()
        if payload.get("gate"):
            await self.release.wait()
        if payload.get("progress"):
            await ctx.progress(50, "half way")
        if payload.get("gate"):
            await self.finish.wait()
        if payload.get("fail"):
            raise PermanentError("refused for good")
        return {"name": payload.get("name")}


async def submit(api: Api, payload: dict[str, Any]) -> str:
    response = await api.client.post("/jobs", json={"type": api.job_type, "payload": payload}, headers=api.headers_a)
    assert response.status == 202, await response.text()
    job_id: str = (await response.json())["job_id"]
    return job_id


async def record(api: Api, job_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def ended(api: Api, job_id: str) -> dict[str, Any]:
    return await poll(lambda: record(api, job_id), lambda r: r["status"] in TERMINAL_STATUSES, within=20)


async def kept_statuses(api: Api, job_id: str) -> list[tuple[str, str]]:
    """(event, job status after it) of every event the registry kept for the job."""
    response = await api.client.get(f"/jobs/{job_id}/events", headers=api.headers_a)
    assert response.status == 200, await response.text()
    return [(e["event"], e["job_status"]) for e in (await response.json())["events"]]


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=10)
    assert msg.type is WSMsgType.TEXT, msg
    body: dict[str, Any] = json.loads(msg.data)
    return body


def in_order(seen: list[str], statuses: list[str]) -> bool:
    """`seen` is `statuses` or a part of it, in its order, from first to last."""
    return (
        seen[0] == statuses[0]
        and seen[-1] == statuses[-1]
        and all(s in statuses for s in seen)
        and ([statuses.index(s) for s in seen] == sorted(statuses.index(s) for s in seen))
    )


@pytest.mark.parametrize("progress", [False, True], ids=["silent", "reports-progress"])
async def test_without_track_started_a_job_goes_from_queued_to_its_outcome(
    api: Api, rabbitmq_url: str, redis_url: str, progress: bool
) -> None:
    gated = Gated(api, track_started=False)
    # However slow the machine, the handler is not announced late while the test holds it.
    async with running(gated.worker, rabbitmq_url, redis_url=redis_url, late_running_seconds=3600):
        job_id = await submit(api, {"gate": True, "progress": progress, "name": "quiet"})
        await asyncio.wait_for(gated.started.wait(), 10)
        ws = await api.client.ws_connect(f"/ws/jobs/{job_id}", headers=api.headers_a)
        assert (await receive(ws))["type"] == "connection_established"
        snapshot = await receive(ws)
        assert snapshot["type"] == "job_snapshot"
        # Nothing says it started: the record shows queued while the handler runs.
        assert snapshot["job"]["status"] == "queued"
        assert (await record(api, job_id))["status"] == "queued"
        gated.release.set()
        if progress:
            # The report marks the job running (the handler holds its outcome back meanwhile).
            reported = await poll(lambda: record(api, job_id), lambda r: r["status"] == "running")
            assert reported["progress"]["percentage"] == 50
        gated.finish.set()
        followed = [snapshot["job"]["status"]]
        while followed[-1] not in TERMINAL_STATUSES:
            followed.append((await receive(ws))["job_status"])
        await ws.close()
        done = await ended(api, job_id)

    assert done["status"] == "completed" and done["result"] == {"name": "quiet"}
    kept = [status for _, status in await kept_statuses(api, job_id)]
    if progress:
        # Other orchestrators on the shared events queue (other test runs, other releases) may apply an
        # event first: this one's history and updates then show a part of the way, in order.
        statuses = ["queued", "running", "completed"]
        assert in_order(kept, statuses) and in_order(followed, statuses), (kept, followed)
    else:
        # No orchestrator can show what was never published.
        assert kept == followed == ["queued", "completed"]


async def test_without_track_started_a_handler_still_running_after_the_delay_reads_running_until_its_outcome(
    api: Api, rabbitmq_url: str, redis_url: str
) -> None:
    late = 0.5
    gated = Gated(api, track_started=False)
    async with running(gated.worker, rabbitmq_url, redis_url=redis_url, late_running_seconds=late):
        job_id = await submit(api, {"gate": True, "name": "long"})
        await asyncio.wait_for(gated.started.wait(), 10)
        started = time.monotonic()
        # The late running event: the record reads running while the handler still runs.
        await poll(lambda: record(api, job_id), lambda r: r["status"] == "running")
        assert time.monotonic() - started >= late * 0.8
        gated.release.set()
        gated.finish.set()
        done = await ended(api, job_id)

    # The outcome, later in the attempt's sequence, still applies.
    assert done["status"] == "completed" and done["result"] == {"name": "long"}
    response = await api.client.get(f"/jobs/{job_id}/events", headers=api.headers_a)
    kept = (await response.json())["events"]
    assert [e["seq"] for e in kept] == sorted(e["seq"] for e in kept)
    # Another orchestrator on the shared events queue may apply an event first (see above).
    assert in_order([e["job_status"] for e in kept], ["queued", "running", "completed"]), kept


async def test_a_workflow_whose_step_handler_does_not_track_started_runs_to_its_end(
    api: Api, rabbitmq_url: str, redis_url: str
) -> None:
    gated = Gated(api, track_started=False)
    t = api.job_type
    await define(
        api,
        "quiet",
        [
            {"name": "a", "type": t, "payload": {"name": "a"}},
            {"name": "b", "type": t, "payload": {"name": "b", "progress": True}, "after": ["a"]},
        ],
    )
    async with running(gated.worker, rabbitmq_url, redis_url=redis_url):
        state, _ = await api.app[WORKFLOWS].execute(api.tenant_a, "quiet", {"doc": 1})
        state = await finished(api, state.execution_id)

    assert state.status.value == "completed"
    assert {name: step.status.value for name, step in state.steps.items()} == {"a": "completed", "b": "completed"}
    # Without a running event a step's start is when it was sent; with a progress report, that report.
    assert all(step.began_at is not None for step in state.steps.values())
    assert (await ended(api, state.execution_id))["status"] == "completed"  # the job record follows the execution


class RunningEventTrouble:
    """Wraps EventPublisher.publish_event for running events (not progress): `held` sends it but holds
    its confirm until `release`; `broken` fails it; `late` sends it only after the outcome is confirmed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
        self.release = asyncio.Event()
        self.outcome_out = asyncio.Event()
        self.late_out = asyncio.Event()
        real = EventPublisher.publish_event

        async def publish_event(publisher: EventPublisher, event: TaskEvent, body: bytes | None = None) -> None:
            is_running = event.event is EventType.TASK_STATUS_UPDATE and event.data == {
                "status": "running",
                "attempt": event.data.get("attempt"),
            }
            if not is_running:
                await real(publisher, event, body)
                if event.is_terminal:
                    self.outcome_out.set()
                return
            if mode == "broken":
                raise BrokerError("channel closed by the test")
            if mode == "late":
                await self.outcome_out.wait()
                await real(publisher, event, body)
                self.late_out.set()
                return
            await real(publisher, event, body)
            await self.release.wait()  # held: a confirm that is slow to come

        monkeypatch.setattr(EventPublisher, "publish_event", publish_event)


QUEUED = ("task_status_update", "queued")


@pytest.mark.parametrize(
    ("mode", "payload", "kept"),
    [
        ("held", {}, [QUEUED, ("task_status_update", "running"), ("task_completed", "completed")]),
        ("broken", {"fail": True}, [QUEUED, ("task_failed", "failed")]),  # never sent
        ("late", {}, [QUEUED, ("task_completed", "completed")]),  # older by seq than the outcome: dropped
    ],
)
async def test_whatever_becomes_of_the_running_event_the_outcome_reaches_the_registry(
    api: Api,
    rabbitmq_url: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    payload: dict[str, Any],
    kept: list[tuple[str, str]],
) -> None:
    trouble = RunningEventTrouble(monkeypatch, mode)
    gated = Gated(api, track_started=True)
    terminal = kept[-1][1]
    async with running(gated.worker, rabbitmq_url, redis_url=redis_url):
        job_id = await submit(api, payload)
        done = await ended(api, job_id)  # in "held", while the running event's confirm is still held
        assert done["status"] == terminal
        if mode == "late":
            await asyncio.wait_for(trouble.late_out.wait(), 10)
            await asyncio.sleep(0.5)  # the late running event reaches the orchestrator, which drops it
        trouble.release.set()

    assert (await record(api, job_id))["status"] == terminal
    found = await kept_statuses(api, job_id)
    if mode == "held":  # sent: another orchestrator on the shared events queue may apply it first (see above)
        assert in_order([s for _, s in found], [s for _, s in kept]) and found[-1] == kept[-1], found
    else:
        assert found == kept
