"""`ctx.http`: outgoing HTTP calls that carry the task's context ids, through a circuit breaker per target.

One aiohttp ClientSession and one CircuitBreakers are shared by the whole process (connection pooling,
one view of each upstream's health); each task gets a light `ContextHttpClient` bound to its own
headers and time budget. Which failures are retried and after how long is `workers.upstream_retry`'s
call: a 429 for any method, a 5xx or a lost connection for idempotent ones (or when the caller says
the call is idempotent), after the upstream's Retry-After or an exponential backoff; never past the
task's time budget.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from protocol.envelope import TaskEnvelope, utc_now
from workers.breaker import CircuitBreakers
from workers.errors import HttpConnectionError, HttpStatusError
from workers.upstream_retry import IDEMPOTENT_METHODS, BackoffPolicy, is_upstream_failure, may_retry

log = logging.getLogger(__name__)

_EXCERPT_CHARS: Final[int] = 300


def context_headers(envelope: TaskEnvelope) -> dict[str, str]:
    """The headers that propagate a task's ids to the services it calls."""
    headers = envelope.context.as_headers()
    headers["X-Tenant-Id"] = envelope.tenant_id
    headers["X-Global-Task-Id"] = envelope.global_task_id
    headers["X-Task-Id"] = envelope.task_id
    if envelope.session_id is not None:
        headers["X-Session-Id"] = envelope.session_id
    return headers


@dataclass(frozen=True)
class HttpPolicy(BackoffPolicy):
    timeout_seconds: float = 30.0
    max_retries: int = 2


@dataclass(frozen=True)
class HttpResponse:
    """A fully read response: no connection is held once a call returns."""

    method: str
    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    attempts: int = 1  # calls sent, retries included

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self, encoding: str = "utf-8") -> str:
        return self.body.decode(encoding, errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def raise_for_status(self) -> HttpResponse:
        if not self.ok:
            raise HttpStatusError(self.method, self.url, self.status, self.text()[:_EXCERPT_CHARS], self.attempts)
        return self


class ContextHttpClient:
    """The HTTP client of one task; every request carries the task's context headers."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        headers: Mapping[str, str],
        policy: HttpPolicy,
        *,
        breakers: CircuitBreakers,
        budget_ends_at: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._headers = dict(headers)
        self._policy = policy
        self._breakers = breakers
        self._budget_ends_at = budget_ends_at  # on `clock`: the task's deadline or time limit, whichever comes first
        self._clock = clock

    @property
    def headers(self) -> Mapping[str, str]:
        return dict(self._headers)

    async def get(self, url: str, **kwargs: Any) -> HttpResponse:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> HttpResponse:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> HttpResponse:
        return await self.request("PUT", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> HttpResponse:
        return await self.request("DELETE", url, **kwargs)

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        idempotent: bool | None = None,
    ) -> HttpResponse:
        """Send one request through the target's breaker and read its body, retrying as the module says.

        `idempotent=True` lets a POST be sent again after a 5xx or a lost connection (a 429 is retried
        for any method); with None the method decides. Raises CircuitOpenError when the target's
        breaker is open, HttpConnectionError when no response came back after every retry; a 4xx/5xx
        response is returned (`raise_for_status()` turns it into an HttpStatusError naming the status
        and the attempts).
        """
        method = method.upper()
        # Context ids win over caller headers: propagation must not be lost by accident.
        merged = {**(headers or {}), **self._headers}
        replayable = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        max_retries = self._policy.max_retries if retries is None else retries
        client_timeout = aiohttp.ClientTimeout(total=timeout or self._policy.timeout_seconds)
        breaker = self._breakers.for_url(url)
        attempts = 0
        while True:
            probe = breaker.admit()
            attempts += 1
            try:
                async with self._session.request(
                    method, url, params=params, json=json, data=data, headers=merged, timeout=client_timeout
                ) as response:
                    body = await response.read()
                    result = HttpResponse(method, url, response.status, dict(response.headers), body, attempts)
            except (aiohttp.ClientError, TimeoutError) as exc:
                breaker.record(success=False, probe=probe)
                delay = self._retry_delay(None, attempts, max_retries, replayable, None)
                if delay is None:
                    tries = f" ({attempts} attempts)" if attempts > 1 else ""
                    raise HttpConnectionError(f"{method} {url}: {type(exc).__name__}: {exc}{tries}") from exc
                log.debug("%s %s failed (%s), retry %d/%d in %.2f s", method, url, exc, attempts, max_retries, delay)
            except BaseException:
                breaker.release(probe=probe)
                raise
            else:
                breaker.record(success=not is_upstream_failure(result.status), probe=probe)
                delay = self._retry_delay(result.status, attempts, max_retries, replayable, result.headers)
                if delay is None:
                    return result
                log.debug(
                    "%s %s answered %d, retry %d/%d in %.2f s", method, url, result.status, attempts, max_retries, delay
                )
            await asyncio.sleep(delay)

    def _retry_delay(
        self, status: int | None, attempts: int, max_retries: int, replayable: bool, headers: Mapping[str, str] | None
    ) -> float | None:
        """The wait before sending again, or None: no retry allowed, none left, or none that fits the task's time."""
        if attempts > max_retries or not may_retry(status, idempotent=replayable):
            return None
        retry_after = None if headers is None else _header(headers, "Retry-After")
        delay = self._policy.delay(attempts - 1, retry_after, utc_now())
        if self._budget_ends_at is not None and self._clock() + delay >= self._budget_ends_at:
            return None
        return delay


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively: `HttpResponse.headers` is a plain dict of what came back."""
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)
