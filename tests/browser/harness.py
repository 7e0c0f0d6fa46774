"""What the browser tests share besides fixtures: the console and page error log, a blank page of a given
origin, and the test service's worker (progress steps on demand)."""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import ConsoleMessage, Error, Page, Route

from workers import TaskContext, Worker

BLANK_PATH = "/__browser_test_blank__"  # answered by the page itself (page.route), never by the server


def chromium_executable() -> str:
    """Debian's chromium: the browser the tests drive (playwright's own browsers are never downloaded)."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError(
            "the browser tests need Debian's chromium on PATH: apt-get install chromium "
            "(scripts/test.sh installs it when it runs as root or with sudo)"
        )
    return path


@dataclass
class ErrorLog:
    """Console errors and uncaught page errors of one page; the `page` fixture fails the test on any of them
    that no `allow` pattern matches (e.g. the browser's own log line for an expected 401)."""

    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} ({message.location.get('url', '?')})")

    def on_page_error(self, error: Error) -> None:
        self.errors.append(f"page error: {error.name}: {error.message}\n{error.stack or ''}")

    def unexpected(self) -> list[str]:
        return [error for error in self.errors if not any(pattern.search(error) for pattern in self.allowed)]


async def open_blank(page: Page, origin: str) -> None:
    """Put the page on an empty HTML document of `origin`, so `import('/static/baton.js')` and the client's
    requests are same-origin, without loading the dashboard."""

    async def blank(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/html", body="<!doctype html><title>blank</title>")

    await page.route(f"{origin}{BLANK_PATH}", blank)
    await page.goto(f"{origin}{BLANK_PATH}")


def stepping_worker(service: str, job_type: str) -> Worker:
    """A worker of the test service: payload {"steps": n, "delay": s, "fail": message?} reports progress
    n times, `delay` seconds apart (percentage 100*i/n, message "step i"), then returns {"steps": n} or raises."""
    worker = Worker(service, concurrency=8)

    @worker.handler(job_type)
    async def steps(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        count = int(payload.get("steps", 0))
        for step in range(1, count + 1):
            await asyncio.sleep(float(payload.get("delay", 0)))
            await ctx.progress(100 * step / count, f"step {step}")
        if payload.get("fail"):
            raise RuntimeError(str(payload["fail"]))
        return {"steps": count}

    return worker
