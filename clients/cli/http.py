"""The orchestrator's HTTP API for the CLI: one aiohttp session per command; every answer that is not a
success becomes a CliError (clients.cli.errors) with the server's error code and detail."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from clients.cli.config import Target
from clients.cli.errors import Unreachable, refusal

# A request that takes longer than this is an orchestrator in trouble: say so instead of hanging.
REQUEST_TIMEOUT: Final[aiohttp.ClientTimeout] = aiohttp.ClientTimeout(total=60, sock_connect=10)
_MAX_DETAIL_CHARS: Final[int] = 300


class BatonHttp:
    def __init__(self, target: Target, session: aiohttp.ClientSession) -> None:
        self.target = target
        self.session = session

    async def get(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        return (await self.call("GET", path, params=params))[1]

    async def post(self, path: str, body: Any = None) -> Any:
        return (await self.call("POST", path, body=body))[1]

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str | int] | None = None,
        accept: frozenset[int] = frozenset(),
    ) -> tuple[int, Any]:
        """(status, JSON body) of a 2xx answer, or of one of `accept`; a CliError for any other."""
        url = self.target.url + path
        try:
            async with self.session.request(
                method, url, json=body, params=params, headers=self.target.headers()
            ) as response:
                text = await response.text()
                status = response.status
        except aiohttp.InvalidURL as exc:
            raise Unreachable(f"cannot reach the orchestrator: bad URL {exc}") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise Unreachable(f"cannot reach the orchestrator at {self.target.url}: {_reason(exc)}") from None
        answer = _json_or_none(text)
        if 200 <= status < 300 or status in accept:
            return status, answer
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):
            raise refusal(status, answer["error"], answer.get("detail"))
        raise refusal(status, f"http_{status}", text[:_MAX_DETAIL_CHARS] or "(no body)")


@asynccontextmanager
async def connect(target: Target) -> AsyncIterator[BatonHttp]:
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        yield BatonHttp(target, session)


def segment(value: str) -> str:
    """A value (a job id, a service) as one path segment: a typo must not reach another route."""
    return quote(value, safe="")


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return str(exc.os_error.strerror or exc.os_error) if exc.os_error else str(exc)
    return str(exc) or type(exc).__name__
