"""One job's messages, live, over `/ws/jobs/{job_id}`: its snapshot, then its events in seq order.

When the link drops, the stream reconnects with backoff and resumes with `?since=<last seq>` (DESIGN
"Clients": the server sends the kept events after it, or the job's snapshot when they are gone), and
drops anything not newer than what it already gave, so a caller sees no gap and no repeat.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from clients.cli.config import Target
from clients.cli.errors import AuthFailed, CliError, NotFound, Unreachable
from clients.cli.http import segment

# Close codes of the orchestrator's WebSocket routes (orchestrator/live/websocket.py).
_CLOSED_UNAUTHORIZED: Final[int] = 4401
_CLOSED_FORBIDDEN: Final[int] = 4403
_CLOSED_NOT_FOUND: Final[int] = 4404
# A socket that hears nothing for this long is pinged; no pong within half of it and it is dead.
_HEARTBEAT_SECONDS: Final[float] = 15.0


@dataclass(frozen=True)
class Backoff:
    initial_seconds: float = 0.5
    max_seconds: float = 10.0
    give_up_seconds: float = 120.0  # without any successful connection

    def delay(self, attempt: int) -> float:
        """Exponential with full jitter on its upper half."""
        ceiling = min(self.max_seconds, self.initial_seconds * 2.0 ** min(attempt, 30))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class JobStream:
    def __init__(
        self,
        target: Target,
        session: aiohttp.ClientSession,
        job_id: str,
        backoff: Backoff | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self._target = target
        self._session = session
        self._job_id = job_id
        self._backoff = backoff or Backoff()
        self._on_retry = on_retry  # told why, before each reconnection
        self._refusal: str | None = None  # the server's last error message, e.g. a cap on sockets
        self.last_seq: int | None = None

    async def messages(self) -> AsyncGenerator[dict[str, Any], None]:
        """Snapshots and events, newest seq only, until the caller stops iterating."""
        failures = 0
        failing_since: float | None = None
        while True:
            self._refusal = None
            try:
                async with aclosing(self._one_connection()) as connection:
                    async for message in connection:
                        failures, failing_since = 0, None
                        yield message
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
            else:
                reason = self._refusal or "the server closed the socket"
            now = time.monotonic()
            failing_since = failing_since if failing_since is not None else now
            if now - failing_since > self._backoff.give_up_seconds:
                raise Unreachable(
                    f"lost the live updates of job {self._job_id} for {self._backoff.give_up_seconds:g} s "
                    f"({reason}); the job goes on: baton status {self._job_id}"
                )
            delay = self._backoff.delay(failures)
            if self._on_retry is not None:
                since = "" if self.last_seq is None else f", resuming after seq {self.last_seq}"
                self._on_retry(f"lost the live updates ({reason}); reconnecting in {delay:.1f} s{since}")
            await asyncio.sleep(delay)
            failures += 1

    async def _one_connection(self) -> AsyncGenerator[dict[str, Any], None]:
        params = {} if self.last_seq is None else {"since": str(self.last_seq)}
        url = f"{self._target.websocket_url}/ws/jobs/{segment(self._job_id)}"
        try:
            ws = await self._session.ws_connect(
                url, params=params, headers=self._target.headers(), heartbeat=_HEARTBEAT_SECONDS
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise _handshake_error(exc, self._job_id) from None
        async with ws:
            async for frame in ws:
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    continue
                message = _parse(frame.data)
                if message is not None and self._is_new(message):
                    yield message
            _raise_for_close(ws.close_code, self._job_id)

    def _is_new(self, message: dict[str, Any]) -> bool:
        kind = message.get("type")
        if kind == "error":
            # A cap on sockets or messages: the server closes the socket next, and a later try may pass.
            self._refusal = f"{message.get('error')}: {message.get('detail')}"
            return False
        seq = message.get("seq")
        if not isinstance(seq, int) or (kind != "job_snapshot" and "event" not in message):
            return False  # connection_established, pong, ...
        if kind == "job_snapshot":
            # A snapshot replaces what came before: taken as long as it is not older.
            fresh = self.last_seq is None or seq >= self.last_seq
        else:
            fresh = self.last_seq is None or seq > self.last_seq
        if fresh:
            self.last_seq = seq
        return fresh


def _parse(data: str) -> dict[str, Any] | None:
    try:
        message = json.loads(data)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _handshake_error(exc: aiohttp.WSServerHandshakeError, job_id: str) -> CliError | aiohttp.ClientError:
    if exc.status in (401, 403):
        return AuthFailed(exc.status, "unauthorized" if exc.status == 401 else "forbidden", exc.message)
    if exc.status == 404:
        return NotFound(404, "job_not_found", f"job {job_id} not found")
    return exc  # anything else is worth another try


def _raise_for_close(code: int | None, job_id: str) -> None:
    if code == _CLOSED_NOT_FOUND:
        raise NotFound(404, "job_not_found", f"job {job_id} not found")
    if code in (_CLOSED_UNAUTHORIZED, _CLOSED_FORBIDDEN):
        raise AuthFailed(401 if code == _CLOSED_UNAUTHORIZED else 403, "unauthorized", "this key cannot follow jobs")
