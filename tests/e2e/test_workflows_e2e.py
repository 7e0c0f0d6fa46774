"""Workflows end to end with the real processes: 200 executions of a 5-step DAG with a parallel
fan-out (a -> (b, c, d) -> e), the orchestrator SIGKILLed a third of the way through and started again.

Every execution completes; the handlers' ledger shows each step task ran once for its attempt; every
WebSocket client, reconnecting after the kill as a browser would (subscribe to all, and to each
execution it has not seen finish, which answers with its snapshot), sees each execution complete
exactly once. The server keeps no event history to resume from yet (DESIGN: "or its snapshot when
they are gone"), so an execution that completed while a client was away reaches it as a snapshot
showing it completed; the figures line says how many did.

Figures (one `FAULT workflows_e2e: ...` line, also appended to $BATON_FAULT_FIGURES when set):
- executions/s: 200 over the time from the first start to the last completion, the kill included;
- step overhead per step: a lone execution's start-to-completion time, less 3 plain jobs of the same
  handler run one after another (its critical path is 3 steps), divided by 3: what a step costs over
  a client chaining plain jobs itself (POST /jobs, wait for task_completed on the socket, next);
- outcome -> successor start: from a step task's task_completed to its successor task's running event
  (the join e: from the last of b, c, d), both the worker's timestamps; p50 and p99 over the pairs that
  do not span the kill, and p99 over all of them. The 200 start at once, so these include queueing.
  An execution whose actions the killed process was performing waits for its claim to expire
  (storage.PERFORM_LOCK_SECONDS) and the recovery loop: that wait is the p99 over all pairs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aio_pika
import aiohttp
import pytest
import redis.asyncio as aioredis

from protocol.topology import declare_service, service_queues
from tests.e2e.harness import BatonSystem, Tenant, free_port, percentile, wait_for_workers
from tests.e2e.workflow_worker import JOB_TYPE, SERVICE
from tests.faults.common import report, wait_until_terminal
from tests.polling import poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

WORKER_TARGET = "tests.e2e.workflow_worker:build"
EXECUTIONS = 200
STEPS = ("a", "b", "c", "d", "e")
CRITICAL_PATH = 3  # a, one of b/c/d, e
SLEEP_MS = 20
SERIAL_RUNS = 10  # lone executions and plain jobs for the overhead figure
CLIENTS = 3
KILL_AT_FRACTION = 1 / 3
AFTER = {"a": [], "b": ["a"], "c": ["a"], "d": ["a"], "e": ["b", "c", "d"]}
SUCCESSORS = [(step, tuple(before)) for step, before in AFTER.items() if before]


def dag(workflow_id: str) -> dict[str, Any]:
    payload = {"ledger": "$input.ledger", "redis_url": "$input.redis_url", "sleep_ms": "$input.sleep_ms"}
    return {
        "name": f"e2e {workflow_id}",
        "steps": [
            {"name": name, "type": JOB_TYPE, "payload": {**payload, "step": name}, "after": AFTER[name]}
            for name in STEPS
        ],
    }


@dataclass
class FollowingClient:
    """A browser on /ws/task_updates: subscribes to all; after a lost connection it reconnects and
    subscribes again, also by id to the executions it has not seen finish (a snapshot each)."""

    session: aiohttp.ClientSession
    base_url: str
    tenant: Tenant
    executions: set[str] = field(default_factory=set)
    events: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)  # (job_id, seq) -> event
    arrived: dict[tuple[str, str], float] = field(default_factory=dict)  # (job_id, event) -> first arrival
    finished_by_snapshot: set[str] = field(default_factory=set)
    connections: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _connected: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def connected(self) -> None:
        await asyncio.wait_for(self._connected.wait(), 30)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def completions(self, job_id: str) -> int:
        """workflow_completed events of the job (deduplicated by seq), plus 1 if a snapshot showed it done."""
        seen = sum(1 for (job, _), e in self.events.items() if job == job_id and e["event"] == "workflow_completed")
        return seen + (job_id in self.finished_by_snapshot)

    def has_finished(self, job_id: str) -> bool:
        return (job_id, "workflow_completed") in self.arrived or job_id in self.finished_by_snapshot

    async def wait_for(self, job_id: str, event: str, timeout: float = 30) -> float:
        """Arrival time (perf_counter) of the job's first `event`."""
        async with asyncio.timeout(timeout):
            while (job_id, event) not in self.arrived:
                self._changed.clear()
                await self._changed.wait()
        return self.arrived[(job_id, event)]

    async def wait_all_finished(self, timeout: float) -> set[str]:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while any(not self.has_finished(job_id) for job_id in self.executions):
                    self._changed.clear()
                    await self._changed.wait()
        return {job_id for job_id in self.executions if not self.has_finished(job_id)}

    async def _run(self) -> None:
        url = f"{self.base_url.replace('http', 'ws', 1)}/ws/task_updates"
        while True:
            try:
                async with self.session.ws_connect(url, headers=self.tenant.headers) as ws:
                    await self._follow(ws)
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            self._connected.clear()
            await asyncio.sleep(0.2)  # a browser's reconnect backoff, kept short

    async def _follow(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        hello = await ws.receive_json(timeout=10)
        assert hello["type"] == "connection_established", hello
        await ws.send_json({"type": "subscribe", "all": True})
        if self.connections:
            unfinished = sorted(job_id for job_id in self.executions if not self.has_finished(job_id))
            if unfinished:
                await ws.send_json({"type": "subscribe", "job_ids": unfinished})
        self.connections += 1
        self._connected.set()
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            self._take(json.loads(message.data))

    def _take(self, body: dict[str, Any]) -> None:
        now = time.perf_counter()
        if body.get("type") == "job_snapshot":
            job_id = body["job_id"]
            if body["job"]["status"] == "completed" and not self.has_finished(job_id):
                self.finished_by_snapshot.add(job_id)
        elif "event" in body:
            job_id = body["global_task_id"]
            self.events.setdefault((job_id, body["seq"]), body)
            self.arrived.setdefault((job_id, body["event"]), now)
        self._changed.set()


async def reset_queues(rabbitmq_url: str) -> None:
    """The service's queues, declared and emptied of an earlier run's left-overs."""
    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        await declare_service(channel, SERVICE)
        for spec in service_queues(SERVICE):
            queue = await channel.get_queue(spec.name, ensure=True)
            await queue.purge()


async def start_execution(
    session: aiohttp.ClientSession, base_url: str, tenant: Tenant, workflow_id: str, data: dict[str, Any]
) -> str:
    async with session.post(
        f"{base_url}/workflows/{workflow_id}/execute-async", json={"data": data}, headers=tenant.headers
    ) as response:
        assert response.status == 202, await response.text()
        execution_id: str = (await response.json())["execution_id"]
        return execution_id


async def post_job(session: aiohttp.ClientSession, base_url: str, tenant: Tenant, payload: dict[str, Any]) -> str:
    body = {"type": JOB_TYPE, "payload": payload}
    async with session.post(f"{base_url}/jobs", json=body, headers=tenant.headers) as response:
        assert response.status == 202, await response.text()
        job_id: str = (await response.json())["job_id"]
        return job_id


def outcome_to_successor_start(
    client: FollowingClient, executions: list[str], kill_window: tuple[float, float]
) -> tuple[list[float], list[float]]:
    """(latencies not spanning the kill, all latencies) in seconds, from the step tasks' events."""
    completed: dict[str, float] = {}
    started: dict[str, float] = {}
    for event in client.events.values():
        stamp = datetime.fromisoformat(event["timestamp"]).timestamp()
        if event["event"] == "task_completed":
            completed.setdefault(event["task_id"], stamp)
        elif event["event"] == "task_status_update" and event["data"].get("status") == "running":
            started.setdefault(event["task_id"], stamp)
    clean: list[float] = []
    every: list[float] = []
    for execution_id in executions:
        task = {step: f"{execution_id}:{step}:1" for step in STEPS}
        for successor, before in SUCCESSORS:
            if task[successor] not in started or any(task[p] not in completed for p in before):
                continue
            outcome = max(completed[task[p]] for p in before)
            begun = started[task[successor]]
            every.append(begun - outcome)
            if not (outcome <= kill_window[1] and begun >= kill_window[0]):
                clean.append(begun - outcome)
    return clean, every


async def test_two_hundred_executions_survive_a_sigkilled_orchestrator(
    system: BatonSystem, rabbitmq_url: str, redis_url: str
) -> None:
    await reset_queues(rabbitmq_url)
    port = free_port()
    base_url = await system.start_orchestrator(port=port)
    system.start_worker(WORKER_TARGET)
    await wait_for_workers(base_url, [SERVICE])
    tenant = system.tenants[0]
    run = uuid.uuid4().hex[:10]
    ledger, baseline_ledger = f"wfe2e:{run}:ledger", f"wfe2e:{run}:baseline"
    probe = aioredis.Redis.from_url(redis_url)
    workflow_id = f"dag-{run}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.put(
                f"{base_url}/workflows/{workflow_id}", json=dag(workflow_id), headers=tenant.headers
            ) as response:
                assert response.status in (200, 201), await response.text()

            clients = [FollowingClient(session, base_url, tenant) for _ in range(CLIENTS)]
            for client in clients:
                client.start()
            for client in clients:
                await client.connected()

            # The baseline and the lone executions, one at a time, on an idle system.
            plain, lone = [], []
            step_data = {"ledger": baseline_ledger, "redis_url": redis_url, "sleep_ms": SLEEP_MS}
            for _ in range(SERIAL_RUNS):
                t0 = time.perf_counter()
                job_id = await post_job(session, base_url, tenant, {**step_data, "step": "plain"})
                plain.append(await clients[0].wait_for(job_id, "task_completed") - t0)
                t0 = time.perf_counter()
                execution_id = await start_execution(session, base_url, tenant, workflow_id, step_data)
                lone.append(await clients[0].wait_for(execution_id, "workflow_completed", 45) - t0)
                for client in clients:
                    client.executions.add(execution_id)
            plain_ms, lone_ms = statistics.median(plain) * 1000, statistics.median(lone) * 1000

            # The run: 200 executions, the orchestrator killed a third of the way through.
            data = {"ledger": ledger, "redis_url": redis_url, "sleep_ms": SLEEP_MS}
            limit = asyncio.Semaphore(32)

            async def start_one() -> str:
                async with limit:
                    execution_id = await start_execution(session, base_url, tenant, workflow_id, data)
                for client in clients:
                    client.executions.add(execution_id)
                return execution_id

            t_start = time.perf_counter()
            executions = list(await asyncio.gather(*(start_one() for _ in range(EXECUTIONS))))
            kill_after = int(EXECUTIONS * len(STEPS) * KILL_AT_FRACTION)
            done_at_kill = await poll(
                lambda: probe.llen(ledger),
                lambda n: n >= kill_after,
                within=60,
                every=0.01,
                what="a third of the steps",
            )
            orchestrator = next(p for p in system.processes if p.name == "orchestrator")
            kill_wall = time.time()
            orchestrator.popen.kill()
            orchestrator.popen.wait()
            orchestrator.name = "orchestrator-killed"
            await system.start_orchestrator(port=port)
            back_wall = time.time()

            statuses = await wait_until_terminal(session, base_url, tenant, executions, timeout=90)
            missing = {client_index: await client.wait_all_finished(20) for client_index, client in enumerate(clients)}
            t_done = max(client.arrived.get((e, "workflow_completed"), 0.0) for client in clients for e in executions)
            elapsed = (t_done or time.perf_counter()) - t_start
            await asyncio.sleep(0.5)  # room for a repeated workflow_completed to show up
            for client in clients:
                await client.stop()

        assert Counter(statuses.values()) == Counter({"completed": EXECUTIONS})
        entries = [json.loads(raw) for raw in await probe.lrange(ledger, 0, -1)]
        ran = Counter(entry["task_id"] for entry in entries)
        assert {task_id: n for task_id, n in ran.items() if n > 1} == {}, "a step task ran twice for one attempt"
        assert set(ran) == {f"{e}:{step}:1" for e in executions for step in STEPS}
        assert {index: gone for index, gone in missing.items() if gone} == {}
        every_execution = [*executions, *clients[0].executions - set(executions)]
        for client in clients:
            assert client.connections >= 2, "the client never reconnected after the kill"
            assert {e: n for e in every_execution if (n := client.completions(e)) != 1} == {}

        clean, every = outcome_to_successor_start(clients[0], executions, (kill_wall, back_wall))
        report(
            "workflows_e2e",
            executions=EXECUTIONS,
            executions_per_s=f"{EXECUTIONS / elapsed:.1f}",
            killed_after_steps=f"{done_at_kill}/{EXECUTIONS * len(STEPS)}",
            down_s=f"{back_wall - kill_wall:.2f}",
            plain_job_ms=f"{plain_ms:.1f}",
            lone_execution_ms=f"{lone_ms:.1f}",
            step_overhead_ms=f"{(lone_ms - CRITICAL_PATH * plain_ms) / CRITICAL_PATH:.1f}",
            successor_start_p50_ms=f"{percentile(clean, 0.5) * 1000:.1f}",
            successor_start_p99_ms=f"{percentile(clean, 0.99) * 1000:.1f}",
            successor_start_p99_all_ms=f"{percentile(every, 0.99) * 1000:.1f}",
            pairs=f"{len(clean)}/{len(every)}",
            completions_by_snapshot=sum(len(c.finished_by_snapshot) for c in clients),
        )
    finally:
        await probe.delete(ledger, baseline_ledger)
        await probe.aclose()
