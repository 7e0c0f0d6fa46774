"""GET /docs in Debian's chromium: Swagger UI renders the API's document without a request to any other origin."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.async_api import Page, Request

pytestmark = pytest.mark.asyncio(loop_scope="session")  # the browser's loop: conftest


async def test_the_page_renders_the_document_with_no_request_elsewhere(page: Page, orchestrator_url: str) -> None:
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(orchestrator_url))
    requested: list[str] = []
    failed: list[str] = []

    def on_request(request: Request) -> None:
        requested.append(request.url)

    def on_failure(request: Request) -> None:
        failed.append(request.url)

    page.on("request", on_request)
    page.on("requestfailed", on_failure)
    await page.goto(orchestrator_url + "/docs")
    title = page.locator(".information-container .title")
    await title.wait_for(timeout=15_000)
    assert "Baton orchestrator" in await title.inner_text()
    await page.locator(".opblock-summary-path[data-path='/jobs/{job_id}/retry']").wait_for(timeout=5_000)
    assert requested and all(url.startswith(origin + "/") for url in requested), requested
    assert f"{origin}/openapi.json" in requested
    assert failed == []
