"""The flow limits' parser and their Redis scripts' arithmetic, against the real Redis."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from protocol.flow_limits import LIMITED_SERVICES_KEY, leases_key, rate_key, stats_key
from workers.config import WorkerSettings
from workers.errors import ConfigurationError
from workers.rate_limit import RateLimit, parse_rate_limit
from workers.runtime.flow_gate import resolve_limits
from workers.runtime.flow_store import FlowLimits, FlowLimitStore, Verdict
from workers.sdk import Worker
from workers.services.query import llm_rate_limit
from workers.services.query import worker as query_worker


@pytest.mark.parametrize(
    ("text", "expected"), [("100/m", RateLimit(100, 60)), ("10/s", RateLimit(10, 1)), (" 5 / h ", RateLimit(5, 3600))]
)
def test_rate_limits_parse(text: str, expected: RateLimit) -> None:
    assert parse_rate_limit(text) == expected
    assert str(expected) == text.replace(" ", "")


@pytest.mark.parametrize("text", ["", "10", "10/d", "0/s", "-1/s", "1.5/s", "10/sec", "ten/s", "10/s/m"])
def test_bad_rate_limits_are_configuration_errors(text: str) -> None:
    with pytest.raises(ConfigurationError, match="N/s, N/m or N/h"):
        parse_rate_limit(text)
    with pytest.raises(ConfigurationError):
        Worker("svc", rate_limit=text)


def test_max_concurrency_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        Worker("svc", max_concurrency=0)


def test_settings_override_the_workers_limits() -> None:
    worker = Worker("svc", rate_limit="100/m", max_concurrency=20)
    assert resolve_limits(worker, WorkerSettings()) == FlowLimits(RateLimit(100, 60), 20)
    overridden = WorkerSettings.from_env({"BATON_WORKER_RATE_LIMIT": "5/s", "BATON_WORKER_MAX_CONCURRENCY": "3"})
    assert resolve_limits(worker, overridden) == FlowLimits(RateLimit(5, 1), 3)
    assert not resolve_limits(Worker("svc"), WorkerSettings())


def test_the_query_service_limits_its_llm_calls_only_when_it_makes_them() -> None:
    assert llm_rate_limit(WorkerSettings()) is None  # local answers
    remote = WorkerSettings.from_env({"LLM_BASE_URL": "http://llm.example"})
    assert llm_rate_limit(remote) == RateLimit(100, 60)  # the query profile's rate_limit_per_minute
    assert resolve_limits(query_worker, remote) == FlowLimits(RateLimit(100, 60))  # what its processes hold
    assert not resolve_limits(query_worker, WorkerSettings())  # no gate: the tests and benchmark run unslowed
    assert llm_rate_limit(WorkerSettings.from_env({"LLM_BASE_URL": "http://x", "LLM_RATE_LIMIT": "2/s"})) == RateLimit(
        2, 1
    )


@pytest.fixture
async def stores(
    redis_url: str, redis_client: aioredis.Redis, unique: str
) -> AsyncIterator[Callable[..., FlowLimitStore]]:
    service = f"t-limits-{unique}"
    made: list[FlowLimitStore] = []

    def make(limits: FlowLimits, **options: float) -> FlowLimitStore:
        store = FlowLimitStore(redis_url, service, limits, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()
    await redis_client.delete(leases_key(service), rate_key(service), stats_key(service))
    await redis_client.srem(LIMITED_SERVICES_KEY, service)


async def test_the_rate_spaces_starts_one_interval_apart_and_counts_the_waits(
    stores: Callable[..., FlowLimitStore], redis_client: aioredis.Redis
) -> None:
    store = stores(FlowLimits(rate=RateLimit(10, 1)))
    answers = [await store.acquire(None, max_wait=60, waited=0) for _ in range(5)]

    assert all(a is not None and a.verdict is Verdict.GRANTED for a in answers)
    waits = [a.seconds for a in answers if a is not None]
    assert waits[0] == pytest.approx(0, abs=0.02)
    for earlier, later in itertools.pairwise(waits):
        assert later - earlier == pytest.approx(0.1, abs=0.02)  # each reserves the next slot
    stats = await redis_client.hgetall(stats_key(store.service))
    assert int(stats[b"waits:rate"]) == 4
    assert float(stats[b"wait_seconds:rate"]) == pytest.approx(sum(waits), abs=0.05)


async def test_a_rate_slot_further_than_the_task_may_wait_is_not_reserved(
    stores: Callable[..., FlowLimitStore],
) -> None:
    store = stores(FlowLimits(rate=RateLimit(1, 1)))
    assert (await store.acquire(None, max_wait=0.5, waited=0)) is not None
    too_far = await store.acquire(None, max_wait=0.5, waited=0)
    assert too_far is not None and too_far.verdict is Verdict.RATE_TOO_FAR
    assert too_far.seconds == pytest.approx(1, abs=0.05)
    # Nothing was reserved: the next patient task gets the slot the refused one was offered.
    patient = await store.acquire(None, max_wait=60, waited=0)
    assert patient is not None and patient.verdict is Verdict.GRANTED and patient.seconds == pytest.approx(1, abs=0.05)


async def test_leases_cap_the_running_tasks_until_released(
    stores: Callable[..., FlowLimitStore], redis_client: aioredis.Redis
) -> None:
    store = stores(FlowLimits(max_concurrency=2))
    first = await store.acquire("a", max_wait=60, waited=0)
    second = await store.acquire("b", max_wait=60, waited=0)
    full = await store.acquire("c", max_wait=60, waited=0)

    assert first is not None and second is not None and first.verdict is second.verdict is Verdict.GRANTED
    assert full is not None and full.verdict is Verdict.CONCURRENCY_FULL
    assert 5 < full.seconds <= 6  # until the soonest lease expires (LEASE_SECONDS)
    await store.release("a")
    granted = await store.acquire("c", max_wait=60, waited=1.5)
    assert granted is not None and granted.verdict is Verdict.GRANTED and granted.seconds == 0
    assert await redis_client.zrange(leases_key(store.service), 0, -1) == [b"b", b"c"]
    stats = await redis_client.hgetall(stats_key(store.service))
    assert (int(stats[b"waits:concurrency"]), float(stats[b"wait_seconds:concurrency"])) == (1, 1.5)


async def test_an_unrenewed_lease_expires_and_a_renewed_one_does_not(stores: Callable[..., FlowLimitStore]) -> None:
    dead = stores(FlowLimits(max_concurrency=1), lease_seconds=0.3, renew_seconds=3600)  # a killed process
    assert (await dead.acquire("dead", max_wait=60, waited=0)) is not None
    await asyncio.sleep(0.4)
    alive = stores(FlowLimits(max_concurrency=1), lease_seconds=0.3, renew_seconds=0.1)
    await alive.start()
    taken = await alive.acquire("alive", max_wait=60, waited=0)
    assert taken is not None and taken.verdict is Verdict.GRANTED  # the dead process's lease was dropped
    await asyncio.sleep(0.8)  # past its own expiry, renewed meanwhile
    blocked = await dead.acquire("other", max_wait=60, waited=0)
    assert blocked is not None and blocked.verdict is Verdict.CONCURRENCY_FULL


async def test_a_lease_waiting_for_its_rate_slot_keeps_it_through_renewals(
    stores: Callable[..., FlowLimitStore], redis_client: aioredis.Redis
) -> None:
    store = stores(FlowLimits(rate=RateLimit(1, 1), max_concurrency=5), lease_seconds=0.5, renew_seconds=0.1)
    await store.start()
    await store.acquire("now", max_wait=60, waited=0)
    later = await store.acquire("later", max_wait=60, waited=0)
    assert later is not None and later.seconds == pytest.approx(1, abs=0.05)
    await asyncio.sleep(0.3)  # renewals ran: they never shorten the reserved lease below its start + lease
    score = await redis_client.zscore(leases_key(store.service), "later")
    now_s, now_us = await redis_client.time()
    assert score is not None and (score - (now_s * 1_000_000 + now_us)) / 1_000_000 > 0.9


async def test_starting_publishes_the_limits_for_the_orchestrator(
    stores: Callable[..., FlowLimitStore], redis_client: aioredis.Redis
) -> None:
    store = stores(FlowLimits(rate=RateLimit(100, 60), max_concurrency=20))
    await store.start()
    stats = await redis_client.hgetall(stats_key(store.service))
    assert (stats[b"rate_limit"], stats[b"max_concurrency"]) == (b"100/m", b"20")
    assert await redis_client.sismember(LIMITED_SERVICES_KEY, store.service)
    assert 0 < await redis_client.ttl(stats_key(store.service)) <= 24 * 3600


async def test_concurrent_acquires_share_a_round_trip_and_keep_the_arithmetic(
    stores: Callable[..., FlowLimitStore],
) -> None:
    store = stores(FlowLimits(rate=RateLimit(10, 1), max_concurrency=4))
    answers = await asyncio.gather(*(store.acquire(f"lease-{n}", max_wait=60, waited=0) for n in range(6)))

    verdicts = [a.verdict for a in answers if a is not None]
    assert verdicts == [Verdict.GRANTED] * 4 + [Verdict.CONCURRENCY_FULL] * 2  # in call order
    waits = [a.seconds for a in answers[:4] if a is not None]
    assert waits == pytest.approx([0, 0.1, 0.2, 0.3], abs=0.02)
