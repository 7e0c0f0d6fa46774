"""GET /queues and GET /stats against the real RabbitMQ and Redis, with a real worker where one must run."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from orchestrator.http.schemas import StatsReport
from orchestrator.store import keys
from orchestrator.store.job_stats import LATENCY_BOUNDS_MS, JobStats, latency_bucket, percentile
from protocol.envelope import TaskEnvelope
from protocol.events import ATTEMPT_SEQ_STRIDE, JobStatus, completed_event, failed_event
from tests.api_server import Api, serve_api, serve_replica
from tests.polling import eventually, poll
from tests.redis_keys import keys_matching
from tests.workers.helpers import running
from workers import RetryPolicy, TaskContext, Worker

SEQ = ATTEMPT_SEQ_STRIDE  # a first attempt's events are numbered SEQ + 1, SEQ + 2, ...


def unique_of(api: Api) -> str:
    return api.service.removeprefix("svc-")


def admin(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer admin-{unique_of(api)}"}


def service_token(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer tok-{unique_of(api)}"}


@pytest.fixture
async def api(rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[Api]:
    # With a token of the test's service: it reports outcomes over the socket, and is refused here.
    tokens = {f"tok-{unique}": f"svc-{unique}"}
    async with serve_api(rabbitmq_url, redis_url, redis_client, unique, service_tokens=tokens) as api:
        yield api
    # The service-wide rate counters are keyed by service, not tenant: the tenants' cleanup does not see them.
    rates = await keys_matching(redis_client, f"{keys.PREFIX}:rates:svc-{unique}:*")
    if rates:
        await redis_client.delete(*rates)


@pytest.fixture
async def worker(api: Api, rabbitmq_url: str, redis_url: str) -> AsyncIterator[Worker]:
    """A worker of the test's service: a payload with `fail` raises (no retry: parked), `sleep` sleeps."""
    runs: Counter[str] = Counter()
    steps = Worker(api.service, concurrency=4)

    @steps.handler(api.job_type, retry=RetryPolicy(max_retries=0))
    async def run(payload: dict[str, Any], ctx: TaskContext) -> Any:
        runs[str(payload.get("name"))] += 1
        await asyncio.sleep(payload.get("sleep", 0))
        if payload.get("fail"):
            raise ValueError("told to fail")
        return {"ok": True}

    async with running(steps, rabbitmq_url, redis_url=redis_url, heartbeat_seconds=1.0):
        yield steps


