"""Graceful shutdown of a real `python -m workers module:attr` process on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aio_pika.abc import AbstractChannel

from protocol.envelope import TaskEnvelope
from protocol.events import EventType
from protocol.topology import task_queue
from tests.workers.helpers import CODECS, Tap, envelope, publish_task

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def start_worker(rabbitmq_url: str, service_names: Callable[[str], str]) -> AsyncIterator[Callable[..., object]]:
    # Depends on service_names so the processes are gone before their queues are deleted.
    processes: list[asyncio.subprocess.Process] = []

    async def start(service: str, grace_seconds: float) -> asyncio.subprocess.Process:
        env = {
            **os.environ,
            "RABBITMQ_URL": rabbitmq_url,
            "BATON_TEST_SERVICE": service,
            "BATON_SHUTDOWN_GRACE_SECONDS": str(grace_seconds),
            "BATON_HEARTBEAT_SECONDS": "30",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "workers",
            "tests.workers.sample_app:build",
            cwd=ROOT,
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _start_and_run_one(
    start_worker: Callable[..., object], channel: AbstractChannel, service: str, grace: float, nap: float
) -> tuple[asyncio.subprocess.Process, Tap, TaskEnvelope]:
    beats = await Tap.open(channel, f"_system.{service}.worker_heartbeat")
    tap = await Tap.open(channel, f"*.{service}.*")
    process = await start_worker(service, grace)  # type: ignore[operator]
    first = await beats.next_heartbeat(within=20)  # the worker is consuming once it announced itself
    assert not first.stopping
    task = envelope(service, "nap", {"seconds": nap})
    await publish_task(channel, task)
    running = await tap.next_event()
    assert running.task_id == task.task_id and running.data["status"] == "running"
    return process, tap, task


async def test_sigterm_lets_the_in_flight_task_finish_and_exits_0(
    start_worker: Callable[..., object], channel: AbstractChannel, service: str
) -> None:
    process, tap, task = await _start_and_run_one(start_worker, channel, service, grace=20, nap=1.5)
    process.send_signal(signal.SIGTERM)
    events = await tap.task_events(task.task_id, within=20)
    code = await asyncio.wait_for(process.wait(), 20)
    stderr = (await process.stderr.read()).decode() if process.stderr else ""

    assert code == 0, stderr
    assert events[-1].event is EventType.TASK_COMPLETED
    assert events[-1].data == {"result": {"slept": 1.5}}
    assert "SIGTERM received" in stderr
    queue = await channel.declare_queue(task_queue(service), passive=True)
    assert queue.declaration_result.message_count == 0


async def test_sigterm_past_the_grace_period_requeues_the_task(
    start_worker: Callable[..., object], channel: AbstractChannel, service: str
) -> None:
    beats = await Tap.open(channel, f"_system.{service}.worker_heartbeat")
    process, tap, task = await _start_and_run_one(start_worker, channel, service, grace=0.5, nap=60)
    process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(process.wait(), 20)
    stderr = (await process.stderr.read()).decode() if process.stderr else ""

    assert code == 0, stderr
    goodbye = [hb async for hb in _drain_heartbeats(beats)]
    assert goodbye and goodbye[-1].stopping
    leftover = tap.drain_events()
    assert [e.data.get("progress", {}).get("message") for e in leftover] == ["dozing off"]
    assert not any(e.is_terminal for e in leftover)  # no outcome: the task is not finished
    queue = await channel.declare_queue(task_queue(service), passive=True)
    message = await queue.get(timeout=5, fail=True)
    assert message is not None
    assert message.redelivered
    assert CODECS.decode(TaskEnvelope, message.body, message.content_type).task_id == task.task_id
    await message.nack(requeue=True)


async def _drain_heartbeats(beats: Tap) -> AsyncIterator[object]:
    while True:
        try:
            yield await beats.next_heartbeat(within=2)
        except TimeoutError:
            return
