"""submit, jobs, status, cancel, retry."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from clients.cli.commands import optional, run_with
from clients.cli.commands.outcome import accepted, finish
from clients.cli.config import DEFAULT_URL, AsJson, Key, Url, target
from clients.cli.errors import OK, NotFound
from clients.cli.http import BatonHttp, segment
from clients.cli.inputs import json_object, priority
from clients.cli.live import follow_to_end
from clients.cli.output import Output, jobs_table, record_table
from clients.cli.tracking import TERMINAL_STATUSES

JobId = Annotated[str, typer.Argument(metavar="JOB_ID", help="The job's id.", show_default=False)]
Follow = Annotated[
    bool,
    typer.Option("--follow", "-f", help="Show its progress live until it ends; exit 0 completed, 1 otherwise."),
]


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.command("jobs")(list_jobs)
    app.command("status")(status)
    app.command("cancel")(cancel)
    app.command("retry")(retry)


def submit(
    job_type: Annotated[str, typer.Argument(metavar="TYPE", help="The job type, e.g. llm_request.")],
    payload: Annotated[
        str, typer.Option("--payload", "-p", help="The payload: a JSON object, @file, or @- for stdin.")
    ] = "{}",
    job_priority: Annotated[
        str | None, typer.Option("--priority", help="high, medium, low or 0-9.", show_default=False)
    ] = None,
    session: Annotated[str | None, typer.Option("--session", help="A session id.", show_default=False)] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="The same key and body return the same job.", show_default=False),
    ] = None,
    follow: Follow = False,
    url: Url = DEFAULT_URL,
    key: Key = None,
    as_json: AsJson = False,
) -> int:
    """Submit a job; print its id (or, with --follow, its progress then its result)."""
    body = {
        "type": job_type,
        "payload": json_object("--payload", payload),
        **optional(priority=priority(job_priority), session_id=session, idempotency_key=idempotency_key),
    }

    async def action(http: BatonHttp, output: Output) -> int:
        accepted = await http.post("/jobs", body)
        return await _accepted(http, output, accepted, follow)

    return run_with(target(url, key, as_json), action)


def list_jobs(
    job_status: Annotated[
        str | None, typer.Option("--status", help="queued, running, completed, failed, ...", show_default=False)
    ] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="A job type.", show_default=False)] = None,
    session: Annotated[str | None, typer.Option("--session", help="A session id.", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=200, help="At most this many.")] = 20,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many first.")] = 0,
    url: Url = DEFAULT_URL,
    key: Key = None,
    as_json: AsJson = False,
) -> int:
    """List the tenant's jobs, newest first."""
    params: dict[str, str | int] = {
        **optional(status=job_status, type=job_type, session_id=session),
        "limit": limit,
        "offset": offset,
    }

    async def action(http: BatonHttp, output: Output) -> int:
        listing = await http.get("/jobs", params)
        if output.as_json:
            output.raw(listing)
        else:
            output.show(jobs_table(listing.get("jobs") or [], listing.get("total")))
        return OK

    return run_with(target(url, key, as_json), action)


def status(
    job_id: JobId, follow: Follow = False, url: Url = DEFAULT_URL, key: Key = None, as_json: AsJson = False
) -> int:
    """Show a job's record (with --follow: follow it to its end)."""

    async def action(http: BatonHttp, output: Output) -> int:
        record = await http.get(f"/jobs/{segment(job_id)}")
        if follow:
            if record.get("status") not in TERMINAL_STATUSES:
                record = await follow_to_end(http, job_id, output, workflow=record.get("type") == "workflow")
            return finish(record, output)
        if output.as_json:
            output.raw(record)
        else:
            output.show(record_table(record))
        return OK

    return run_with(target(url, key, as_json), action)


def cancel(job_id: JobId, url: Url = DEFAULT_URL, key: Key = None, as_json: AsJson = False) -> int:
    """Cancel a queued or running job."""

    async def action(http: BatonHttp, output: Output) -> int:
        answer = await http.post(f"/jobs/{segment(job_id)}/cancel")
        if output.as_json:
            output.raw(answer)
        else:
            output.note(f"job {answer.get('job_id')} {answer.get('status')}")
        return OK

    return run_with(target(url, key, as_json), action)


def retry(
    job_id: JobId, follow: Follow = False, url: Url = DEFAULT_URL, key: Key = None, as_json: AsJson = False
) -> int:
    """Run a failed, timed-out or cancelled job again, as a new job."""

    async def action(http: BatonHttp, output: Output) -> int:
        try:
            accepted = await http.post(f"/jobs/{segment(job_id)}/retry")
        except NotFound as exc:
            if exc.error == "job_not_found":
                raise
            # The route, not the job, is missing.
            message = "this orchestrator has no POST /jobs/{job_id}/retry (older than the CLI)"
            raise NotFound(404, exc.error, message) from None
        return await _accepted(http, output, accepted, follow)

    return run_with(target(url, key, as_json), action)


async def _accepted(http: BatonHttp, output: Output, answer: dict[str, Any], follow: bool) -> int:
    """After POST /jobs (or a retry): the new job's id, or with `follow` its progress and outcome."""
    job_id = str(answer.get("job_id"))
    return await accepted(
        http, output, answer, job_id, f"job {job_id} {answer.get('status')}", follow=follow, workflow=False
    )