async def get(api: Api, path: str, headers: dict[str, str], status: int = 200) -> dict[str, Any]:
    response = await api.client.get(path, headers=headers)
    assert response.status == status, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def create(api: Api, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await api.client.post("/jobs", json={"type": api.job_type, **body}, headers=headers)
    assert response.status in (200, 202), await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


def service_view(report: dict[str, Any], service: str) -> dict[str, Any]:
    [view] = [entry for entry in report["services"] if entry["service"] == service]
    return view


# --- /queues ---------------------------------------------------------------------------------------------


async def test_queues_show_each_tenant_its_own_depth_and_rates_and_the_admin_all(api: Api) -> None:
    for n in range(3):
        await create(api, api.headers_a, payload={"n": n})
    await create(api, api.headers_b)

    async def counted() -> bool:
        # The counts reach Redis once per flush interval: wait for all three.
        mine = service_view(await get(api, "/queues", api.headers_a), api.service)
        return bool(mine["rates"]["published_per_second"] >= 3 / 120 - 1e-3 and mine["depth"] == 3)

    await eventually(counted, what="tenant a's depth and rate")
    mine = service_view(await get(api, "/queues", api.headers_a), api.service)
    theirs = service_view(await get(api, "/queues", api.headers_b), api.service)
    everyone = service_view(await get(api, "/queues", admin(api)), api.service)
    assert (mine["depth"], theirs["depth"], everyone["depth"]) == (3, 1, 4)
    assert mine["queue"] == f"baton.{api.service}" and mine["consumers"] == 0
    # Per second over about the last minute: 3 jobs now are at least 3/120 and at most 3/60.
    assert 3 / 120 - 1e-3 <= mine["rates"]["published_per_second"] <= 3 / 60 + 1e-3
    assert theirs["rates"]["published_per_second"] < mine["rates"]["published_per_second"]
    assert everyone["rates"]["published_per_second"] == pytest.approx(
        mine["rates"]["published_per_second"] + theirs["rates"]["published_per_second"], abs=1e-3
    )
    assert mine["rates"]["completed_per_second"] == 0 and mine["dead_letters"] == 0
    # The heartbeat the test announced the service with: shared by every tenant.
    [announced] = mine["workers"]
    assert announced["worker_id"] == f"test-{api.service}" and announced["concurrency"] == 1
    assert announced["in_flight"] == 0 and 0 <= announced["age_seconds"] < 30
    assert datetime.fromisoformat(announced["last_heartbeat"]) <= datetime.now(UTC)
    assert [w["worker_id"] for w in theirs["workers"]] == [w["worker_id"] for w in mine["workers"]]
    # The built-in services are always listed.
    listed = [entry["service"] for entry in (await get(api, "/queues", admin(api)))["services"]]
    assert {"query", "embedding", api.service} <= set(listed) and listed == sorted(listed)


async def test_queues_with_a_real_worker_and_a_dead_letter(api: Api, worker: Worker) -> None:
    done = await create(api, api.headers_a, payload={"name": "ok"}, wait=10)
    assert done["status"] == "completed"
    failed = await create(api, api.headers_a, payload={"name": "bad", "fail": True}, wait=10)
    assert failed["status"] == "failed"
    held = await create(api, api.headers_b, payload={"name": "slow", "sleep": 30})

    async def seen() -> bool:
        everyone = service_view(await get(api, "/queues", admin(api)), api.service)
        workers = {w["worker_id"]: w for w in everyone["workers"]}
        real = [w for w in workers.values() if w["worker_id"] != f"test-{api.service}"]
        return everyone["dead_letters"] == 1 and bool(real) and real[0]["in_flight"] == 1

    await eventually(seen, within=15, what="the parked task and the busy worker")
    everyone = service_view(await get(api, "/queues", admin(api)), api.service)
    mine = service_view(await get(api, "/queues", api.headers_a), api.service)
    theirs = service_view(await get(api, "/queues", api.headers_b), api.service)
    assert everyone["consumers"] >= 1 and mine["consumers"] == everyone["consumers"]
    [real] = [w for w in everyone["workers"] if w["worker_id"] != f"test-{api.service}"]
    assert real["concurrency"] == 4 and real["pid"] > 0 and real["host"]
    assert (mine["dead_letters"], theirs["dead_letters"]) == (1, 0)
    # (The outcomes' rates are checked where this replica surely applies them: the stats test.)
    assert (mine["depth"], theirs["depth"]) == (0, 0)  # the slow job is running, not ready
    await api.client.post(f"/jobs/{held['job_id']}/cancel", headers=api.headers_b)


async def test_queues_and_stats_refuse_a_missing_key_and_a_service_token(api: Api) -> None:
    for path in ("/queues", "/stats"):
        assert (await api.client.get(path)).status == 401
        refused = await get(api, path, service_token(api), status=403)
        assert refused["error"] == "forbidden"


# --- /stats ----------------------------------------------------------------------------------------------


async def report_outcomes(api: Api, outcomes: list[tuple[TaskEnvelope, str]]) -> None:
    """Each task's outcome as its service reports it over the service-token socket: applied by this replica
    (the worker's events on the shared broker may be applied first by another test run's orchestrator)."""
    socket = await api.client.ws_connect("/ws/task_updates", headers=service_token(api))
    try:
        assert (await socket.receive_json(timeout=5))["role"] == "service"
        for envelope, outcome in outcomes:
            if outcome == "completed":
                event = completed_event(envelope, {"ok": True}, SEQ + 1)
            else:
                status = JobStatus.TIMED_OUT if outcome == "timed_out" else JobStatus.FAILED
                event = failed_event(envelope, error="boom", error_type="RuntimeError", seq=SEQ + 1, status=status)
            await socket.send_str(event.model_dump_json())
            ack = await socket.receive_json(timeout=5)
            assert ack["type"] == "event_ack" and ack["applied"] is True, ack
    finally:
        await socket.close()


async def test_stats_count_jobs_per_minute_for_the_tenant_and_the_admin(api: Api) -> None:
    for n in range(5):
        await create(api, api.headers_a, payload={"n": n})
    envelopes = [envelope for _, envelope in await api.queued_envelopes()]
    assert len(envelopes) == 5
    outcomes = ["completed", "completed", "completed", "failed", "timed_out"]
    await report_outcomes(api, list(zip(envelopes, outcomes, strict=True)))
    cancelled = await create(api, api.headers_a, payload={"n": "cancelled"})
    assert (await api.client.post(f"/jobs/{cancelled['job_id']}/cancel", headers=api.headers_a)).status == 200

    async def counted() -> dict[str, Any]:
        totals: dict[str, Any] = (await get(api, "/stats?minutes=5", api.headers_a))["totals"]
        return totals

    wanted = {"created": 6, "completed": 3, "failed": 1, "timed_out": 1, "cancelled": 1}
    await poll(counted, lambda totals: all(totals[k] == v for k, v in wanted.items()), what="the tenant's counts")
    report = await get(api, "/stats?minutes=5", api.headers_a)
    assert StatsReport.model_validate(report).model_dump(mode="json") == report  # the documented shape
    assert report["tenant_id"] == api.tenant_a and report["minutes"] == 5
    assert report["latency_bucket_bounds_ms"] == list(LATENCY_BOUNDS_MS)
    minutes = [datetime.fromisoformat(bucket["minute"]) for bucket in report["buckets"]]
    assert len(minutes) == 5 and all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(minutes))
    assert minutes[-1] <= datetime.now(UTC) < minutes[-1] + timedelta(minutes=1)
    totals = report["totals"]
    assert sum(bucket["created"] for bucket in report["buckets"]) == 6
    assert sum(bucket["completed"] for bucket in report["buckets"]) == 3
    assert 0 < totals["latency_p50_ms"] <= totals["latency_p95_ms"] <= 60_000
    ended = ("completed", "failed", "timed_out", "cancelled")
    for bucket in report["buckets"]:
        assert (bucket["latency_p50_ms"] is None) == (not any(bucket[k] for k in ended))

    other = await get(api, "/stats?minutes=5", api.headers_b)
    assert other["totals"]["created"] == 0 and other["totals"]["latency_p50_ms"] is None
    everyone = await get(api, "/stats?minutes=5", admin(api))
    assert everyone["tenant_id"] is None
    for name in wanted:
        assert everyone["totals"][name] >= totals[name]  # other tests' tenants add to it on this Redis

    # The service's rates count the same outcomes, the tenant's apart.
    mine = service_view(await get(api, "/queues", api.headers_a), api.service)["rates"]
    assert mine["completed_per_second"] >= 3 / 120 - 1e-3 and mine["failed_per_second"] >= 1 / 120 - 1e-3
    theirs = service_view(await get(api, "/queues", api.headers_b), api.service)["rates"]
    assert theirs == {"published_per_second": 0.0, "completed_per_second": 0.0, "failed_per_second": 0.0}

    # Kept in Redis: another orchestrator (a restart, a replica) reads the same figures.
    async with serve_replica(api) as replica:
        response = await replica.get("/stats?minutes=5", headers=api.headers_a)
        assert (await response.json())["totals"] == totals


