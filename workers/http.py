"""`ctx.http`: outgoing HTTP calls that carry the task's context ids.

One aiohttp ClientSession is shared by the whole process (connection pooling); each task
gets a light `ContextHttpClient` bound to its own headers. Idempotent methods are retried
with exponential backoff on connection errors, timeouts and 5xx answers; others never are,
since a POST that reached the server must not be sent twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from protocol.envelope import TaskEnvelope
from workers.errors import HttpConnectionError, HttpStatusError

log = logging.getLogger(__name__)

IDEMPOTENT_METHODS: Final[frozenset[str]] = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
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
class HttpPolicy:
    timeout_seconds: float = 30.0
    max_retries: int = 2
    backoff_seconds: float = 0.2
    max_backoff_seconds: float = 5.0

    def backoff(self, retry: int) -> float:
        return float(min(self.max_backoff_seconds, self.backoff_seconds * 2**retry))


@dataclass(frozen=True)
class HttpResponse:
    """A fully read response: no connection is held once a call returns."""

    method: str
    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self, encoding: str = "utf-8") -> str:
        return self.body.decode(encoding, errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def raise_for_status(self) -> HttpResponse:
        if not self.ok:
            raise HttpStatusError(self.method, self.url, self.status, self.text()[:_EXCERPT_CHARS])
        return self


class ContextHttpClient:
    """The HTTP client of one task; every request carries the task's context headers."""

    def __init__(self, session: aiohttp.ClientSession, headers: Mapping[str, str], policy: HttpPolicy) -> None:
        self._session = session
        self._headers = dict(headers)
        self._policy = policy

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
    ) -> HttpResponse:
        """Send one request and read its body; retries only idempotent methods.

        Raises HttpConnectionError when no response came back; a 4xx/5xx response is
        returned (call `raise_for_status()` to turn it into an HttpStatusError).
        """
        method = method.upper()
        # Context ids win over caller headers: propagation must not be lost by accident.
        merged = {**(headers or {}), **self._headers}
        max_retries = self._policy.max_retries if retries is None else retries
        if method not in IDEMPOTENT_METHODS:
            max_retries = 0
        client_timeout = aiohttp.ClientTimeout(total=timeout or self._policy.timeout_seconds)
        retry = 0
        while True:
            try:
                async with self._session.request(
                    method, url, params=params, json=json, data=data, headers=merged, timeout=client_timeout
                ) as response:
                    body = await response.read()
                    result = HttpResponse(method, url, response.status, dict(response.headers), body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if retry >= max_retries:
                    raise HttpConnectionError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
                log.debug("%s %s failed (%s), retry %d/%d", method, url, exc, retry + 1, max_retries)
            else:
                if result.status < 500 or retry >= max_retries:
                    return result
                log.debug("%s %s answered %d, retry %d/%d", method, url, result.status, retry + 1, max_retries)
            await asyncio.sleep(self._policy.backoff(retry))
            retry += 1
