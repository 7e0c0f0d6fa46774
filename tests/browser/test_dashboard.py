"""The dashboard in Debian's chromium against a real orchestrator and worker: the key, the runs list live,
filters and paging, job detail, cancel, a failure retried in one click."""

from __future__ import annotations

import json

import pytest
from playwright.async_api import Page, Route

from tests.api_server import Api
from tests.browser.dashboard_pages import (
    WAIT_MS,
    create_jobs,
    failing_line,
    history_seqs,
    job_record,
    open_dashboard,
    page_info_is,
    row,
    row_ids,
    shot,
    timeline_seqs,
    wait_live,
)
from tests.browser.harness import ErrorLog, FailSwitch
from tests.polling import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")  # the browser's loop: conftest


async def test_the_key_is_taken_from_the_url_kept_and_removed_from_the_address_bar(
    orchestrator_url: str, api_key: str, page: Page
) -> None:
    await open_dashboard(page, orchestrator_url, api_key)
    await wait_live(page)
    assert "token" not in page.url
    assert await page.evaluate("localStorage.getItem('baton.dashboard.key')") == api_key
    assert await page.text_content("#role") == "tenant key"

    await page.goto(orchestrator_url + "/#/runs")  # no token: the kept key signs in
    await wait_live(page)
    await page.click("#sign-out")
    await page.wait_for_selector("#key-input")
    assert await page.evaluate("localStorage.getItem('baton.dashboard.key')") is None
    await shot(page, "signin")

    await page.fill("#key-input", api_key)
    await page.click("#key-submit")
    await wait_live(page)

    await page.click("#sign-out")
    await page.goto(f"{orchestrator_url}/#token={api_key}")  # a fragment is never sent to the server
    await wait_live(page)
    assert "token" not in page.url
    assert await page.evaluate("localStorage.getItem('baton.dashboard.key')") == api_key


async def test_a_refused_key_asks_for_another(orchestrator_url: str, page_errors: ErrorLog, page: Page) -> None:
    page_errors.allow(r"status of 401")  # chromium logs the refused request itself
    await page.goto(orchestrator_url + "/?token=not-a-key")
    await page.wait_for_selector("#key-input")
    assert "refused" in (await page.text_content(".notice") or "")
    assert "token" not in page.url
    assert await page.evaluate("localStorage.getItem('baton.dashboard.key')") is None


async def test_submitted_jobs_appear_on_top_with_their_type_and_bars_move_to_completed(
    orchestrator: Api, orchestrator_url: str, api_key: str, switchable_worker: None, page: Page
) -> None:
    before = await create_jobs(orchestrator, 2, {"steps": 1})
    await open_dashboard(page, orchestrator_url, api_key)
    await wait_live(page)
    await page.wait_for_selector(f'#runs-body tr[data-job-id="{before[-1]}"]', timeout=WAIT_MS)
    # Every bar value the page shows, sampled by the page itself as the rows change.
    await page.evaluate("""() => {
        window.seenPercents = [];
        new MutationObserver(() => document.querySelectorAll('#runs-body [role=progressbar]')
            .forEach(bar => window.seenPercents.push(Number(bar.getAttribute('aria-valuenow')))))
            .observe(document.getElementById('runs-body'), {subtree: true, attributes: true, childList: true});
    }""")

    await page.fill("#submit-type", orchestrator.job_type)
    await page.fill("#submit-payload", '{"steps": 5, "delay": 0.3}')
    await page.fill("#submit-count", "3")
    await page.click("#submit-job")

    async def three_new_on_top() -> bool:
        return len(set(await row_ids(page)) - set(before)) == 3

    await eventually(three_new_on_top, within=WAIT_MS / 1000)
    ids = await row_ids(page)
    new = ids[:3]
    assert set(ids[3:5]) == set(before)

    async def typed() -> bool:
        return all(r["type"] == orchestrator.job_type for r in [await row(page, job_id) for job_id in new])

    await eventually(typed, within=2)

    async def all_completed() -> bool:
        rows = [await row(page, job_id) for job_id in new]
        return all(r["status"] == "completed" and r["percent"] == 100 for r in rows)

    await eventually(all_completed, within=WAIT_MS / 1000)
    seen = await page.evaluate("window.seenPercents")
    assert any(0 < value < 100 for value in seen), seen  # the bars moved through the steps
    for job_id in new:
        assert (await job_record(orchestrator, job_id))["status"] == "completed"
    await shot(page, "runs")
    await page.set_viewport_size({"width": 390, "height": 844})  # a phone: the table scrolls, the rest wraps
    await shot(page, "runs-phone")


