"""A fake upstream for the HTTP client tests: an aiohttp server on 127.0.0.1 answering from a script
and recording when each request arrived."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # JSON; {"ok": true} when None
    delay: float = 0.0  # seconds before answering


@dataclass
class Upstream:
    url: str
    script: list[Answer]  # answered in order; the last one repeats
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each request

    async def handle(self, request: web.Request) -> web.Response:
        self.arrivals.append(time.monotonic())
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if answer.delay:
            await asyncio.sleep(answer.delay)
        body = {"ok": True} if answer.body is None else answer.body
        return web.json_response(body, status=answer.status, headers=answer.headers)


@asynccontextmanager
async def serve_upstream(*script: Answer) -> AsyncIterator[Upstream]:
    upstream = Upstream("", list(script) or [Answer()])
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    upstream.url = f"http://127.0.0.1:{port}"
    try:
        yield upstream
    finally:
        await runner.cleanup()
