"""How a followed job's end is shown and what exit code it gives."""

from __future__ import annotations

from typing import Any

from clients.cli.errors import JOB_FAILED, OK
from clients.cli.http import BatonHttp, segment
from clients.cli.live import follow_to_end
from clients.cli.output import Output
from clients.cli.tracking import TERMINAL_STATUSES


async def accepted(
    http: BatonHttp, output: Output, answer: dict[str, Any], job_id: str, note: str, *, follow: bool, workflow: bool
) -> int:
    """After a 202 (a job, a retry or a workflow execution): its id and `note`, or with `follow` its progress
    and outcome (an answer that is already terminal is read once, not followed)."""
    if not follow:
        if output.as_json:
            output.raw(answer)
        else:
            output.value(job_id)
            output.note(note)
        return OK
    if answer.get("status") in TERMINAL_STATUSES:
        record = await http.get(f"/jobs/{segment(job_id)}")
    else:
        record = await follow_to_end(http, job_id, output, workflow=workflow)
    return finish(record, output)


def finish(record: dict[str, Any], output: Output) -> int:
    """The result on stdout and 0 for a completed job; its error on stderr and 1 for any other end."""
    if output.as_json:
        output.json_line(record)
    status = record.get("status")
    if status == "completed":
        if not output.as_json:
            output.value(record.get("result"))
        return OK
    if not output.as_json:
        output.note(f"job {record.get('job_id')} {status}: {describe_error(record.get('error'))}", style="red")
    return JOB_FAILED


def describe_error(error: Any) -> str:
    if not isinstance(error, dict):
        return "no error recorded" if error is None else str(error)
    message = str(error.get("error") or error.get("message") or "no error recorded")
    kind = error.get("error_type")
    attempts = error.get("attempts")
    text = f"{kind}: {message}" if kind else message
    return f"{text} (attempts: {attempts})" if attempts else text
