"""`ctx.submit_job` against a scripted stand-in for the orchestrator (a local aiohttp server): what it
sends, which answers it tries again and after how long, and which it turns into which error."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from protocol.envelope import ContextIds, TaskEnvelope
from workers import ChildJobRefused, OrchestratorUnavailable, PermanentError
from workers.breaker import BreakerPolicy, CircuitBreakers
from workers.http import ContextHttpClient, HttpPolicy, context_headers
from workers.runtime.child_jobs import OrchestratorJobs

POLICY = HttpPolicy(timeout_seconds=5.0, max_retries=2, backoff_seconds=0.01, max_backoff_seconds=0.02)


@dataclass
class Script:
    """The answers POST /jobs gives, in turn (the last one again once they run out), and what came in.
    An answer is made per request: aiohttp sends a response object once."""

    answers: list[Callable[[], web.Response]] = field(default_factory=list)
    requests: list[tuple[float, Mapping[str, str], Any]] = field(default_factory=list)  # headers: any case

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((time.monotonic(), request.headers.copy(), await request.json()))
        return (self.answers.pop(0) if len(self.answers) > 1 else self.answers[0])()


@pytest.fixture
async def orchestrator() -> AsyncIterator[tuple[str, Script]]:
    script = Script()
    app = web.Application()
    app.router.add_post("/jobs", script.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", script
    await runner.cleanup()


PARENT = TaskEnvelope(
    global_task_id="job-1",
    tenant_id="tenant-a",
    session_id="s-1",
    type="parent",
    service="svc",
    priority=3,
    context=ContextIds(request_id="r-1", user_id="u-1"),
)


async def submit(
    url: str,
    *,
    ordinal: int = 1,
    priority: int | None = None,
    token: str | None = "tok",
    breakers: CircuitBreakers | None = None,
) -> str:
    async with aiohttp.ClientSession() as session:
        http = ContextHttpClient(
            session, context_headers(PARENT), POLICY, breakers=CircuitBreakers() if breakers is None else breakers
        )
        jobs = OrchestratorJobs(url + "/", "svc", token)
        return await jobs.submit(PARENT, http, "child", {"a": 1}, priority=priority, ordinal=ordinal)


def answer(body: Any, status: int = 200, **headers: str) -> Callable[[], web.Response]:
    return lambda: web.json_response(body, status=status, headers=headers)


def error(status: int, code: str, detail: Any, **headers: str) -> Callable[[], web.Response]:
    return answer({"error": code, "detail": detail}, status, **headers)


ACCEPTED = answer({"job_id": "child-1", "status": "queued"}, 202)


async def test_the_request_names_tenant_parent_and_key_and_carries_the_parents_ids(
    orchestrator: tuple[str, Script],
) -> None:
    url, script = orchestrator
    script.answers = [ACCEPTED]
    assert await submit(url, ordinal=3) == "child-1"
    assert await submit(url, ordinal=4, priority=9) == "child-1"
    (_, headers, body), (_, _, other) = script.requests
    assert headers["Authorization"] == "Bearer tok" and headers["X-Baton-Tenant"] == "tenant-a"
    assert (headers["X-Global-Task-Id"], headers["X-Task-Id"], headers["X-Request-Id"]) == (
        "job-1",
        PARENT.task_id,
        "r-1",
    )
    assert body == {
        "type": "child",
        "payload": {"a": 1},
        "priority": 3,
        "session_id": "s-1",
        "context": {"request_id": "r-1", "user_id": "u-1"},
        "idempotency_key": f"{PARENT.task_id}:3",
    }
    assert (other["priority"], other["idempotency_key"]) == (9, f"{PARENT.task_id}:4")


async def test_a_cached_answer_is_a_job_id_too(orchestrator: tuple[str, Script]) -> None:
    url, script = orchestrator
    script.answers = [answer({"job_id": "made-earlier", "status": "completed", "from_cache": True})]
    assert await submit(url) == "made-earlier"


async def test_busy_and_failing_answers_are_tried_again_after_their_retry_after(
    orchestrator: tuple[str, Script],
) -> None:
    url, script = orchestrator
    busy = error(429, "rate_limited", "slow down", **{"Retry-After": "1"})
    script.answers = [busy, error(503, "broker_unavailable", "down"), ACCEPTED]
    assert await submit(url) == "child-1"
    times = [at for at, _, _ in script.requests]
    assert len(times) == 3 and times[1] - times[0] >= 0.95  # the 429's Retry-After, not the 10 ms backoff
    assert len({body["idempotency_key"] for _, _, body in script.requests}) == 1


async def test_after_the_last_try_the_error_is_retryable(orchestrator: tuple[str, Script]) -> None:
    url, script = orchestrator
    script.answers = [error(500, "internal_error", "boom")]
    with pytest.raises(OrchestratorUnavailable) as raised:
        await submit(url)
    assert len(script.requests) == 3 and not isinstance(raised.value, PermanentError)
    assert "500 internal_error after 3 attempts: boom" in str(raised.value)


async def test_an_open_breaker_is_retryable_and_sends_nothing(orchestrator: tuple[str, Script]) -> None:
    url, script = orchestrator
    script.answers = [error(503, "broker_unavailable", "down")]
    breakers = CircuitBreakers(BreakerPolicy(failure_threshold=2, cooldown_seconds=60))
    with pytest.raises(OrchestratorUnavailable):
        await submit(url, breakers=breakers)  # the first two tries open it; the third is not sent
    sent = len(script.requests)
    with pytest.raises(OrchestratorUnavailable, match="circuit breaker open"):
        await submit(url, breakers=breakers)
    assert len(script.requests) == sent == 2


@pytest.mark.parametrize(
    ("refusal", "status", "error_type", "detail"),
    [
        (error(422, "unknown_job_type", "no service serves child"), 422, "unknown_job_type", "no service serves child"),
        (error(422, "validation_error", [{"loc": ["priority"]}]), 422, "validation_error", '[{"loc": ["priority"]}]'),
        (error(409, "idempotency_conflict", "other body"), 409, "idempotency_conflict", "other body"),
        (lambda: web.Response(status=404, text="<html>not here</html>"), 404, "http_404", "<html>not here</html>"),
        (answer({"status": "queued"}, 202), 202, "unexpected_answer", "no job_id in the answer"),
    ],
)
async def test_a_refusal_is_permanent_and_says_what_the_orchestrator_said(
    orchestrator: tuple[str, Script], refusal: Callable[[], web.Response], status: int, error_type: str, detail: str
) -> None:
    url, script = orchestrator
    script.answers = [refusal]
    with pytest.raises(ChildJobRefused) as raised:
        await submit(url)
    assert isinstance(raised.value, PermanentError) and len(script.requests) == 1
    assert (raised.value.status, raised.value.error_type) == (status, error_type)
    assert detail in raised.value.error


async def test_without_a_token_nothing_is_sent(orchestrator: tuple[str, Script]) -> None:
    url, script = orchestrator
    with pytest.raises(ChildJobRefused, match="BATON_SERVICE_TOKEN has no token for service 'svc'"):
        await submit(url, token=None)
    assert script.requests == []