async def test_filters_and_paging(orchestrator: Api, orchestrator_url: str, api_key: str, page: Page) -> None:
    ids = await create_jobs(orchestrator, 27, {"steps": 1})  # no worker: they stay queued
    tagged = await create_jobs(orchestrator, 3, {"steps": 1}, session_id="dash-session")
    await open_dashboard(page, orchestrator_url, api_key)
    await page.wait_for_selector(f'#runs-body tr[data-job-id="{tagged[-1]}"]', timeout=WAIT_MS)
    first_page = await row_ids(page)
    assert len(first_page) == 25
    assert set(first_page[:3]) == set(tagged)  # newest first (a batch's jobs share their creation time)
    assert (await page.text_content("#page-info")) == "1-25 of 30"

    await page.click("#page-next")
    await page.wait_for_function(page_info_is("26-30 of 30"), timeout=WAIT_MS)
    second_page = await row_ids(page)
    assert len(second_page) == 5 and set(first_page + second_page) == set(ids + tagged)
    assert "offset=25" in page.url

    await page.goto(orchestrator_url + "/#/runs")
    await page.wait_for_selector("#filter-session")
    await page.fill("#filter-session", "dash-session")
    await page.click("#apply-filters")
    await page.wait_for_function(page_info_is("1-3 of 3"), timeout=WAIT_MS)
    assert set(await row_ids(page)) == set(tagged)
    assert "session=dash-session" in page.url

    await page.goto(orchestrator_url + "/#/runs?status=completed")
    await page.wait_for_function(page_info_is("0-0 of 0"), timeout=WAIT_MS)

    await page.goto(orchestrator_url + "/#/runs?before=2000-01-01T00:00")
    await page.wait_for_function(page_info_is("0-0 of 0"), timeout=WAIT_MS)
    await page.goto(orchestrator_url + "/#/runs?after=2000-01-01T00:00&type=" + orchestrator.job_type)
    await page.wait_for_function(page_info_is("1-25 of 30"), timeout=WAIT_MS)
    await shot(page, "runs-filtered")


async def test_job_detail_shows_the_timeline_and_the_result(
    orchestrator: Api, orchestrator_url: str, api_key: str, switchable_worker: None, page: Page
) -> None:
    await open_dashboard(page, orchestrator_url, api_key)
    await wait_live(page)
    [job_id] = await create_jobs(orchestrator, 1, {"steps": 4, "delay": 0.3})
    await page.goto(f"{orchestrator_url}/#/jobs/{job_id}")
    await page.wait_for_selector("#job-overview dd", timeout=WAIT_MS)
    await page.wait_for_selector('.job-status-line [data-status="completed"]', timeout=WAIT_MS)
    outcome = "document.getElementById('job-outcome').textContent.includes('\"steps\": 4')"
    await page.wait_for_function(outcome, timeout=WAIT_MS)
    shown = json.loads(await page.text_content("#job-payload") or "null")
    assert shown == {"steps": 4, "delay": 0.3}  # the payload the job was created with, asked for once

    record = await job_record(orchestrator, job_id)

    async def every_seq() -> bool:
        return await timeline_seqs(page) == list(range(1, record["seq"] + 1))  # in order, no gap, none twice

    await eventually(every_seq, within=5)
    assert set(await history_seqs(orchestrator, job_id)) <= set(await timeline_seqs(page))
    assert "step 4" in (await page.text_content("#timeline-body") or "")
    await shot(page, "job-detail")


