"""`baton submit` against a real orchestrator and worker: the job's id, or with --follow its progress live
and its result (exit 0) or its error (exit 1)."""

from __future__ import annotations

import asyncio
import json
import signal

from tests.api_server import Api
from tests.cli.helpers import Baton, read_until, stopped


async def test_submit_prints_the_new_jobs_id_and_the_job_exists(api: Api, baton: Baton, worker: None) -> None:
    ran = await baton("submit", api.job_type, "--payload", '{"text": "hello"}', "--priority", "high")

    assert ran.code == 0, ran
    job_id = ran.out.strip()
    response = await api.client.get(f"/jobs/{job_id}", headers=api.headers_a)
    record = await response.json()
    assert record["type"] == api.job_type and record["priority"] == 9
    assert f"job {job_id} queued" in ran.err


async def test_submit_follow_shows_each_progress_live_then_prints_the_result(
    api: Api, baton: Baton, worker: None, gate: asyncio.Event
) -> None:
    payload = {"text": "hi", "progress": [[30, "warming up"]], "gated": True, "then": [[70, "nearly there"]]}

    process = await baton.start("submit", api.job_type, "--payload", json.dumps(payload), "--follow")
    try:
        before = await read_until(process.stderr, "running 30% warming up")
        gate.set()
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        await stopped(process)

    assert process.returncode == 0, (before, out, err)
    assert json.loads(out) == {"echo": "hi", "step": None}
    after = err.decode().splitlines()
    assert after[0].endswith("running 70% nearly there"), after
    assert after[-1].split()[2] == "completed", after


async def test_the_terminal_view_draws_a_progress_bar(api: Api, baton: Baton, worker: None) -> None:
    payload = {"text": "bar", "progress": [[50, "half way"]]}

    ran = await baton("submit", api.job_type, "-p", json.dumps(payload), "-f", TTY_COMPATIBLE="1", COLUMNS="160")

    assert ran.code == 0, ran
    assert json.loads(ran.out)["echo"] == "bar"
    assert "━" in ran.err and "100%" in ran.err and "completed" in ran.err, ran.err
    assert api.job_type[:10] in ran.err  # the bar's label: the job's type and id


async def test_a_failing_job_prints_its_error_and_exits_1(api: Api, baton: Baton, worker: None) -> None:
    ran = await baton("submit", api.job_type, "--payload", '{"fail": "the disk is full"}', "--follow")

    assert ran.code == 1, ran
    assert ran.out == ""
    last = ran.err.strip().splitlines()[-1]
    assert " failed: RuntimeError: the disk is full (attempts: 1)" in last, ran.err


async def test_follow_with_json_prints_every_message_then_the_record(api: Api, baton: Baton, worker: None) -> None:
    payload = {"text": "j", "progress": [[25, "a"], [75, "b"]]}

    ran = await baton("submit", api.job_type, "--payload", json.dumps(payload), "--follow", "--json")

    assert ran.code == 0, ran
    *messages, record = ran.json_lines()
    assert record["status"] == "completed" and record["result"] == {"echo": "j", "step": None}
    assert messages[0]["type"] == "job_snapshot"
    seqs = [message["seq"] for message in messages]
    assert seqs == sorted(set(seqs)), seqs  # in order, none twice
    shown = [m["data"]["progress"]["message"] for m in messages if (m.get("data") or {}).get("progress")]
    assert shown[-2:] == ["a", "b"]


async def test_a_payload_from_a_file_and_from_stdin(api: Api, baton: Baton, worker: None, tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    (tmp_path / "payload.json").write_text('{"text": "from a file"}')

    from_file = await baton("submit", api.job_type, "--payload", f"@{tmp_path / 'payload.json'}", "-f")
    from_stdin = await baton("submit", api.job_type, "--payload", "@-", "-f", stdin='{"text": "from stdin"}')

    assert (from_file.code, json.loads(from_file.out)["echo"]) == (0, "from a file"), from_file
    assert (from_stdin.code, json.loads(from_stdin.out)["echo"]) == (0, "from stdin"), from_stdin


async def test_ctrl_c_stops_following_and_leaves_the_job_running(
    api: Api, baton: Baton, worker: None, gate: asyncio.Event
) -> None:
    process = await baton.start("submit", api.job_type, "-p", '{"progress": [[20, "started"]], "gated": true}', "-f")
    try:
        await read_until(process.stderr, "running 20% started")
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), 30)
        listed = await (await api.client.get("/jobs", headers=api.headers_a)).json()
    finally:
        await stopped(process)
        gate.set()

    assert process.returncode == 130, (out, err)
    [job] = listed["jobs"]
    assert job["status"] == "running"  # still, after the CLI stopped
    job_id = job["job_id"]
    assert err.decode().splitlines()[-1] == f"stopped following; job {job_id} goes on: baton status {job_id}"
