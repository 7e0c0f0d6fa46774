"""The /workflows routes: store, read, list and delete definitions, and start executions of them."""

from __future__ import annotations

import re
from typing import Any, Final, Protocol

from aiohttp import web

from orchestrator.auth import Authenticator
from orchestrator.http.errors import ApiError
from orchestrator.http.request import read_json, require_tenant, validate
from orchestrator.http.workflow_schemas import (
    ExecuteRequest,
    ExecutionAccepted,
    LegacyExecuteRequest,
    WorkflowList,
)
from orchestrator.jobs.quota import Creation, JobQuota
from orchestrator.workflows.definition import parse_definition
from orchestrator.workflows.engine import WorkflowEngine, WorkflowNotFound
from orchestrator.workflows.state import ExecutionState
from orchestrator.workflows.status import tracking_urls
from orchestrator.workflows.storage import StoredDefinition
from protocol.control import WORKFLOW_ID_PATTERN
from protocol.envelope import utc_now
from protocol.priorities import resolve_priority

_WORKFLOW_ID = re.compile(WORKFLOW_ID_PATTERN)
# Job types a PUT asks Redis about past this replica's cached routes, at most: a definition names few.
MAX_LOOKUPS: Final[int] = 32


class JobTypes(Protocol):
    """The service directory: which job types some service serves."""

    async def known_job_types(self) -> dict[str, str]: ...

    async def service_for(self, job_type: str) -> str | None: ...


class WorkflowRoutes:
    """The handlers of the /workflows routes and of POST /execute-async/."""

    def __init__(
        self, engine: WorkflowEngine, job_types: JobTypes, authenticator: Authenticator, quota: JobQuota
    ) -> None:
        self._engine = engine
        self._job_types = job_types
        self._auth = authenticator
        self._quota = quota

    async def put_workflow(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        workflow_id = request.match_info["workflow_id"]
        if _WORKFLOW_ID.fullmatch(workflow_id) is None:
            raise ApiError(422, "validation_error", f"a workflow id must match {WORKFLOW_ID_PATTERN}")
        body = await read_json(request)
        plan = parse_definition(body, await self._known_types(body))  # DefinitionError: 422 with every reason
        now = utc_now()
        created = await self._engine.definitions.put(tenant_id, workflow_id, plan.definition, now)
        stored = await self._engine.definitions.get(tenant_id, workflow_id)
        if stored is None:  # deleted by another request in between: answer what this one stored
            stored = StoredDefinition(workflow_id, plan.definition, now.isoformat(), now.isoformat())
        return web.json_response(stored.to_json(), status=201 if created else 200)

    async def list_workflows(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        stored = await self._engine.definitions.all(tenant_id)
        body = {"workflows": [s.to_json() for s in stored], "total": len(stored)}
        WorkflowList.model_validate(body)  # the documented shape, checked (not re-dumped: absent fields stay absent)
        return web.json_response(body)

    async def get_workflow(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        workflow_id = request.match_info["workflow_id"]
        stored = await self._engine.definitions.get(tenant_id, workflow_id)
        if stored is None:
            raise WorkflowNotFound(workflow_id)
        return web.json_response(stored.to_json())

    async def delete_workflow(self, request: web.Request) -> web.Response:
        """Executions under way keep running: each holds its own copy of the definition."""
        tenant_id = require_tenant(self._auth, request)
        workflow_id = request.match_info["workflow_id"]
        if not await self._engine.definitions.delete(tenant_id, workflow_id):
            raise WorkflowNotFound(workflow_id)
        return web.Response(status=204)

    async def execute(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        body = validate(ExecuteRequest, await read_json(request))
        return await self._start(tenant_id, request.match_info["workflow_id"], body)

    async def execute_legacy(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        body = validate(LegacyExecuteRequest, await read_json(request))
        return await self._start(tenant_id, body.workflow_id, body)

    async def _start(self, tenant_id: str, workflow_id: str, body: ExecuteRequest) -> web.Response:
        await self._quota.charge(tenant_id, Creation.WORKFLOW)
        state, created = await self._engine.execute(
            tenant_id,
            workflow_id,
            body.data,
            mode=body.mode,
            priority=resolve_priority(body.priority),
            idempotency_key=body.idempotency_key,
        )
        if not created and state.workflow_id != workflow_id:
            raise ApiError(
                409,
                "idempotency_conflict",
                f"idempotency key {body.idempotency_key!r} already started an execution of workflow "
                f"{state.workflow_id!r}",
                extra={"execution_id": state.execution_id},
            )
        return web.json_response(accepted_body(state), status=202 if created else 200)

    async def _known_types(self, body: Any) -> set[str]:
        """The announced job types, and any the definition names that this replica's cached routes miss
        (announced to another replica a moment ago): asked of Redis one by one."""
        known = set(await self._job_types.known_job_types())
        steps = body.get("steps") if isinstance(body, dict) else None
        named = {step.get("type") for step in steps if isinstance(step, dict)} if isinstance(steps, list) else set()
        for job_type in sorted(t for t in named if isinstance(t, str) and t not in known)[:MAX_LOOKUPS]:
            if await self._job_types.service_for(job_type) is not None:
                known.add(job_type)
        return known


def accepted_body(state: ExecutionState) -> dict[str, Any]:
    urls = tracking_urls(state.execution_id)
    body = ExecutionAccepted(
        execution_id=state.execution_id,
        workflow_id=state.workflow_id,
        status=state.status,
        tracking_url=urls.status,
        websocket_url=urls.websocket,
        created_at=state.created_at,
    )
    return body.model_dump(mode="json")