async def test_a_running_job_is_cancelled_from_its_page(
    orchestrator: Api, orchestrator_url: str, api_key: str, switchable_worker: None, page: Page
) -> None:
    [job_id] = await create_jobs(orchestrator, 1, {"steps": 100, "delay": 0.2})
    await open_dashboard(page, orchestrator_url, api_key, f"#/jobs/{job_id}")
    await page.wait_for_selector('.job-status-line [data-status="running"]', timeout=WAIT_MS)
    await page.click("#job-cancel")
    await page.wait_for_selector('.job-status-line [data-status="cancelled"]', timeout=WAIT_MS)
    assert await page.query_selector("#job-cancel") is None
    assert (await job_record(orchestrator, job_id))["status"] == "cancelled"
    await page.wait_for_selector('#timeline-body [data-status="cancelled"]', timeout=WAIT_MS)


async def test_a_failed_job_shows_its_error_and_one_click_retry_runs_a_new_job(
    orchestrator: Api, orchestrator_url: str, api_key: str, switchable_worker: None, failing: FailSwitch, page: Page
) -> None:
    [job_id] = await create_jobs(orchestrator, 1, {"steps": 1, "fail": "the model is down"})
    await open_dashboard(page, orchestrator_url, api_key, f"#/jobs/{job_id}")
    await page.wait_for_selector('.job-status-line [data-status="failed"]', timeout=WAIT_MS)
    await page.wait_for_selector("#job-error", timeout=WAIT_MS)
    error = await page.text_content("#job-error") or ""
    assert "RuntimeError" in error and "the model is down" in error
    assert await page.get_attribute("#job-traceback", "open") is not None  # shown, and folds away
    trace = await page.text_content("#job-traceback pre") or ""
    assert f'harness.py", line {failing_line()}, in steps' in trace  # the handler's function and line
    assert trace.rstrip().endswith("RuntimeError: the model is down")
    await shot(page, "job-failed")

    failing.on = False
    await page.click("#job-retry")
    another_job = f"location.hash.startsWith('#/jobs/') && !location.hash.endsWith('{job_id}')"
    await page.wait_for_function(another_job, timeout=WAIT_MS)
    new_id = page.url.rsplit("/", 1)[-1]
    await page.wait_for_selector('.job-status-line [data-status="completed"]', timeout=WAIT_MS)
    assert f'href="#/jobs/{job_id}"' in (await page.inner_html("#job-overview"))  # "Retry of" the old job
    record = await job_record(orchestrator, new_id)
    assert record["status"] == "completed" and record["retry_of"] == job_id


async def test_a_service_token_is_not_a_dashboard_key(orchestrator_url: str, page: Page) -> None:
    # What GET /whoami answers a service token (tests/orchestrator_api/test_whoami.py checks the real one).
    async def service(route: Route) -> None:
        await route.fulfill(json={"role": "service", "tenant_id": None})

    await page.route("**/whoami", service)
    await page.goto(orchestrator_url + "/?token=some-service-token")
    await page.wait_for_selector("#key-input", timeout=WAIT_MS)
    assert "service token" in (await page.text_content(".notice") or "")
    assert await page.evaluate("localStorage.getItem('baton.dashboard.key')") is None
    assert await page.query_selector("#role") is None


async def test_bad_input_is_said_on_the_page(
    orchestrator_url: str, api_key: str, page_errors: ErrorLog, page: Page
) -> None:
    page_errors.allow(r"status of 422")  # the refused submit, logged by chromium itself
    await open_dashboard(page, orchestrator_url, api_key)
    await page.fill("#submit-type", "no_such_type")
    await page.fill("#submit-payload", "{not json")
    await page.click("#submit-job")
    await page.wait_for_selector('.notice[data-kind="error"]:has-text("payload is not JSON")')

    await page.fill("#submit-payload", "{}")
    await page.click("#submit-job")
    await page.wait_for_selector('.notice[data-kind="error"]:has-text("422 unknown_job_type")', timeout=WAIT_MS)
    assert await row_ids(page) == []

    await page.goto(orchestrator_url + "/#/dead-letters/not a service")
    await page.wait_for_selector('.notice[data-kind="error"]:has-text("is not a service name")')
    await page.goto(orchestrator_url + "/#/no-such-view")
    await page.wait_for_selector("h1:has-text('Not found')")
