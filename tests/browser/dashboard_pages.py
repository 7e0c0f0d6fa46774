"""What the dashboard's browser tests share: opening the dashboard with a key, reading its rows and
timeline, and screenshots of each view in /tmp/shots/."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from playwright.async_api import Page

from tests.api_server import Api
from tests.browser.harness import stepping_worker

SHOTS = Path("/tmp/shots")
WAIT_MS = 20_000  # the longest a view may take to show what the test waits for


def failing_line() -> int:
    """The line where stepping_worker's handler raises: the job page's traceback names it."""
    lines = inspect.getsource(stepping_worker).splitlines()
    offset = next(i for i, line in enumerate(lines) if line.strip().startswith("raise RuntimeError("))
    return stepping_worker.__code__.co_firstlineno + offset


async def open_dashboard(page: Page, base_url: str, key: str, route: str = "") -> None:
    """The dashboard with the key in the URL, once its shell is up (the role badge says which key)."""
    await page.goto(f"{base_url}/?token={key}{route}")
    await page.wait_for_selector("#role", timeout=WAIT_MS)


def page_info_is(text: str) -> str:
    """A wait_for_function expression: the pager says `text` (e.g. "1-25 of 30")."""
    return f"document.getElementById('page-info').textContent === {text!r}"


async def wait_live(page: Page) -> None:
    await page.wait_for_selector('#conn[data-state="open"]', timeout=WAIT_MS)


async def shot(page: Page, name: str) -> None:
    """A full-page screenshot of the view for the report (not committed; chromium makes the folder)."""
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def row_ids(page: Page) -> list[str]:
    """The job ids of the runs table, top to bottom."""
    ids: list[str] = await page.eval_on_selector_all(
        "#runs-body tr[data-job-id]", "rows => rows.map(r => r.dataset.jobId)"
    )
    return ids


async def row(page: Page, job_id: str) -> dict[str, Any]:
    """A runs row as the page shows it: type, status, bar percentage."""
    found: dict[str, Any] = await page.eval_on_selector(
        f'#runs-body tr[data-job-id="{job_id}"]',
        """tr => ({
            type: tr.querySelector("td.type").textContent,
            status: tr.dataset.status,
            percent: Number(tr.querySelector("[role=progressbar]").getAttribute("aria-valuenow")),
        })""",
    )
    return found


async def timeline_seqs(page: Page) -> list[int]:
    seqs: list[int] = await page.eval_on_selector_all(
        "#timeline-body tr[data-seq]", "rows => rows.map(r => Number(r.dataset.seq))"
    )
    return seqs


async def history_seqs(api: Api, job_id: str) -> list[int]:
    """The seqs of the job's kept events, as the server holds them."""
    answer = await api.client.get(f"/jobs/{job_id}/events", params={"limit": "500"}, headers=api.headers_a)
    assert answer.status == 200, await answer.text()
    body = await answer.json()
    return [event["seq"] for event in body["events"]]


async def create_jobs(api: Api, count: int, payload: dict[str, Any], **fields: Any) -> list[str]:
    """`count` jobs of the test type through the API (POST /jobs/batch), their ids in order."""
    jobs = [{"type": api.job_type, "payload": payload, **fields} for _ in range(count)]
    answer = await api.client.post("/jobs/batch", json={"jobs": jobs}, headers=api.headers_a)
    assert answer.status == 200, await answer.text()
    body = await answer.json()
    assert body["rejected"] == 0, body
    return [item["job_id"] for item in body["jobs"]]


async def job_record(api: Api, job_id: str) -> dict[str, Any]:
    answer = await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)
    assert answer.status == 200, await answer.text()
    record: dict[str, Any] = await answer.json()
    return record
