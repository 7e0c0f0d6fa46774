"""What the browser tests share besides fixtures: the console and page error log, a blank page of a given
origin, and the test service's worker (progress steps on demand)."""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import ConsoleMessage, Error, Page

from workers import RetryPolicy, TaskContext, Worker

BLANK_PATH = "/static/baton.d.ts"  # a plain-text page of the orchestrator: nothing runs in it


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
    # The browser asks every document's origin for /favicon.ico on its own; a page can say `<link rel="icon">`.
    allowed: list[re.Pattern[str]] = field(default_factory=lambda: [re.compile(r"status of 404 .*/favicon\.ico\)$")])

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
    """Put the page on a document of `origin` that runs nothing (the client's types, as text), so
    `import('/static/baton.js')` and the client's requests are same-origin without loading the dashboard.

    A real answer of the server, not one made up by the page: chromium gives a made-up document no
    network address, and its local-network checks then block sockets to the loopback orchestrator."""
    answer = await page.goto(f"{origin}{BLANK_PATH}")
    assert answer is not None and answer.ok, f"{origin}{BLANK_PATH}: {answer.status if answer else 'no answer'}"


# Loads the client into the page as window.baton (and window.Baton, window.BatonError), records its states
# in window.states, and defines window.waitFor(check, ms) for the tests' page scripts.
_LOAD_CLIENT = """async ({ token, options }) => {
    const { Baton, BatonError } = await import("/static/baton.js");
    Object.assign(window, { Baton, BatonError, states: [] });
    window.baton = new Baton({ token, ...options });
    window.baton.onState((state) => window.states.push(state));
    window.waitFor = async (check, ms = 30000) => {
        const end = Date.now() + ms;
        while (!check()) {
            if (Date.now() > end) throw new Error(`timed out waiting for ${check}`);
            await new Promise((resolve) => setTimeout(resolve, 25));
        }
    };
}"""


async def load_client(page: Page, token: str, **options: Any) -> None:
    """`new Baton({token, ...options})` as window.baton, imported from the orchestrator's /static/baton.js."""
    await page.evaluate(_LOAD_CLIENT, {"token": token, "options": options})


@dataclass
class FailSwitch:
    """While `on`, jobs whose payload says "fail" raise it; a test turns it off to watch a retry or a replay run."""

    on: bool = True


def stepping_worker(
    service: str, job_type: str, failing: FailSwitch | None = None, retry: RetryPolicy | None = None
) -> Worker:
    """A worker of the test service: payload {"steps": n, "delay": s, "fail": message?} reports progress
    n times, `delay` seconds apart (percentage 100*i/n, message "step i"), then returns {"steps": n}, or
    raises `fail` (only while `failing.on`, when a switch is given). `retry`: the worker's retry policy."""
    worker = Worker(service, concurrency=8) if retry is None else Worker(service, concurrency=8, retry=retry)

    @worker.handler(job_type)
    async def steps(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        count = int(payload.get("steps", 0))
        for step in range(1, count + 1):
            await asyncio.sleep(float(payload.get("delay", 0)))
            await ctx.progress(100 * step / count, f"step {step}")
        if payload.get("fail") and (failing is None or failing.on):
            raise RuntimeError(str(payload["fail"]))
        return {"steps": count}

    return worker
