"""Bearer keys decide the tenant; the admin key and service tokens are special principals.

A service token speaks for one service (`BATON_SERVICE_TOKEN=service:token,...`): over the
WebSocket it may report events of tasks routed to that service; over HTTP it may report an external
step of its service and create a job for a running job's tenant (POST /jobs, a worker's
`ctx.submit_job`: orchestrator.http.job_creator). Nothing else: it cannot follow, list or cancel jobs,
and every other route refuses it like any key without a tenant.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from orchestrator.settings import DEV_TENANT, OrchestratorSettings


@dataclass(frozen=True)
class Principal:
    tenant_id: str | None  # None for the admin and for services
    is_admin: bool = False
    service: str | None = None  # the service a service token speaks for

    @property
    def is_service(self) -> bool:
        return self.service is not None


class Authenticator:
    def __init__(
        self,
        api_keys: Mapping[str, str],
        admin_key: str | None,
        service_tokens: Mapping[str, str] | None = None,
    ) -> None:
        self._api_keys = dict(api_keys)
        self._admin_key = _raw(admin_key) if admin_key else None
        self._service_tokens = [(_raw(token), service) for token, service in (service_tokens or {}).items()]

    @classmethod
    def from_settings(cls, settings: OrchestratorSettings) -> tuple[Authenticator, str | None]:
        """The authenticator, and the generated dev key when BATON_API_KEYS is unset (to print)."""
        if settings.api_keys is not None:
            return cls(settings.api_keys, settings.admin_key, settings.service_tokens), None
        dev_key = new_dev_key()
        return cls({dev_key: DEV_TENANT}, settings.admin_key, settings.service_tokens), dev_key

    def principal_for(self, token: str | None) -> Principal | None:
        if not token:
            return None
        raw = _raw(token)
        if self._admin_key and hmac.compare_digest(raw, self._admin_key):
            return Principal(tenant_id=None, is_admin=True)
        for service_token, service in self._service_tokens:
            if hmac.compare_digest(raw, service_token):
                return Principal(tenant_id=None, service=service)
        tenant = self._api_keys.get(token)
        return Principal(tenant_id=tenant) if tenant else None

    def authenticate(self, request: web.Request, *, allow_query_token: bool = False) -> Principal | None:
        """The Bearer header; `?token=` only where allowed (WebSocket upgrades: browsers cannot set
        headers there). Elsewhere a key in the URL would end up in proxies' and servers' logs."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            return self.principal_for(token.strip())
        return self.principal_for(request.query.get("token")) if allow_query_token else None


def new_dev_key() -> str:
    """A key for tenant DEV_TENANT, made at start when BATON_API_KEYS is unset."""
    return "dev-" + secrets.token_urlsafe(24)


def _raw(token: str) -> bytes:
    # compare_digest takes str only when ASCII; a key sent with other characters is just a wrong key.
    return token.encode("utf-8", "surrogatepass")
