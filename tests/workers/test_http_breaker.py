"""ctx.http against a fake upstream: Retry-After honoured, the breaker opening, half-opening and closing."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.workers.upstream import Answer, serve_upstream
from workers import CircuitOpenError, HttpConnectionError, HttpStatusError
from workers.breaker import BreakerPolicy, CircuitBreakers
from workers.http import ContextHttpClient, HttpPolicy

COOLDOWN = 1.0


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def client(session: aiohttp.ClientSession, breakers: CircuitBreakers, **policy: float) -> ContextHttpClient:
    return ContextHttpClient(
        session,
        {"X-Tenant-Id": "t"},
        HttpPolicy(backoff_seconds=0.05, **policy),
        breakers=breakers,  # type: ignore[arg-type]
    )


async def test_retry_after_then_5xx_open_the_breaker_which_half_opens_and_closes(
    session: aiohttp.ClientSession,
) -> None:
    breakers = CircuitBreakers(BreakerPolicy(failure_threshold=3, cooldown_seconds=COOLDOWN))
    http = client(session, breakers, max_retries=1)
    async with serve_upstream(
        Answer(429, {"Retry-After": "1"}),
        Answer(500),
        Answer(500),
        Answer(200, delay=0.3),  # the probe: slow enough for a second caller to find it under way
        Answer(200),
    ) as upstream:
        # 429 (failure 1), retried after the second it asked for; 500 (failure 2), retries used up.
        response = await http.get(f"{upstream.url}/a")
        assert (response.status, response.attempts) == (500, 2)
        gap = upstream.arrivals[1] - upstream.arrivals[0]
        assert 1.0 <= gap < 1.8, f"retried {gap:.2f} s after a Retry-After of 1 s"
        with pytest.raises(HttpStatusError, match=r"GET .*/a answered 500 after 2 attempts"):
            response.raise_for_status()

        # 500 (failure 3) opens the breaker: its retry fails fast, and so does the next call.
        with pytest.raises(CircuitOpenError):
            await http.get(f"{upstream.url}/b")
        assert len(upstream.arrivals) == 3
        started = time.monotonic()
        with pytest.raises(CircuitOpenError, match=rf"circuit breaker open for {upstream.url}: half-opens at "):
            await http.post(f"{upstream.url}/c", json={})
        assert time.monotonic() - started < 0.1 and len(upstream.arrivals) == 3

        await asyncio.sleep(COOLDOWN)
        probe, second = await asyncio.gather(
            http.get(f"{upstream.url}/probe"), http.get(f"{upstream.url}/second"), return_exceptions=True
        )
        assert getattr(probe, "status", None) == 200
        assert isinstance(second, CircuitOpenError) and "a probe call is under way" in str(second)
        assert len(upstream.arrivals) == 4  # exactly one probe reached the server

        assert (await http.get(f"{upstream.url}/d")).status == 200  # closed again
        assert len(upstream.arrivals) == 5
        assert [s.state for s in breakers.statuses()] == ["closed"]


async def test_a_429_is_retried_for_any_method_a_5xx_only_when_the_caller_opts_in(
    session: aiohttp.ClientSession,
) -> None:
    http = client(session, CircuitBreakers(), max_retries=2)
    async with serve_upstream(Answer(429, {"Retry-After": "0"}), Answer(200)) as upstream:
        assert (await http.post(f"{upstream.url}/x", json={})).status == 200
        assert len(upstream.arrivals) == 2
    async with serve_upstream(Answer(503), Answer(503), Answer(200)) as upstream:
        assert (await http.post(f"{upstream.url}/x", json={})).status == 503
        assert len(upstream.arrivals) == 1
        assert (await http.post(f"{upstream.url}/x", json={}, idempotent=True)).status == 200
        assert len(upstream.arrivals) == 3


async def test_without_retry_after_the_backoff_grows(session: aiohttp.ClientSession) -> None:
    http = client(session, CircuitBreakers(BreakerPolicy(failure_threshold=10)), max_retries=3)
    async with serve_upstream(Answer(502)) as upstream:
        assert (await http.get(f"{upstream.url}/x")).attempts == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(upstream.arrivals)]
    # base 0.05 s * 2^retry, between half and all of it
    for retry, gap in enumerate(gaps):
        assert 0.05 * 2**retry / 2 <= gap < 0.05 * 2**retry + 0.3, gaps


async def test_no_retry_waits_past_the_tasks_time_budget(session: aiohttp.ClientSession) -> None:
    http = ContextHttpClient(
        session, {}, HttpPolicy(max_retries=3), breakers=CircuitBreakers(), budget_ends_at=time.monotonic() + 2.0
    )
    async with serve_upstream(Answer(429, {"Retry-After": "5"})) as upstream:
        started = time.monotonic()
        response = await http.get(f"{upstream.url}/x")
    assert response.status == 429 and len(upstream.arrivals) == 1 and time.monotonic() - started < 1.0


async def test_an_unreachable_target_opens_its_breaker_and_others_are_unaffected(
    session: aiohttp.ClientSession,
) -> None:
    breakers = CircuitBreakers(BreakerPolicy(failure_threshold=2))
    http = client(session, breakers, max_retries=0)
    for _ in range(2):
        with pytest.raises(HttpConnectionError):
            await http.get("http://127.0.0.1:9/")
    with pytest.raises(CircuitOpenError, match=r"http://127\.0\.0\.1:9"):
        await http.get("http://127.0.0.1:9/other")
    async with serve_upstream(Answer(200)) as upstream:
        assert (await http.get(upstream.url)).status == 200