async def test_stats_minutes_must_be_1_to_1440(api: Api) -> None:
    for bad in ("0", "1441", "-1", "x", "1.5"):
        refused = await get(api, f"/stats?minutes={bad}", api.headers_a, status=422)
        assert refused["error"] == "validation_error"
    assert (await get(api, "/stats?color=red", api.headers_a, status=422))["error"] == "validation_error"
    assert len((await get(api, "/stats", api.headers_a))["buckets"]) == 60
    day = await get(api, "/stats?minutes=1440", api.headers_a)
    assert len(day["buckets"]) == 1440 and StatsReport.model_validate(day).model_dump(mode="json") == day


async def test_percentiles_are_read_from_the_histogram(redis_client: aioredis.Redis, unique: str) -> None:
    tenant = f"tst-{unique}"
    now = 1_000_000 * 60 + 30.0  # a minute of 1970 nobody else writes to
    stats = JobStats(redis_client, clock=lambda: now)
    try:
        # 10 jobs: 8 ended after 40 ms (bucket 25..50], 2 after 4 s (bucket 2500..5000].
        for elapsed in [0.04] * 8 + [4.0] * 2:
            created = datetime.fromtimestamp(now - elapsed, UTC).isoformat()
            stats.job_finished(tenant, "svc", "completed", created)
        await stats.flush()
        [minute] = await stats.minutes(tenant, 1)
        assert minute.minute == 1_000_000 and minute.counts["completed"] == 10
        assert minute.latency[latency_bucket(40)] == 8 and minute.latency[latency_bucket(4000)] == 2
        # p50: the 5th of 8 in (25, 50] -> 25 + 25 * 5/8; p95: 9.5th, 1.5 of 2 into (2500, 5000].
        assert percentile(minute.latency, 0.5) == pytest.approx(25 + 25 * 5 / 8)
        assert percentile(minute.latency, 0.95) == pytest.approx(2500 + 2500 * 1.5 / 2)
        assert await redis_client.ttl(keys.stats_minute(tenant, 1_000_000)) > 24 * 3600
    finally:
        await redis_client.delete(keys.stats_minute(tenant, 1_000_000), keys.stats_all_minute(1_000_000))
        await redis_client.delete(*(keys.service_rates("svc", who, 1_000_000) for who in (None, tenant)))


