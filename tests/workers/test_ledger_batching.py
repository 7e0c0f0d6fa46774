"""Concurrent ledger calls share Redis round trips, and each caller still gets its own answer.

The real Redis; the commands that really go out are counted by wrapping the ledger's client.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from protocol.envelope import TaskEnvelope
from protocol.ledger import LEDGER_TTL_SECONDS, cancelled_key, done_key
from tests.workers.helpers import envelope
from workers.runtime.ledger import LedgerState, TaskLedger


class Wire:
    """The commands a ledger's client sends, by name; can hold one in flight or fail one on cue."""

    def __init__(self, ledger: TaskLedger) -> None:
        self.sent: list[str] = []
        self.hold: asyncio.Event | None = None  # set: the next command waits for it before going out
        self.in_flight = asyncio.Event()
        self.fail_from = 0  # the nth command (1-based) and later raise a connection error; 0: none
        client = ledger._redis
        real: Callable[..., Awaitable[Any]] = client.execute_command

        async def execute_command(*args: Any, **options: Any) -> Any:
            self.sent.append(str(args[0]).upper())
            if self.fail_from and len(self.sent) >= self.fail_from:
                raise RedisConnectionError("link cut by the test")
            hold, self.hold = self.hold, None
            if hold is not None:
                self.in_flight.set()
                await hold.wait()
            return await real(*args, **options)

        client.execute_command = execute_command  # type: ignore[method-assign]

    def count(self, command: str) -> int:
        return self.sent.count(command)


@pytest.fixture
async def ledger(redis_url: str) -> AsyncIterator[TaskLedger]:
    ledger = TaskLedger(redis_url)
    yield ledger
    await ledger.close()


async def _mixed_tasks(
    redis_client: aioredis.Redis, ledger_keys: list[str], unique: str, each: int
) -> list[tuple[TaskEnvelope, LedgerState]]:
    """`each` tasks done, cancelled, clear, and replayed past their done attempt (clear), shuffled."""
    cases: list[tuple[TaskEnvelope, LedgerState]] = []
    for i in range(each):
        done = envelope("svc", "record", {}, attempt=2, global_task_id=f"job-done-{unique}-{i}")
        cancelled = envelope("svc", "record", {}, global_task_id=f"job-cancelled-{unique}-{i}")
        clear = envelope("svc", "record", {}, global_task_id=f"job-clear-{unique}-{i}")
        replayed = envelope("svc", "record", {}, attempt=3, global_task_id=f"job-replayed-{unique}-{i}")
        await redis_client.set(done_key(done.task_id), b"2", ex=60)
        await redis_client.set(cancelled_key(cancelled.tenant_id, cancelled.global_task_id), b"1", ex=60)
        await redis_client.set(done_key(replayed.task_id), b"2", ex=60)
        ledger_keys += [
            done_key(done.task_id),
            cancelled_key(cancelled.tenant_id, cancelled.global_task_id),
            done_key(replayed.task_id),
        ]
        cases += [
            (done, LedgerState.DONE),
            (cancelled, LedgerState.CANCELLED),
            (clear, LedgerState.CLEAR),
            (replayed, LedgerState.CLEAR),
        ]
    random.shuffle(cases)
    return cases


async def test_concurrent_checks_share_one_mget_and_each_caller_gets_its_own_state(
    ledger: TaskLedger, redis_client: aioredis.Redis, ledger_keys: list[str], unique: str
) -> None:
    cases = await _mixed_tasks(redis_client, ledger_keys, unique, each=10)
    wire = Wire(ledger)

    states = await asyncio.gather(*(ledger.check(task) for task, _ in cases))

    assert list(states) == [expected for _, expected in cases]
    # The first is sent at once; the 39 that came while it was in flight go together in the next.
    assert wire.sent == ["MGET", "MGET"]
    assert ledger.errors == 0


async def test_a_lone_check_is_sent_at_once_each_time(
    ledger: TaskLedger, redis_client: aioredis.Redis, ledger_keys: list[str], unique: str
) -> None:
    cases = await _mixed_tasks(redis_client, ledger_keys, unique, each=1)
    wire = Wire(ledger)

    for task, expected in cases:
        async with asyncio.timeout(1):
            assert await ledger.check(task) is expected

    assert wire.sent == ["MGET"] * len(cases)


