"""Bearer keys decide the tenant; the admin key and the service token are special principals."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from protocol.settings import Settings

DEV_TENANT = "dev"


@dataclass(frozen=True)
class Principal:
    tenant_id: str | None  # None for the admin and for services
    is_admin: bool = False
    is_service: bool = False


class Authenticator:
    def __init__(self, api_keys: Mapping[str, str], admin_key: str | None, service_token: str | None) -> None:
        self._api_keys = dict(api_keys)
        self._admin_key = admin_key
        self._service_token = service_token

    @classmethod
    def from_settings(cls, settings: Settings) -> tuple[Authenticator, str | None]:
        """The authenticator, and the generated dev key when BATON_API_KEYS is unset (to print)."""
        if settings.api_keys is not None:
            return cls(settings.api_keys, settings.admin_key, settings.service_token), None
        dev_key = "dev-" + secrets.token_urlsafe(24)
        return cls({dev_key: DEV_TENANT}, settings.admin_key, settings.service_token), dev_key

    def principal_for(self, token: str | None) -> Principal | None:
        if not token:
            return None
        if self._admin_key and hmac.compare_digest(token, self._admin_key):
            return Principal(tenant_id=None, is_admin=True)
        if self._service_token and hmac.compare_digest(token, self._service_token):
            return Principal(tenant_id=None, is_service=True)
        tenant = self._api_keys.get(token)
        return Principal(tenant_id=tenant) if tenant else None

    def authenticate(self, request: web.Request) -> Principal | None:
        """Bearer header first; browsers, which cannot set headers on a WebSocket, use ?token=."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            return self.principal_for(token.strip())
        return self.principal_for(request.query.get("token"))
