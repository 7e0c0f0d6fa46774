"""GET /whoami: what kind of key the caller holds, so a client (the dashboard) need not probe a route for a 403."""

from __future__ import annotations

from enum import StrEnum

from aiohttp import web
from pydantic import BaseModel, Field

from orchestrator.auth import Authenticator, Principal
from orchestrator.http.request import require_principal


class Role(StrEnum):
    TENANT = "tenant"
    ADMIN = "admin"
    SERVICE = "service"


class Identity(BaseModel):
    role: Role = Field(
        description="tenant: a tenant's API key (the jobs and workflows routes); admin: the admin key (every "
        "tenant's queues, statistics and dead letters); service: a worker service's token"
    )
    tenant_id: str | None = Field(description="the key's tenant; null for the admin key and service tokens")


def identity_of(principal: Principal) -> Identity:
    if principal.is_admin:
        return Identity(role=Role.ADMIN, tenant_id=None)
    if principal.is_service:
        return Identity(role=Role.SERVICE, tenant_id=None)
    return Identity(role=Role.TENANT, tenant_id=principal.tenant_id)


class IdentityRoutes:
    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def whoami(self, request: web.Request) -> web.Response:
        identity = identity_of(require_principal(self._auth, request))
        return web.json_response(identity.model_dump(mode="json"))