async def test_counts_are_summed_in_memory_and_written_once_per_interval(
    redis_client: aioredis.Redis, unique: str
) -> None:
    tenant = f"tst-{unique}"
    now = 1_000_001 * 60 + 30.0
    stats = JobStats(redis_client, clock=lambda: now, flush_interval=1.0)
    key = keys.stats_minute(tenant, 1_000_001)
    try:
        for _ in range(50):
            stats.job_created(tenant, "svc")
        assert await redis_client.hget(key, "created") is None  # held until the interval ends
        await poll(lambda: redis_client.hget(key, "created"), lambda found: found == b"50", within=10, what="the sum")
        assert await redis_client.ttl(key) > 24 * 3600
        assert await redis_client.hget(keys.service_rates("svc", tenant, 1_000_001), "published") == b"50"
        stats.job_created(tenant, "svc")
        await stats.flush()  # what is held is written at once, without waiting for the interval
        assert await redis_client.hget(key, "created") == b"51"
    finally:
        await redis_client.delete(key, keys.stats_all_minute(1_000_001))
        await redis_client.delete(*(keys.service_rates("svc", who, 1_000_001) for who in (None, tenant)))


def test_percentile_edges() -> None:
    empty = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    assert percentile(empty, 0.5) is None
    slowest = [*empty[:-1], 3]  # all slower than the last bound
    assert percentile(slowest, 0.5) == LATENCY_BOUNDS_MS[-1]
    first = [4, *empty[1:]]
    assert percentile(first, 0.5) == pytest.approx(LATENCY_BOUNDS_MS[0] / 2)
    assert latency_bucket(0) == 0 and latency_bucket(10) == 0 and latency_bucket(10.5) == 1
    assert latency_bucket(10**9) == len(LATENCY_BOUNDS_MS)
