"""The dashboard's operator views in chromium against a real orchestrator and worker: dead letters replayed
one and in bulk, queues with their worker, the admin key's view, charts, a workflow's steps live."""

from __future__ import annotations

import pytest
from playwright.async_api import Page

from tests.api_server import Api
from tests.browser.dashboard_pages import (
    WAIT_MS,
    create_jobs,
    job_record,
    open_dashboard,
    shot,
    wait_live,
)
from tests.browser.harness import FailSwitch
from tests.polling import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")  # the browser's loop: conftest


async def dead_rows(page: Page) -> list[str]:
    ids: list[str] = await page.eval_on_selector_all(
        "#dead-body tr[data-task-id]", "rows => rows.map(r => r.dataset.taskId)"
    )
    return ids


async def test_dead_letters_are_replayed_one_by_one_and_in_bulk_and_run(
    orchestrator: Api, orchestrator_url: str, api_key: str, switchable_worker: None, failing: FailSwitch, page: Page
) -> None:
    jobs = await create_jobs(orchestrator, 4, {"steps": 1, "fail": "parked on purpose"})

    async def all_failed() -> bool:
        return all([(await job_record(orchestrator, job_id))["status"] == "failed" for job_id in jobs])

    await eventually(all_failed, within=WAIT_MS / 1000)
    await open_dashboard(page, orchestrator_url, api_key, f"#/dead-letters/{orchestrator.service}")

    async def four_parked() -> bool:
        return len(await dead_rows(page)) == 4

    await eventually(four_parked, within=WAIT_MS / 1000)
    await shot(page, "dead-letters")
    failing.on = False

    first = (await dead_rows(page))[0]
    await page.click(f'button[aria-label="replay task {first}"]')
    await page.wait_for_selector('.notice[data-kind="ok"]:has-text("replayed 1")', timeout=WAIT_MS)

    async def three_parked() -> bool:
        return len(await dead_rows(page)) == 3

    await eventually(three_parked, within=WAIT_MS / 1000)
    second = (await dead_rows(page))[0]
    await page.check(f'input[aria-label="select task {second}"]')
    await page.click("#replay-selected")
    await page.wait_for_selector('.notice[data-kind="ok"]:has-text("replayed 1")', timeout=WAIT_MS)

    async def two_parked() -> bool:
        return len(await dead_rows(page)) == 2

    await eventually(two_parked, within=WAIT_MS / 1000)
    await page.click("#replay-all")
    await page.wait_for_selector('.notice[data-kind="ok"]:has-text("replayed 2")', timeout=WAIT_MS)
    await page.wait_for_selector("#dead-body td.empty", timeout=WAIT_MS)

    async def all_completed() -> bool:
        return all([(await job_record(orchestrator, job_id))["status"] == "completed" for job_id in jobs])

    await eventually(all_completed, within=WAIT_MS / 1000)
    record = await job_record(orchestrator, jobs[0])
    assert record["attempt"] == 2  # the replay ran as the task's next attempt


async def test_the_queues_view_shows_the_service_and_its_worker(
    orchestrator: Api, orchestrator_url: str, api_key: str, switchable_worker: None, page: Page
) -> None:
    await open_dashboard(page, orchestrator_url, api_key, "#/queues")
    service_row = f'#queues-body tr[data-service="{orchestrator.service}"]'
    await page.wait_for_selector(f"{service_row} li[data-worker-id]", timeout=WAIT_MS)
    text = await page.text_content(service_row) or ""
    assert "in flight" in text and "heartbeat" in text
    first_read = await page.text_content("#queues-stamp")
    await page.wait_for_function(
        f"document.getElementById('queues-stamp').textContent !== {first_read!r}", timeout=WAIT_MS
    )  # read again on its own
    await shot(page, "queues")


async def test_the_admin_key_sees_queues_and_dead_letters_but_no_runs(
    orchestrator: Api, orchestrator_url: str, admin_key: str, page: Page
) -> None:
    await open_dashboard(page, orchestrator_url, admin_key)
    assert await page.text_content("#role") == "admin key"
    await page.wait_for_selector("#queues-body tr", timeout=WAIT_MS)
    assert "#/queues" in page.url or page.url.endswith("/")
    views = await page.eval_on_selector_all("nav.tabs a", "links => links.map(a => a.textContent)")
    assert views == ["Queues", "Dead letters", "Charts"]
    await shot(page, "admin-queues")
    await page.goto(orchestrator_url + "/#/runs")
    await page.wait_for_selector("h1:has-text('Not for the admin key')")


async def test_the_charts_draw_throughput_and_latency(
    orchestrator: Api, orchestrator_url: str, api_key: str, switchable_worker: None, page: Page
) -> None:
    jobs = await create_jobs(orchestrator, 5, {"steps": 1})

    async def all_completed() -> bool:
        return all([(await job_record(orchestrator, job_id))["status"] == "completed" for job_id in jobs])

    async def counted() -> bool:  # the orchestrator writes its counters once a second
        answer = await orchestrator.client.get("/stats?minutes=15", headers=orchestrator.headers_a)
        return bool((await answer.json())["totals"]["completed"] >= 5)

    await eventually(all_completed, within=WAIT_MS / 1000)
    await eventually(counted, within=WAIT_MS / 1000)
    await open_dashboard(page, orchestrator_url, api_key, "#/charts?minutes=15")
    await page.wait_for_selector('#chart-throughput polyline[data-series="completed"]', timeout=WAIT_MS)
    await page.wait_for_selector('#chart-latency polyline[data-series="latency_p95_ms"]', timeout=WAIT_MS)
    label = await page.get_attribute("#chart-throughput svg", "aria-label") or ""
    assert "completed" in label
    await shot(page, "charts")


async def test_a_workflow_execution_shows_its_steps_by_dependency_live(
    orchestrator: Api, orchestrator_url: str, api_key: str, switchable_worker: None, page: Page
) -> None:
    steps = [
        {"name": "fetch", "type": orchestrator.job_type, "payload": {"steps": 3, "delay": 0.3}, "after": []},
        {"name": "left", "type": orchestrator.job_type, "payload": {"steps": 2, "delay": 0.3}, "after": ["fetch"]},
        {"name": "right", "type": orchestrator.job_type, "payload": {"steps": 1}, "after": ["fetch"]},
        {"name": "join", "type": orchestrator.job_type, "payload": {"steps": 1}, "after": ["left", "right"]},
    ]
    stored = await orchestrator.client.put(
        "/workflows/dash-flow", json={"name": "dashboard flow", "steps": steps}, headers=orchestrator.headers_a
    )
    assert stored.status in (200, 201), await stored.text()
    await open_dashboard(page, orchestrator_url, api_key, "#/workflows")
    await wait_live(page)
    await page.wait_for_selector('#workflow-defs code:has-text("dash-flow")', timeout=WAIT_MS)
    await page.click("summary:has-text('Start an execution')")
    await page.select_option("#start-workflow", "dash-flow")
    await page.click("#start-execution")
    await page.wait_for_selector("#step-graph .step", timeout=WAIT_MS)
    columns = await page.eval_on_selector_all(
        "#step-graph .step-column", "cols => cols.map(c => [...c.querySelectorAll('.step')].map(s => s.dataset.step))"
    )
    assert columns == [["fetch"], ["left", "right"], ["join"]]
    await page.wait_for_selector('#step-graph .step[data-step="fetch"][data-status="running"]', timeout=WAIT_MS)
    await shot(page, "workflow-running")
    await page.wait_for_selector('#step-graph .step[data-step="join"][data-status="completed"]', timeout=WAIT_MS)
    await shot(page, "workflow")
