"""Who creates a job on POST /jobs: a tenant's key, or a service token acting for a tenant.

A worker's `ctx.submit_job` makes a job for one of its tasks through this same front door, so quotas,
the result cache and validation apply as for any client. It sends its service's token with
`X-Baton-Tenant: <the task's tenant>` and names the task by the headers its HTTP client sends on every
call, `X-Global-Task-Id` (the parent job) and `X-Task-Id` (the parent task). The token acts for that
tenant only here, and only while the parent job exists there and has not ended: a token cannot read,
list or cancel jobs, nor create one for a tenant with no running job it knows (every other route
refuses it as before).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aiohttp import web

from orchestrator.auth import Authenticator
from orchestrator.errors import JobNotFound
from orchestrator.http.errors import ApiError
from orchestrator.http.request import require_principal
from orchestrator.jobs.service import JobService
from orchestrator.models import JobParent
from protocol.events import TERMINAL_STATUSES
from protocol.names import is_tenant_id

TENANT_HEADER: Final[str] = "X-Baton-Tenant"
PARENT_JOB_HEADER: Final[str] = "X-Global-Task-Id"
PARENT_TASK_HEADER: Final[str] = "X-Task-Id"


@dataclass(frozen=True)
class JobCreator:
    tenant_id: str
    parent: JobParent | None = None  # set when a service token acts for the tenant


async def require_job_creator(authenticator: Authenticator, jobs: JobService, request: web.Request) -> JobCreator:
    """The tenant a new job belongs to, and its parent when a service makes it; 401 without a valid key,
    400 for a service token without a well-formed tenant and parent job, 403 for the admin key, for a
    tenant key naming another tenant, and for a parent job that is not running in the named tenant."""
    principal = require_principal(authenticator, request)
    claimed = request.headers.get(TENANT_HEADER)
    if principal.tenant_id is not None:
        if claimed is not None and claimed != principal.tenant_id:
            raise ApiError(403, "forbidden", f"{TENANT_HEADER} is for service tokens: this key acts for its own tenant")
        return JobCreator(principal.tenant_id)
    if principal.service is None:
        raise ApiError(403, "forbidden", "this route needs a tenant's API key or a service token, not the admin key")
    if not claimed:
        raise ApiError(400, "tenant_required", f"a service token creates jobs for the tenant named by {TENANT_HEADER}")
    if not is_tenant_id(claimed):
        raise ApiError(400, "invalid_tenant", f"{TENANT_HEADER} is not a tenant id")
    parent_job = request.headers.get(PARENT_JOB_HEADER, "").strip()
    if not parent_job:
        raise ApiError(
            400, "parent_required", f"a service token creates jobs for a running job, named by {PARENT_JOB_HEADER}"
        )
    await _require_running(jobs, claimed, parent_job)
    parent_task = request.headers.get(PARENT_TASK_HEADER, "").strip()[:128] or None
    return JobCreator(claimed, JobParent(job_id=parent_job, task_id=parent_task, service=principal.service))


async def _require_running(jobs: JobService, tenant_id: str, job_id: str) -> None:
    # One answer for "no such job" and "ended": the token learns nothing about another tenant's jobs.
    refused = ApiError(403, "forbidden", f"no running job {job_id[:128]!r} of this tenant to create a job for")
    try:
        record = await jobs.get(tenant_id, job_id)
    except JobNotFound:
        raise refused from None
    if record.status in TERMINAL_STATUSES:
        raise refused
