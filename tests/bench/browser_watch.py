"""The dashboard watching a burst of jobs in Debian's chromium: every event the server keeps, did the page get it?

    python -m tests.bench.browser_watch [--jobs 1000] [--steps 3]

Serves an orchestrator and a worker of a fresh service on the machine's RabbitMQ and Redis, in this process
(tests/api_server.py: with an events queue of its own; the worker reports progress `--steps` times per job),
or, with BATON_URL and BATON_KEY set, uses that running system (then --type names a job type its workers
serve, and --payload its input). It opens the dashboard with the key, submits the jobs through
POST /jobs/batch, and waits until the page has seen each job end. Then it reads each job's kept events
(GET /jobs/{id}/events) and compares them with the seqs the page received (window.batonDashboard):
jobs, events expected, events seen, dropped (kept by the server, never reached the page), duplicates
(reached the page twice), and the time from the submit to the last job ended in the page.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from playwright.async_api import Page, async_playwright

from tests.api_server import serve_api
from tests.browser.harness import chromium_executable, stepping_worker
from tests.services import LOCAL_RABBITMQ_URL, LOCAL_REDIS_URL
from tests.workers.helpers import running

BATCH = 1000  # POST /jobs/batch's most items


@dataclass
class Figures:
    jobs: int
    expected: int
    seen: int
    dropped: int
    duplicates: int
    incomplete_histories: int
    seconds_to_all_ended: float
    snapshots: int
    states: list[str]

    def lines(self) -> list[str]:
        return [
            f"jobs                      {self.jobs}",
            f"events expected           {self.expected}",
            f"events seen               {self.seen}",
            f"dropped                   {self.dropped}",
            f"duplicates                {self.duplicates}",
            f"histories with a gap      {self.incomplete_histories}",
            f"time to all ended (page)  {self.seconds_to_all_ended:.2f} s",
            f"snapshots seen            {self.snapshots}",
            f"connection states         {' -> '.join(self.states)}",
        ]


async def submit(session: aiohttp.ClientSession, base: str, key: str, specs: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(specs), BATCH):
        async with session.post(
            f"{base}/jobs/batch",
            json={"jobs": specs[start : start + BATCH]},
            headers={"Authorization": f"Bearer {key}"},
        ) as answer:
            body = await answer.json()
            if answer.status != 200 or body["rejected"]:
                raise RuntimeError(f"POST /jobs/batch answered {answer.status}: {json.dumps(body)[:500]}")
            ids.extend(item["job_id"] for item in body["jobs"])
    return ids


async def kept_events(session: aiohttp.ClientSession, base: str, key: str, job_id: str) -> tuple[list[int], bool]:
    async with session.get(
        f"{base}/jobs/{job_id}/events", params={"limit": "500"}, headers={"Authorization": f"Bearer {key}"}
    ) as answer:
        body = await answer.json()
        if answer.status != 200:
            raise RuntimeError(f"GET /jobs/{job_id}/events answered {answer.status}: {body}")
        return [event["seq"] for event in body["events"]], bool(body["complete"])


async def watch(page: Page, base: str, key: str, specs: list[dict[str, Any]], timeout: float) -> Figures:
    await page.goto(f"{base}/?token={key}")
    await page.wait_for_selector('#conn[data-state="open"]', timeout=30_000)
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        ids = await submit(session, base, key, specs)
        await page.evaluate("ids => { window.benchIds = ids; }", ids)
        ended_js = "() => window.benchIds.every(id => window.batonDashboard.ended.has(id))"
        await page.wait_for_function(ended_js, timeout=timeout * 1000, polling=100)
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.0)  # events after the terminal one (none expected) would still count
        states: list[str] = await page.evaluate("window.batonDashboard.states")
        snapshots: int = await page.evaluate("window.batonDashboard.snapshots")
        page_seqs: dict[str, list[int]] = await page.evaluate(
            "ids => Object.fromEntries(ids.map(id => [id, window.batonDashboard.seqs.get(id) || []]))", ids
        )
        semaphore = asyncio.Semaphore(16)

        async def one(job_id: str) -> tuple[list[int], bool]:
            async with semaphore:
                return await kept_events(session, base, key, job_id)

        kept = await asyncio.gather(*(one(job_id) for job_id in ids))
    expected = seen = dropped = duplicates = incomplete = 0
    for job_id, (seqs, complete) in zip(ids, kept, strict=True):
        got = page_seqs[job_id]
        expected += len(seqs)
        seen += len(set(got) & set(seqs))
        dropped += len(set(seqs) - set(got))
        duplicates += len(got) - len(set(got))
        incomplete += not complete
    return Figures(len(ids), expected, seen, dropped, duplicates, incomplete, elapsed, snapshots, states)


async def run_in_browser(base: str, key: str, specs: list[dict[str, Any]], timeout: float) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_executable(), headless=True, args=["--no-sandbox"]
        )
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            figures = await watch(page, base, key, specs, timeout)
        finally:
            await browser.close()
    print("\n".join(figures.lines()))
    print(f"console errors            {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))


async def main(jobs: int, job_type: str | None, payload: dict[str, Any], timeout: float) -> None:
    base, key = os.environ.get("BATON_URL"), os.environ.get("BATON_KEY")
    if base and key:
        specs = [{"type": job_type or "bench_progress", "payload": payload} for _ in range(jobs)]
        await run_in_browser(base.rstrip("/"), key, specs, timeout)
        return
    # An orchestrator with an events queue of its own (tests/api_server.py): on the shared one, other
    # orchestrators on this broker would take a share of the run's events and apply them without this code.
    rabbitmq_url = os.environ.get("RABBITMQ_URL", LOCAL_RABBITMQ_URL)
    redis_url = os.environ.get("REDIS_URL", LOCAL_REDIS_URL)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with serve_api(rabbitmq_url, redis_url, redis, uuid.uuid4().hex[:10]) as api:
            worker = stepping_worker(api.service, api.job_type)
            async with running(worker, rabbitmq_url, redis_url=redis_url):
                specs = [{"type": api.job_type, "payload": payload} for _ in range(jobs)]
                base = str(api.client.make_url("/")).rstrip("/")
                await run_in_browser(base, api.headers_a["Authorization"].removeprefix("Bearer "), specs, timeout)
    finally:
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=3, help="progress events per job (the started worker's)")
    parser.add_argument("--type", dest="job_type", help="with BATON_URL: a job type the system's workers serve")
    parser.add_argument("--payload", help="with --type: the jobs' input as JSON")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds the page may take to see all end")
    args = parser.parse_args()
    job_payload = json.loads(args.payload) if args.payload else {"steps": args.steps}
    asyncio.run(main(args.jobs, args.job_type, job_payload, args.timeout))
