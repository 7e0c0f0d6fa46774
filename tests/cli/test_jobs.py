"""`baton jobs`, `status`, `cancel` and `health` against a real orchestrator."""

from __future__ import annotations

import asyncio
import json

from tests.api_server import Api
from tests.cli.helpers import Baton
from tests.polling import poll


async def submitted(baton: Baton, api: Api, *extra: str, payload: str = "{}") -> str:
    ran = await baton("submit", api.job_type, "--payload", payload, *extra)
    assert ran.code == 0, ran
    return ran.out.strip()


async def test_jobs_lists_newest_first_with_filters(api: Api, baton: Baton) -> None:
    # No worker: the jobs stay queued, in the order they were made.
    made = [await submitted(baton, api, "--session", "s-list") for _ in range(3)]
    other = await submitted(baton, api, "--session", "s-other")

    as_json, table, limited, queued = await asyncio.gather(
        baton("jobs", "--session", "s-list", "--json"),
        baton("jobs", "--session", "s-list"),
        baton("jobs", "--limit", "2", "--json"),
        baton("jobs", "--status", "queued", "--type", api.job_type, "--json"),
    )

    assert as_json.code == 0, as_json
    assert [job["job_id"] for job in as_json.json()["jobs"]] == made[::-1]
    assert table.code == 0, table
    positions = [table.out.index(job_id) for job_id in made[::-1]]
    assert positions == sorted(positions) and other not in table.out, table.out
    assert "3 job(s)" in table.out and "queued" in table.out
    assert [job["job_id"] for job in limited.json()["jobs"]] == [other, made[2]]
    assert {job["job_id"] for job in queued.json()["jobs"]} == {*made, other}


async def test_status_shows_the_record(api: Api, baton: Baton, worker: None) -> None:
    assert (await baton("submit", api.job_type, "--payload", '{"text": "done"}', "--follow")).code == 0
    job_id = (await (await api.client.get("/jobs", headers=api.headers_a)).json())["jobs"][0]["job_id"]

    table, raw = await asyncio.gather(baton("status", job_id), baton("status", job_id, "--json"))

    assert raw.code == 0 and raw.json()["status"] == "completed" and raw.json()["result"]["echo"] == "done"
    assert table.code == 0, table
    rows = dict(line.strip().split(maxsplit=1) for line in table.out.splitlines() if line.strip())
    assert rows["job_id"] == job_id and rows["status"] == "completed" and rows["type"] == api.job_type
    assert json.loads(rows["result"]) == {"echo": "done", "step": None}


async def test_cancel_a_running_job_then_again(api: Api, baton: Baton, worker: None) -> None:
    job_id = await submitted(baton, api, payload='{"progress": [[5, "started"]], "hold": 30}')
    await poll(
        lambda: baton("status", job_id, "--json"),
        lambda ran: ran.code == 0 and ran.json()["status"] == "running",
        what="the job running",
    )

    cancelled = await baton("cancel", job_id)
    again = await baton("cancel", job_id)
    followed = await baton("status", job_id, "--follow")

    assert cancelled.code == 0 and f"job {job_id} cancelled" in cancelled.err, cancelled
    assert again.code == 1, again
    assert again.err.startswith("baton: error: 409 ") and len(again.err.splitlines()) == 1, again.err
    assert followed.code == 1 and f"job {job_id} cancelled" in followed.err, followed


async def test_health_needs_no_key(api: Api, baton: Baton) -> None:
    table, raw = await asyncio.gather(baton("health", BATON_API_KEY=""), baton("health", "--json"))

    assert table.code == 0, table
    assert "status ok" in table.out and "broker up" in table.out and "redis up" in table.out
    assert raw.code == 0 and raw.json()["status"] == "ok"
    [row] = [line for line in table.out.splitlines() if api.service in line]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    # The test service's queues were never declared: their depths are unknown; its announced worker is live.
    assert cells == [api.service, f"baton.{api.service}", "-", "-", "1", "-", "-"], table.out
    assert "dead letters" in table.out.splitlines()[2], table.out
