"""The /jobs routes: create (one, a batch, an agent run), read, list, result, cancel."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any, Final

from aiohttp import web
from pydantic import ValidationError

from orchestrator.auth import Authenticator
from orchestrator.errors import PublishUncertain
from orchestrator.http.errors import ApiError, api_error_for
from orchestrator.http.job_creator import require_job_creator
from orchestrator.http.request import (
    MAX_BATCH_BODY_BYTES,
    read_json,
    request_id,
    require_tenant,
    validate,
    validate_query,
    validation_details,
)
from orchestrator.http.schemas import (
    AgentExecuteRequest,
    BatchRequest,
    JobCreateRequest,
    JobList,
    JobListQuery,
    JobQuery,
    JobResult,
    JobSpec,
)
from orchestrator.jobs.quota import Creation, JobQuota
from orchestrator.jobs.service import JobService, NewJob, Submission
from orchestrator.models import CancelStatus, JobRecord
from protocol.events import JobStatus

log = logging.getLogger(__name__)

VALIDATION_SLICE: Final[int] = 100  # batch items validated between two yields to the event loop


def tracking_url(job_id: str) -> str:
    return f"/jobs/{job_id}"


def websocket_url(job_id: str) -> str:
    return f"/ws/jobs/{job_id}"


def accepted_body(submission: Submission) -> dict[str, Any]:
    """The `JobAccepted` body, made as that model dumps it: the model is the schema (OpenAPI, and the test
    that holds the two equal); building and dumping it cost about 25 µs a request. The record's result and
    error are JSON already (read from the registry)."""
    record = submission.record
    return {
        "job_id": record.job_id,
        "status": JobStatus(record.status).value,
        "tracking_url": tracking_url(record.job_id),
        "websocket_url": websocket_url(record.job_id),
        "created_at": record.created_at,
        "created": submission.created,
        "result": record.result if record.status == JobStatus.COMPLETED else None,
        "error": record.error if submission.terminal else None,
        "from_cache": submission.from_cache,
        "coalesced": submission.coalesced,
    }


def submission_response(submission: Submission) -> web.Response:
    """200 once the job is terminal (a cache hit, an idempotent replay or a `wait` that saw the end), else 202.

    A job that failed within `wait` is still a 200: the request to run it succeeded, and the
    body says how the job ended (status and error), as GET /jobs/{id} would.
    """
    return web.json_response(accepted_body(submission), status=200 if submission.terminal else 202)


class JobRoutes:
    """The handlers of the /jobs routes (the table in `orchestrator.http.routes` maps paths to them)."""

    def __init__(self, jobs: JobService, authenticator: Authenticator, quota: JobQuota) -> None:
        self._jobs = jobs
        self._auth = authenticator
        self._quota = quota

    async def create_job(self, request: web.Request) -> web.Response:
        creator = await require_job_creator(self._auth, self._jobs, request)
        body = validate(JobCreateRequest, await read_json(request))
        job = replace(body.to_job(), parent=creator.parent)
        # A service's child job spends from the quota of the tenant it is made for.
        await self._quota.charge(creator.tenant_id, Creation.JOB)
        submission = await self._jobs.submit(creator.tenant_id, job, request_id=request_id(request), wait=body.wait)
        return submission_response(submission)

    async def execute_agent(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        agent_id = request.match_info["agent_id"]
        body = validate(AgentExecuteRequest, await read_json(request))
        await self._quota.charge(tenant_id, Creation.JOB)
        submission = await self._jobs.submit(
            tenant_id, body.to_job(agent_id), request_id=request_id(request), wait=body.wait
        )
        return submission_response(submission)

    async def create_batch(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        batch = validate(BatchRequest, await read_json(request, MAX_BATCH_BODY_BYTES))
        # Every item costs a token, also one that fails validation: the whole batch or none of it.
        await self._quota.charge(tenant_id, Creation.BATCH, len(batch.jobs))
        items: list[dict[str, Any] | None] = [None] * len(batch.jobs)
        valid: list[tuple[int, NewJob]] = []
        for index, raw in enumerate(batch.jobs):
            if index and index % VALIDATION_SLICE == 0:
                await asyncio.sleep(0)  # a thousand items validated in one go would hold the loop for every client
            try:
                valid.append((index, JobSpec.model_validate(raw).to_job()))
            except ValidationError as exc:
                items[index] = {"index": index, "error": "validation_error", "detail": validation_details(exc)}
        outcomes = await self._jobs.submit_many(tenant_id, [job for _, job in valid], request_id=request_id(request))
        for (index, _), outcome in zip(valid, outcomes, strict=True):
            items[index] = batch_item(index, outcome)
        done = [item for item in items if item is not None]
        accepted = sum(1 for item in done if "error" not in item)
        return web.json_response({"jobs": done, "accepted": accepted, "rejected": len(done) - accepted})

    async def get_job(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        job_id = request.match_info["job_id"]
        query = validate_query(JobQuery, request.query)
        if query.include != "payload":
            return web.json_response((await self._jobs.get(tenant_id, job_id)).public())
        # The payload sits in the stored envelope, which a plain read leaves out: asked for, it comes in the same read.
        record, payload = await self._jobs.get_with_payload(tenant_id, job_id)
        return web.json_response({**record.public(), "payload": payload})

    async def list_jobs(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        query = validate_query(JobListQuery, request.query)
        records, total = await self._jobs.list_jobs(
            tenant_id,
            status=query.status.value if query.status else None,
            type=query.type,
            session_id=query.session_id,
            created_after=query.created_after,
            created_before=query.created_before,
            offset=query.offset,
            limit=query.limit,
        )
        page = {"jobs": [r.public() for r in records], "total": total, "offset": query.offset, "limit": query.limit}
        return web.json_response(JobList.model_validate(page).model_dump(mode="json"))

    async def retry_job(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        # 404 and 409 before a token of the quota is spent.
        job = await self._jobs.rerun_of(tenant_id, request.match_info["job_id"])
        await self._quota.charge(tenant_id, Creation.JOB)
        submission = await self._jobs.submit(tenant_id, job, request_id=request_id(request))
        return submission_response(submission)

    async def get_result(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        record = await self._jobs.get(tenant_id, request.match_info["job_id"])
        status = JobStatus(record.status)
        if status is JobStatus.COMPLETED:
            body = JobResult(job_id=record.job_id, status=status, result=record.result)
            return web.json_response(body.model_dump(mode="json"))
        if record.status in {JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT}:
            raise _ended_without_result(record)
        running = JobResult(job_id=record.job_id, status=status, progress=record.progress)
        return web.json_response(running.model_dump(mode="json"), status=202)

    async def cancel_job(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        job_id = request.match_info["job_id"]
        result = await self._jobs.cancel(tenant_id, job_id)
        if result.status is CancelStatus.NOT_FOUND or result.record is None:
            raise ApiError(404, "job_not_found", f"job {job_id} not found")
        if result.status is CancelStatus.ALREADY_TERMINAL:
            raise ApiError(
                409,
                "job_already_terminal",
                f"job {job_id} already ended with status {result.record.status}",
                extra={"job_id": job_id, "status": result.record.status},
            )
        return web.json_response({"job_id": job_id, "status": JobStatus.CANCELLED.value})


def batch_item(index: int, outcome: Submission | Exception) -> dict[str, Any]:
    """A `BatchItem` as the batch answer dumps it (None fields left out), made as a dict: 250 models built
    and dumped per batch were a few percent of its CPU. The model stays the schema (see `accepted_body`)."""
    if isinstance(outcome, Submission):
        record = outcome.record
        item: dict[str, Any] = {
            "index": index,
            "job_id": record.job_id,
            "status": JobStatus(record.status).value,
            "created": outcome.created,
        }
        if outcome.from_cache:
            item["from_cache"] = True
        if outcome.coalesced:
            item["coalesced"] = True
        if outcome.from_cache and record.result is not None:
            item["result"] = record.result
        return item
    error = api_error_for(outcome)
    if error is None:
        # A bug, not a bad item; still only this item's error: the other items' jobs exist and
        # their ids must reach the client.
        log.error("batch item %d failed unexpectedly", index, exc_info=outcome)
        error = ApiError(500, "internal_error", "unexpected server error")
    item = {"index": index}
    # An unconfirmed publish names the job it kept: the item may still run and can be tracked.
    if isinstance(outcome, PublishUncertain):
        item["job_id"] = outcome.job_id
    item["error"] = error.error
    if error.detail is not None:
        item["detail"] = error.detail
    return item


def _ended_without_result(record: JobRecord) -> ApiError:
    error = record.error or {}
    detail = error.get("error") or error.get("reason") or f"the job ended with status {record.status}"
    return ApiError(
        409,
        f"job_{record.status}",
        detail,
        extra={"job_id": record.job_id, "status": record.status, "job_error": record.error},
    )
