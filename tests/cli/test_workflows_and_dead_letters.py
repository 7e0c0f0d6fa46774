"""`baton workflows run --follow` shows each step live; `baton dead-letters` lists a service's parked tasks
and replays some or all of them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from protocol.events import TERMINAL_STATUSES
from tests.api_server import Api
from tests.cli.helpers import Baton, cli_worker, read_until, stopped
from tests.polling import poll
from tests.workers.helpers import running


async def define(api: Api, workflow_id: str, steps: list[dict[str, Any]]) -> None:
    response = await api.client.put(
        f"/workflows/{workflow_id}", json={"name": workflow_id, "steps": steps}, headers=api.headers_a
    )
    assert response.status == 201, await response.text()


async def api_job(api: Api, payload: dict[str, Any]) -> str:
    response = await api.client.post("/jobs", json={"type": api.job_type, "payload": payload}, headers=api.headers_a)
    assert response.status == 202, await response.text()
    return str((await response.json())["job_id"])


async def ended(api: Api, job_id: str) -> dict[str, Any]:
    async def record() -> dict[str, Any]:
        body: dict[str, Any] = await (await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)).json()
        return body

    return await poll(record, lambda job: job["status"] in TERMINAL_STATUSES, what=f"job {job_id} ended")


async def test_workflows_run_follow_shows_the_steps_live_then_the_result(
    api: Api, baton: Baton, worker: None, gate: asyncio.Event
) -> None:
    fetch = {"text": "$input.url", "progress": [[50, "got half"]], "gated": True}
    await define(
        api,
        "pipeline",
        [
            {"name": "fetch", "type": api.job_type, "payload": fetch},
            {"name": "store", "type": api.job_type, "payload": {"text": "$steps.fetch.result.echo"}},
        ],
    )

    process = await baton.start("workflows", "run", "pipeline", "--data", '{"url": "http://example"}', "--follow")
    try:
        before = await read_until(process.stderr, "step fetch running 50% got half")
        gate.set()
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        await stopped(process)

    assert process.returncode == 0, (before, out, err)
    after = err.decode().splitlines()
    # store is shown pending before it runs; not necessarily before fetch's 50% line: when fetch reported
    # progress before the CLI's socket opened, one snapshot carries both, and fetch's line is printed first.
    lines = before + after
    store = [line for line in lines if line.startswith("step store ")]
    assert store and store[0] == "step store pending", lines
    assert lines.index("step store pending") < lines.index("step fetch running 50% got half") + 2, lines
    done = [line.split()[1] for line in after if line.startswith("step ") and line.split()[2] == "completed"]
    assert done == ["fetch", "store"], after
    assert after[-1].startswith("job ") and after[-1].split()[2] == "completed", after
    assert json.loads(out) is not None  # the execution's result


async def test_a_failed_step_fails_the_run_with_exit_1(api: Api, baton: Baton, worker: None) -> None:
    await define(api, "breaks", [{"name": "only", "type": api.job_type, "payload": {"fail": "no luck"}}])

    ran, unknown = await asyncio.gather(
        baton("workflows", "run", "breaks", "--follow"), baton("workflows", "run", "no-such-workflow")
    )

    assert ran.code == 1, ran
    assert any(line.startswith("step only failed") for line in ran.err.splitlines()), ran.err
    assert unknown.code == 4 and unknown.err.startswith("baton: error: 404 "), unknown


async def test_dead_letters_listed_then_replayed_one_then_all(
    api: Api, baton: Baton, rabbitmq_url: str, redis_url: str
) -> None:
    async with running(cli_worker(api.service, api.job_type), rabbitmq_url, redis_url=redis_url):
        failed = await asyncio.gather(*(api_job(api, {"fail": f"failure {n}"}) for n in range(3)))
        await asyncio.gather(*(ended(api, job_id) for job_id in failed))
    # The worker stopped: a replayed task waits in the queue instead of failing and being parked again.

    listing = await poll(
        lambda: baton("dead-letters", api.service, "--json"),
        lambda ran: ran.code == 0 and len(ran.json()["entries"]) == 3,
        what="three parked tasks",
    )
    table = await baton("dead-letters", api.service)
    entries = {entry["job_id"]: entry for entry in listing.json()["entries"]}
    assert set(entries) == set(failed)
    assert table.code == 0 and all(job_id in table.out for job_id in failed), table
    assert "3 parked task(s)" in table.out and "failure 1" in table.out

    first = entries[failed[0]]["task_id"]
    one = await baton("dead-letters", api.service, "--replay", "--task-id", first)
    assert one.code == 0, one
    assert one.err.strip() == f"replayed task {first} of job {failed[0]} (attempt 2)"
    left = await baton("dead-letters", api.service, "--json")
    assert {entry["job_id"] for entry in left.json()["entries"]} == set(failed[1:])

    rest = await baton("dead-letters", api.service, "--replay-all")
    assert rest.code == 0, rest
    assert sorted(rest.err.splitlines()) == sorted(
        f"replayed task {entries[job_id]['task_id']} of job {job_id} (attempt 2)" for job_id in failed[1:]
    )
    assert (await baton("dead-letters", api.service, "--json")).json()["entries"] == []
    for job_id in failed:
        record = await (await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)).json()
        assert (record["status"], record["attempt"]) == ("queued", 2), record


async def test_replay_of_an_unknown_task_reports_it_and_exits_1(api: Api, baton: Baton) -> None:
    ran, nothing = await asyncio.gather(
        baton("dead-letters", api.service, "--replay", "--task-id", "not-parked"),
        baton("dead-letters", api.service, "--replay"),
    )

    assert ran.code == 1, ran
    assert "not replayed: task not-parked: not_found" in ran.err
    assert nothing.code == 0 and "nothing to replay" in nothing.err, nothing
