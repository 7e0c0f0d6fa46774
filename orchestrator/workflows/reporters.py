"""Who may report for an external step besides the execution's tenant: the one service it belongs to.

Choice where DESIGN is silent: a service token may report for a step when its service is the step's
`config.service` (a string), or, without one, the service announced for the step's job `type`. An
execution id alone never suffices, and a step that names no service (no `config.service`, a type no
service announced) takes reports from the tenant's key only.
"""

from __future__ import annotations

from typing import Protocol

from orchestrator.workflows.state import ExecutionState


class ServiceLookup(Protocol):
    async def service_for(self, job_type: str) -> str | None: ...


async def reporting_service(state: ExecutionState, step: str, services: ServiceLookup) -> str | None:
    """The service whose token may report for `step` of this execution; None when no service may."""
    definition = next((s for s in state.definition.steps if s.name == step), None)
    if definition is None:
        return None
    configured = definition.config.get("service")
    if isinstance(configured, str) and configured:
        return configured
    return await services.service_for(definition.type)