async def test_concurrent_marks_share_one_script_call_and_keep_the_highest_attempt(
    ledger: TaskLedger, redis_client: aioredis.Redis, ledger_keys: list[str], unique: str
) -> None:
    warm_up = f"warm-up-{unique}"
    ledger_keys.append(done_key(warm_up))
    await ledger.mark_done(warm_up, 1)  # loads the script, so NOSCRIPT never adds a round trip below
    contested, others = f"contested-{unique}", [f"other-{unique}-{i}" for i in range(10)]
    ledger_keys += [done_key(contested), *(done_key(task_id) for task_id in others)]
    await redis_client.set(done_key(others[0]), b"7", ex=60)  # already higher: must stay 7
    marks = [(contested, attempt) for attempt in range(1, 21)] + [(task_id, 5) for task_id in others]
    random.shuffle(marks)
    wire = Wire(ledger)

    await asyncio.gather(*(ledger.mark_done(task_id, attempt) for task_id, attempt in marks))

    assert wire.sent == ["EVALSHA", "EVALSHA"]
    assert await redis_client.get(done_key(contested)) == b"20"
    assert await redis_client.mget([done_key(task_id) for task_id in others]) == [b"7"] + [b"5"] * 9
    assert LEDGER_TTL_SECONDS - 60 < await redis_client.ttl(done_key(contested)) <= LEDGER_TTL_SECONDS
    await ledger.mark_done(contested, 3)  # a late duplicate of an older attempt
    assert await redis_client.get(done_key(contested)) == b"20"
    assert ledger.errors == 0


