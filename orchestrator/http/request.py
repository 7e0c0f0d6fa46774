"""Reading a request: who is calling (tenant), its JSON body within a size cap, validated by a model."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from orchestrator import strict_json
from orchestrator.auth import Authenticator, Principal
from orchestrator.http.errors import ApiError
from orchestrator.http.request_context import REQUEST_ID, new_request_id
from orchestrator.jobs.service import YIELD_PAST_BYTES
from plumbing.log_context import bind_log_context

MAX_BODY_BYTES: Final[int] = 1024 * 1024
# A batch carries many small jobs (a thousand of ~2 KiB); a large job goes alone through POST /jobs.
# Parsing is not interruptible: a body this size of the parser's slowest input (many tiny values)
# holds the loop for tens of milliseconds; 16 MiB held it for 0.7 s (tests/bench/loop_stall.py).
MAX_BATCH_BODY_BYTES: Final[int] = 2 * 1024 * 1024

Model = TypeVar("Model", bound=BaseModel)


def require_principal(authenticator: Authenticator, request: web.Request) -> Principal:
    """The caller; 401 without a valid key."""
    principal = authenticator.authenticate(request)
    if principal is None:
        raise ApiError(
            401,
            "unauthorized",
            "missing or invalid API key: send Authorization: Bearer <key>",
            headers={"WWW-Authenticate": 'Bearer realm="baton"'},
        )
    bind_log_context(tenant_id=principal.tenant_id)  # the rest of the request's records name its tenant
    return principal


def require_tenant(authenticator: Authenticator, request: web.Request) -> str:
    """The tenant of the request's API key; 401 without a valid key, 403 for keys with no tenant."""
    principal = require_principal(authenticator, request)
    if principal.tenant_id is None:
        raise ApiError(403, "forbidden", "this route needs a tenant's API key, not the admin key or a service token")
    return principal.tenant_id


def require_tenant_or_admin(authenticator: Authenticator, request: web.Request, what: str) -> str | None:
    """The tenant whose figures the caller sees; None for the admin key (every tenant's); 401 without a
    valid key, 403 for a service token (`what` names what it may not read)."""
    principal = require_principal(authenticator, request)
    if principal.is_admin:
        return None
    if principal.tenant_id is None:
        raise ApiError(403, "forbidden", f"a service token cannot read {what}")
    return principal.tenant_id


def request_id(request: web.Request) -> str:
    """The request's id, as `request_context_middleware` made it (from X-Request-Id, or a new one)."""
    return request.get(REQUEST_ID) or new_request_id(request)


async def read_json(request: web.Request, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """The parsed JSON body; 413 past `max_bytes` (checked before reading when the length is declared)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    # Chunked bodies declare no length: read up to the cap and stop there.
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    if not body:
        raise ApiError(400, "invalid_json", "the request needs a JSON body")
    try:
        parsed = strict_json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc
    if len(body) > YIELD_PAST_BYTES:
        await asyncio.sleep(0)  # let other clients in between the parse and the work that follows
    return parsed


def validate(model: type[Model], data: Any) -> Model:
    """`data` as `model`; 422 with pydantic's error list otherwise."""
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error", f"expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", validation_details(exc)) from exc


def validate_query(model: type[Model], query: Mapping[str, str]) -> Model:
    try:
        return model.model_validate(dict(query))
    except ValidationError as exc:
        raise ApiError(422, "validation_error", validation_details(exc)) from exc


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    # Without context and url: contexts may hold exception objects, which JSON cannot carry.
    return [
        {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the request body exceeds {max_bytes} bytes")
