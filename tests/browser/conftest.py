"""Fixtures of the browser tests: a real orchestrator on an HTTP port, a worker of its test service, and a
page of Debian's chromium driven by playwright, failing the test on any console or page error.

Fixtures:
- `orchestrator`: tests/api_server.py's `Api` (two uuid tenants, a uuid service and job type), served on a
  real loopback port.
- `orchestrator_url`: its base URL, "http://127.0.0.1:<port>" (no trailing slash).
- `api_key` / `other_api_key`: tenant A's and tenant B's API keys; `admin_key`: the admin key.
- `worker`: a running worker of the test service (harness.stepping_worker: {"steps", "delay", "fail"}).
- `switchable_worker`: one without retries whose "fail" payloads fail only while `failing.on` (a FailSwitch).
- `browser`: a headless chromium (playwright Browser), one for the session (launching it took 2-7 s a test);
  every test gets its own context of it (`page`), so no cookie, storage or cache crosses from one to another.
- `redis_client`: the root conftest's, on the session's loop.

Every async fixture and test here runs on the session's event loop (each test module says so in `pytestmark`):
the browser is a session fixture, and playwright's objects belong to the loop that made them.
- `page_errors`: the page's ErrorLog; `page_errors.allow(regex)` lets an expected error through.
- `page`: a fresh page (about:blank) whose console errors and page errors fail the test at teardown.
- `origin_page`: `page` on a blank document of the orchestrator's origin (for `import('/static/baton.js')`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from tests.api_server import Api, serve_api
from tests.browser.harness import ErrorLog, FailSwitch, chromium_executable, open_blank, stepping_worker
from tests.conftest import pooled_redis
from tests.workers.helpers import running
from workers import RetryPolicy

try:
    from playwright.async_api import Browser, Page, async_playwright
except ImportError as missing:  # a clear failure, never a skip
    raise RuntimeError(
        "the browser tests need playwright's Python package: pip install -e '.[test]' "
        "(never `playwright install`: the tests drive Debian's chromium)"
    ) from missing


@pytest_asyncio.fixture(loop_scope="session")
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = pooled_redis(redis_url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def orchestrator(
    rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str
) -> AsyncIterator[Api]:
    async with serve_api(rabbitmq_url, redis_url, redis_client, unique) as api:
        yield api


@pytest.fixture
def orchestrator_url(orchestrator: Api) -> str:
    return str(orchestrator.client.make_url("/")).rstrip("/")


@pytest.fixture
def api_key(orchestrator: Api) -> str:
    return orchestrator.headers_a["Authorization"].removeprefix("Bearer ")


@pytest.fixture
def other_api_key(orchestrator: Api) -> str:
    return orchestrator.headers_b["Authorization"].removeprefix("Bearer ")


@pytest.fixture
def admin_key(orchestrator: Api) -> str:
    assert orchestrator.settings is not None and orchestrator.settings.admin_key is not None
    return orchestrator.settings.admin_key


@pytest_asyncio.fixture(loop_scope="session")
async def worker(orchestrator: Api, rabbitmq_url: str, redis_url: str) -> AsyncIterator[None]:
    async with running(stepping_worker(orchestrator.service, orchestrator.job_type), rabbitmq_url, redis_url=redis_url):
        yield


@pytest.fixture
def failing() -> FailSwitch:
    """Turns the `switchable_worker`'s failures on (the default) and off."""
    return FailSwitch()


@pytest_asyncio.fixture(loop_scope="session")
async def switchable_worker(
    orchestrator: Api, rabbitmq_url: str, redis_url: str, failing: FailSwitch
) -> AsyncIterator[None]:
    """A worker of the test service without retries whose "fail" payloads fail only while `failing.on`."""
    worker = stepping_worker(orchestrator.service, orchestrator.job_type, failing, RetryPolicy(max_retries=0))
    async with running(worker, rabbitmq_url, redis_url=redis_url):
        yield


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_executable()
    async with async_playwright() as playwright:
        # --no-sandbox: CI and this machine run the tests as root, where chromium's sandbox refuses to start.
        launched = await playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def page_errors() -> ErrorLog:
    return ErrorLog()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser, page_errors: ErrorLog) -> AsyncIterator[Page]:
    context = await browser.new_context()
    opened = await context.new_page()
    opened.on("console", page_errors.on_console)
    opened.on("pageerror", page_errors.on_page_error)
    try:
        yield opened
    finally:
        await context.close()
    unexpected = page_errors.unexpected()
    assert not unexpected, "the page logged errors:\n" + "\n".join(unexpected)


@pytest_asyncio.fixture(loop_scope="session")
async def origin_page(page: Page, orchestrator_url: str) -> Page:
    await open_blank(page, orchestrator_url)
    return page
