"""Flow limits hold over two real `python -m workers` processes of one service (tests.workers.limited_app)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel

from protocol.events import EventType
from protocol.flow_limits import LIMITED_SERVICES_KEY, leases_key, rate_key, stats_key
from tests.polling import eventually
from tests.workers.helpers import Tap, envelope, publish_task
from workers.runtime.flow_store import LEASE_SECONDS, RENEW_SECONDS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def record(redis_client: aioredis.Redis, service: str) -> AsyncIterator[str]:
    """The Redis key prefix the handlers record their starts under; removed with the limits' keys."""
    prefix = f"tests:flow-limits:{service}"
    yield prefix
    await redis_client.delete(
        *(f"{prefix}:{part}" for part in ("running", "starts", "running_seen", "pids")),
        leases_key(service),
        rate_key(service),
        stats_key(service),
    )
    await redis_client.srem(LIMITED_SERVICES_KEY, service)


@pytest.fixture
async def start_workers(
    rabbitmq_url: str, redis_url: str, channel: AbstractChannel, service: str, record: str
) -> AsyncIterator[Callable[..., object]]:
    """`await start_workers(2, BATON_WORKER_RATE_LIMIT="10/s")`: processes consuming once they said so."""
    processes: list[asyncio.subprocess.Process] = []

    async def start(count: int, **limits: str) -> list[asyncio.subprocess.Process]:
        beats = await Tap.open(channel, f"_system.{service}.worker_heartbeat")
        env = {
            **os.environ,
            "RABBITMQ_URL": rabbitmq_url,
            "REDIS_URL": redis_url,
            "BATON_TEST_SERVICE": service,
            "BATON_TEST_RECORD": record,
            "BATON_HEARTBEAT_SECONDS": "30",
            "BATON_SHUTDOWN_GRACE_SECONDS": "5",
            **limits,
        }
        started = []
        for _ in range(count):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "workers", "tests.workers.limited_app:build", cwd=ROOT, env=env
            )
            processes.append(process)
            started.append(process)
        for _ in range(count):
            await beats.next_heartbeat(within=20)  # each is consuming once it announced itself
        return started

    yield start
    for process in processes:
        if process.returncode is None:
            process.terminate()
    for process in processes:
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _run_tasks(channel: AbstractChannel, service: str, count: int, seconds: float) -> None:
    """Publish `count` tasks of `seconds` each and wait until all completed (none failed or parked)."""
    tap = await Tap.open(channel, f"*.{service}.*")
    tasks = [envelope(service, "work", {"seconds": seconds}, global_task_id=f"job-{i}-{service}") for i in range(count)]
    for task in tasks:
        await publish_task(channel, task)
    outcomes = await _outcomes(tap, len(tasks), within=30)
    assert set(outcomes.values()) == {EventType.TASK_COMPLETED}, outcomes


async def _pids(redis_client: aioredis.Redis, record: str) -> set[str]:
    """The processes that ran the recorded starts."""
    return {line.split()[1] for line in await redis_client.lrange(f"{record}:pids", 0, -1)}


async def _outcomes(tap: Tap, count: int, within: float) -> dict[str, EventType]:
    """The terminal event of `count` tasks, by task id."""
    terminal: dict[str, EventType] = {}
    deadline = time.monotonic() + within
    while len(terminal) < count:
        event = await tap.next_event(within=max(0.1, deadline - time.monotonic()))
        if event.is_terminal:
            terminal[event.task_id] = event.event
    return terminal


def _most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] > window:
            first += 1
        most = max(most, last - first + 1)
    return most


async def test_a_rate_of_10_per_second_holds_over_two_processes(
    start_workers: Callable[..., object],
    channel: AbstractChannel,
    service: str,
    record: str,
    redis_client: aioredis.Redis,
) -> None:
    await start_workers(2, BATON_WORKER_RATE_LIMIT="10/s")  # type: ignore[operator]
    await _run_tasks(channel, service, 40, seconds=0.05)

    starts = [float(t) for t in await redis_client.lrange(f"{record}:starts", 0, -1)]
    assert len(starts) == 40
    assert _most_in_any_window(starts, 1.0) <= 11
    assert max(starts) - min(starts) >= 3.8  # 40 starts at 10/s: about 3.9 s from first to last
    assert len(await _pids(redis_client, record)) == 2  # both processes took part
    stats = await redis_client.hgetall(stats_key(service))
    assert int(stats[b"waits:rate"]) >= 30 and stats[b"rate_limit"] == b"10/s"
    assert b"waits:concurrency" not in stats  # no concurrency limit: nobody waited for a lease


async def test_at_most_3_run_at_once_over_two_processes_of_concurrency_5(
    start_workers: Callable[..., object],
    channel: AbstractChannel,
    service: str,
    record: str,
    redis_client: aioredis.Redis,
) -> None:
    await start_workers(2, BATON_WORKER_MAX_CONCURRENCY="3")  # type: ignore[operator]
    await _run_tasks(channel, service, 20, seconds=0.3)

    seen = [int(n) for n in await redis_client.lrange(f"{record}:running_seen", 0, -1)]
    assert len(seen) == 20
    assert max(seen) == 3  # never more, and the limit was used
    assert len(await _pids(redis_client, record)) == 2
    assert await redis_client.zcard(leases_key(service)) == 0  # every lease released
    stats = await redis_client.hgetall(stats_key(service))
    assert 0 < int(stats[b"waits:concurrency"]) < 20 and b"waits:rate" not in stats


async def test_a_killed_process_leases_free_within_their_expiry(
    start_workers: Callable[..., object],
    channel: AbstractChannel,
    service: str,
    record: str,
    redis_client: aioredis.Redis,
) -> None:
    processes = await start_workers(2, BATON_WORKER_MAX_CONCURRENCY="1")  # type: ignore[operator]
    tap = await Tap.open(channel, f"*.{service}.*")
    doomed = envelope(
        service, "work", {"seconds": 0.1, "first_attempt_seconds": 60}, global_task_id=f"doomed-{service}"
    )
    await publish_task(channel, doomed)
    await eventually(lambda: redis_client.llen(f"{record}:pids"), within=10, what="the long task running")
    _, pid = (await redis_client.lindex(f"{record}:pids", 0)).decode().split()
    victim = next(p for p in processes if p.pid == int(pid))
    victim.send_signal(signal.SIGKILL)
    killed_at = time.time()
    await victim.wait()
    waiting = envelope(service, "work", {"seconds": 0.1}, global_task_id=f"after-kill-{service}")
    await publish_task(channel, waiting)
    outcomes = await _outcomes(tap, 2, within=30)  # the waiting task, and the killed one's next attempt

    assert outcomes == {doomed.task_id: EventType.TASK_COMPLETED, waiting.task_id: EventType.TASK_COMPLETED}
    later_starts = sorted(float(t) for t in await redis_client.lrange(f"{record}:starts", 1, -1))
    first_start_after_kill = later_starts[0] - killed_at
    # The dead process's lease held the limit until it expired, LEASE_SECONDS after its last renewal.
    assert LEASE_SECONDS - RENEW_SECONDS - 0.5 <= first_start_after_kill <= LEASE_SECONDS + 2
