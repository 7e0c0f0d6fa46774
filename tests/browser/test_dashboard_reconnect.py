"""The dashboard through a TCP proxy that cuts its socket mid-job: the indicator goes reconnecting, then live
again, and the job's timeline ends with every seq, none missing and none twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import Page

from tests.api_server import Api
from tests.browser.dashboard_pages import (
    WAIT_MS,
    create_jobs,
    history_seqs,
    job_record,
    open_dashboard,
    shot,
    timeline_seqs,
    wait_live,
)
from tests.polling import eventually
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.asyncio(loop_scope="session")  # the browser's loop: conftest

RECORD_STATES = """() => {
    window.connStates = [document.getElementById('conn').dataset.state];
    new MutationObserver(() => window.connStates.push(document.getElementById('conn').dataset.state))
        .observe(document.getElementById('conn'), {attributes: true, attributeFilter: ['data-state']});
}"""


@pytest_asyncio.fixture(loop_scope="session")
async def proxy(orchestrator_url: str) -> AsyncIterator[TcpProxy]:
    address = urlsplit(orchestrator_url)
    assert address.hostname is not None and address.port is not None
    proxy = TcpProxy(address.hostname, address.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def test_a_cut_socket_reconnects_and_the_timeline_has_every_seq(
    orchestrator: Api, api_key: str, switchable_worker: None, proxy: TcpProxy, page: Page
) -> None:
    base = f"http://127.0.0.1:{proxy.port}"
    [job_id] = await create_jobs(orchestrator, 1, {"steps": 30, "delay": 0.2})
    await open_dashboard(page, base, api_key, f"#/jobs/{job_id}")
    await wait_live(page)
    await page.evaluate(RECORD_STATES)
    await page.wait_for_selector('.job-status-line [data-status="running"]', timeout=WAIT_MS)

    async def some_progress() -> bool:
        return len(await timeline_seqs(page)) >= 4

    await eventually(some_progress, within=WAIT_MS / 1000)
    for _ in range(2):  # twice: a resume that works once and not again would pass a single cut
        proxy.cut()
        await page.wait_for_function("window.connStates.includes('reconnecting')", timeout=WAIT_MS)
        await page.wait_for_function("window.connStates.at(-1) === 'open'", timeout=WAIT_MS)
        await page.evaluate("window.connStates = ['open']")

    await page.wait_for_selector('.job-status-line [data-status="completed"]', timeout=WAIT_MS)
    record = await job_record(orchestrator, job_id)

    async def every_seq() -> bool:
        return await timeline_seqs(page) == list(range(1, record["seq"] + 1))

    await eventually(every_seq, within=5)
    assert set(await history_seqs(orchestrator, job_id)) <= set(await timeline_seqs(page))
    await shot(page, "job-after-reconnect")
