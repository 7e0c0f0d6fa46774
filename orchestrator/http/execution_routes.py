"""The /executions routes: follow an execution, control it, and take an external step's reports."""

from __future__ import annotations

import re
from typing import Final

from aiohttp import web

from orchestrator.auth import Authenticator
from orchestrator.http.errors import ApiError
from orchestrator.http.request import read_json, require_principal, require_tenant, validate, validate_query
from orchestrator.http.workflow_schemas import (
    ExecutionList,
    ExecutionListQuery,
    ExecutionSummary,
    StepCompleteRequest,
    StepProgressRequest,
    StepReportAnswer,
)
from orchestrator.workflows.engine import ExecutionNotFound, StepNotFound, WorkflowEngine
from orchestrator.workflows.reporters import ServiceLookup, reporting_service
from orchestrator.workflows.state import MAX_EXECUTION_ID_CHARS, ExecutionState
from orchestrator.workflows.status import progress_view, status_view, steps_view, tracking_urls

# Execution ids are uuids; anything else (a ':' above all, which would reach other keys) is no execution.
_EXECUTION_ID: Final = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_EXECUTION_ID_CHARS}}}")


class ExecutionRoutes:
    """The handlers of the /executions routes."""

    def __init__(self, engine: WorkflowEngine, services: ServiceLookup, authenticator: Authenticator) -> None:
        self._engine = engine
        self._services = services
        self._auth = authenticator

    async def status(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        state = await self._engine.get(tenant_id, _execution_id(request))
        return web.json_response(status_view(state).model_dump(mode="json"))

    async def steps(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        state = await self._engine.get(tenant_id, _execution_id(request))
        return web.json_response(steps_view(state).model_dump(mode="json"))

    async def list_executions(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        query = validate_query(ExecutionListQuery, request.query)
        states, total = await self._engine.executions.page(
            tenant_id,
            workflow_id=query.workflow_id,
            status=query.status.value if query.status else None,
            offset=query.offset,
            limit=query.limit,
        )
        page = ExecutionList(
            executions=[_summary(state) for state in states], total=total, offset=query.offset, limit=query.limit
        )
        return web.json_response(page.model_dump(mode="json"))

    async def continue_execution(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        state = await self._engine.continue_execution(tenant_id, _execution_id(request))
        return web.json_response(status_view(state).model_dump(mode="json"))

    async def cancel(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        state = await self._engine.cancel(tenant_id, _execution_id(request))
        return web.json_response(status_view(state).model_dump(mode="json"))

    async def retry(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        state = await self._engine.retry(tenant_id, _execution_id(request))
        return web.json_response(status_view(state).model_dump(mode="json"))

    async def step_progress(self, request: web.Request) -> web.Response:
        tenant_id, execution_id, step = await self._reporter(request)
        body = validate(StepProgressRequest, await read_json(request))
        state = await self._engine.report_progress(tenant_id, execution_id, step, body.to_progress())
        return web.json_response(_report_answer(state, step))

    async def step_complete(self, request: web.Request) -> web.Response:
        tenant_id, execution_id, step = await self._reporter(request)
        body = validate(StepCompleteRequest, await read_json(request))
        state = await self._engine.complete_step(
            tenant_id, execution_id, step, success=body.success, data=body.data, message=body.message
        )
        return web.json_response(_report_answer(state, step))

    async def _reporter(self, request: web.Request) -> tuple[str, str, str]:
        """(tenant, execution, step) of a report the caller may make: the tenant's key for its own
        executions, or the token of the step's service (`orchestrator.workflows.reporters`)."""
        principal = require_principal(self._auth, request)
        execution_id = _execution_id(request)
        step = request.match_info["step"]
        if principal.tenant_id is not None:
            state = await self._engine.get(principal.tenant_id, execution_id)
        elif principal.service is not None:
            owner = await self._engine.executions.owner(execution_id)
            if owner is None:
                raise ExecutionNotFound(execution_id)
            state = await self._engine.get(owner, execution_id)
        else:
            raise ApiError(
                403,
                "forbidden",
                "the admin key cannot report for a step: use the tenant's key or the step's service token",
            )
        if step not in state.steps:
            raise StepNotFound(execution_id, step)
        if principal.service is not None and principal.service != await reporting_service(state, step, self._services):
            raise ApiError(
                403,
                "forbidden",
                f"the token of service {principal.service!r} may not report for step {step!r}: only the step's "
                "config.service, or else the service of its job type, may",
            )
        return state.tenant_id, execution_id, step


def _execution_id(request: web.Request) -> str:
    execution_id = request.match_info["execution_id"]
    if _EXECUTION_ID.fullmatch(execution_id) is None:
        raise ExecutionNotFound(execution_id)
    return execution_id


def _summary(state: ExecutionState) -> ExecutionSummary:
    return ExecutionSummary(
        execution_id=state.execution_id,
        workflow_id=state.workflow_id,
        workflow_name=state.workflow_name,
        status=state.status,
        mode=state.mode,
        created_at=state.created_at,
        updated_at=state.updated_at,
        finished_at=state.finished_at,
        progress=progress_view(state),
        tracking_url=tracking_urls(state.execution_id).status,
    )


def _report_answer(state: ExecutionState, step: str) -> dict[str, object]:
    current = state.steps[step]
    answer = StepReportAnswer(
        execution_id=state.execution_id,
        step=step,
        step_status=current.status,
        attempt=current.attempt,
        execution_status=state.status,
    )
    return answer.model_dump(mode="json")