async def test_a_redis_failure_mid_batch_answers_every_caller_in_it_unknown(
    ledger: TaskLedger,
    redis_client: aioredis.Redis,
    ledger_keys: list[str],
    unique: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = envelope("svc", "record", {}, global_task_id=f"job-first-{unique}")
    ledger_keys.append(done_key(first.task_id))
    await redis_client.set(done_key(first.task_id), b"1", ex=60)
    cases = await _mixed_tasks(redis_client, ledger_keys, unique, each=3)
    wire = Wire(ledger)
    wire.hold, wire.fail_from = asyncio.Event(), 2
    hold = wire.hold

    with caplog.at_level(logging.WARNING, logger="workers.runtime.ledger"):
        leading = asyncio.create_task(ledger.check(first))
        await wire.in_flight.wait()
        batched = asyncio.gather(*(ledger.check(task) for task, _ in cases))
        await asyncio.sleep(0.05)  # all of them queued behind the held round trip
        hold.set()
        states = await batched
        assert await leading is LedgerState.DONE  # its own round trip went through
        assert list(states) == [LedgerState.UNKNOWN] * len(cases)
        assert ledger.errors == len(cases)  # one failed round trip, counted per caller that it failed
        # Backing off now: Redis is not asked again for a while.
        assert await ledger.check(first) is LedgerState.UNKNOWN
        await ledger.mark_done(first.task_id, 2)  # swallowed

    assert wire.sent == ["MGET", "MGET"]
    assert len(caplog.records) == 1 and "running tasks without it" in caplog.records[0].getMessage()


async def test_a_failed_batch_of_marks_is_swallowed_for_every_caller(
    ledger: TaskLedger, redis_client: aioredis.Redis, ledger_keys: list[str], unique: str
) -> None:
    held, batched = f"held-{unique}", [f"batched-{unique}-{i}" for i in range(5)]
    ledger_keys += [done_key(held), *(done_key(task_id) for task_id in batched)]
    await ledger.mark_done(f"warm-up-{unique}", 1)
    ledger_keys.append(done_key(f"warm-up-{unique}"))
    wire = Wire(ledger)
    wire.hold, wire.fail_from = asyncio.Event(), 2
    hold = wire.hold

    leading = asyncio.create_task(ledger.mark_done(held, 1))
    await wire.in_flight.wait()
    rest = asyncio.gather(*(ledger.mark_done(task_id, 1) for task_id in batched))
    await asyncio.sleep(0.05)
    hold.set()
    await rest  # no caller sees the error
    await leading

    assert wire.sent == ["EVALSHA", "EVALSHA"]
    assert ledger.errors == len(batched)
    assert await redis_client.get(done_key(held)) == b"1"
    assert await redis_client.exists(*(done_key(task_id) for task_id in batched)) == 0


async def test_a_call_waiting_behind_a_stuck_round_trip_is_still_bounded_by_the_timeout(
    redis_url: str, redis_client: aioredis.Redis, ledger_keys: list[str], unique: str
) -> None:
    ledger = TaskLedger(redis_url, timeout_seconds=0.1)
    cases = await _mixed_tasks(redis_client, ledger_keys, unique, each=2)
    wire = Wire(ledger)
    wire.hold = asyncio.Event()  # never set: the first round trip never comes back
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        states = await asyncio.gather(*(ledger.check(task) for task, _ in cases))
    finally:
        await ledger.close()

    assert list(states) == [LedgerState.UNKNOWN] * len(cases)
    assert loop.time() - started < 0.5  # about one timeout (2 x 0.1 s), not one per caller
    assert wire.sent == ["MGET"]  # those waiting were answered from the backoff, without asking
    assert ledger.errors >= 1


async def test_calls_waiting_when_the_ledger_closes_answer_unknown(
    ledger: TaskLedger, redis_client: aioredis.Redis, ledger_keys: list[str], unique: str
) -> None:
    cases = await _mixed_tasks(redis_client, ledger_keys, unique, each=2)
    wire = Wire(ledger)
    wire.hold = asyncio.Event()
    hold = wire.hold
    leading = asyncio.create_task(ledger.check(cases[0][0]))
    await wire.in_flight.wait()
    waiting = asyncio.gather(*(ledger.check(task) for task, _ in cases[1:]))
    await asyncio.sleep(0.05)

    await ledger.close()
    hold.set()

    assert list(await waiting) == [LedgerState.UNKNOWN] * (len(cases) - 1)
    await leading  # whatever its own round trip made of the closed client


async def test_checks_and_marks_that_wait_together_share_one_pipeline_and_a_check_sees_its_batchs_marks(
    ledger: TaskLedger, redis_client: aioredis.Redis, ledger_keys: list[str], unique: str
) -> None:
    warm_up = f"warm-up-{unique}"
    ledger_keys.append(done_key(warm_up))
    await ledger.mark_done(warm_up, 1)  # loads the script
    finished = [envelope("svc", "record", {}, global_task_id=f"job-fin-{unique}-{i}") for i in range(5)]
    fresh = [envelope("svc", "record", {}, global_task_id=f"job-new-{unique}-{i}") for i in range(5)]
    ledger_keys += [done_key(task.task_id) for task in finished + fresh]
    wire = Wire(ledger)
    pipelines: list[int] = []
    real_pipeline = ledger._redis.pipeline

    def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipelines.append(1)
        return real_pipeline(*args, **kwargs)

    ledger._redis.pipeline = counted_pipeline  # type: ignore[method-assign]
    release = wire.hold = asyncio.Event()
    blocker = asyncio.create_task(ledger.check(fresh[0]))  # in flight, held: the calls below wait together
    await wire.in_flight.wait()
    marks = [asyncio.create_task(ledger.mark_done(task.task_id, 1)) for task in finished]
    checks = [asyncio.create_task(ledger.check(task)) for task in finished + fresh[1:]]
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.gather(blocker, *marks)
    states = await asyncio.gather(*checks)

    assert wire.sent == ["MGET"] and pipelines == [1]  # the held MGET, then one pipeline for the rest
    assert list(states) == [LedgerState.DONE] * 5 + [LedgerState.CLEAR] * 4  # the marks went first
    assert await redis_client.mget([done_key(task.task_id) for task in finished]) == [b"1"] * 5
    assert ledger.errors == 0


async def test_a_pipeline_that_meets_noscript_loads_the_script_and_still_answers_every_call(
    ledger: TaskLedger, redis_client: aioredis.Redis, ledger_keys: list[str], unique: str
) -> None:
    ledger._mark_done.sha = "0" * 40  # as after a Redis restart: this SHA is unknown to Redis
    done = envelope("svc", "record", {}, global_task_id=f"job-ns-done-{unique}")
    other = envelope("svc", "record", {}, global_task_id=f"job-ns-other-{unique}")
    ledger_keys += [done_key(done.task_id), done_key(other.task_id)]
    await redis_client.set(done_key(other.task_id), b"1", ex=60)
    wire = Wire(ledger)
    release = wire.hold = asyncio.Event()
    blocker = asyncio.create_task(ledger.check(done))
    await wire.in_flight.wait()
    mark = asyncio.create_task(ledger.mark_done(done.task_id, 1))
    check = asyncio.create_task(ledger.check(other))
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.gather(blocker, mark)

    assert await check is LedgerState.DONE
    assert await redis_client.get(done_key(done.task_id)) == b"1"
    assert ledger._mark_done.sha != "0" * 40  # loaded again
    assert ledger.errors == 0
