"""The /dead-letters routes: list a service's parked tasks, replay some or all of them.

A tenant's key sees its own parked tasks; the admin key (BATON_ADMIN_KEY) sees every tenant's,
undecodable messages included; a service token is refused.
"""

from __future__ import annotations

from aiohttp import web

from orchestrator.auth import Authenticator
from orchestrator.http.errors import ApiError
from orchestrator.http.request import read_json, require_tenant_or_admin, validate, validate_query
from orchestrator.http.schemas import DeadLetterList, DeadLetterQuery, ReplayRequest, ReplayResponse
from orchestrator.jobs.dead_letter_replay import DeadLetterService
from protocol.names import check_service_name
from protocol.topology import dead_letter_queue


def _caller_tenant(authenticator: Authenticator, request: web.Request) -> str | None:
    """The tenant whose parked tasks the caller may touch; None for the admin (all of them)."""
    return require_tenant_or_admin(authenticator, request, "dead letters")


def _service(request: web.Request) -> str:
    service = request.match_info["service"]
    try:
        return check_service_name(service)
    except ValueError as exc:
        raise ApiError(404, "service_not_found", str(exc)) from exc


class DeadLetterRoutes:
    def __init__(self, dead_letters: DeadLetterService, authenticator: Authenticator) -> None:
        self._dead_letters = dead_letters
        self._auth = authenticator

    async def list_dead_letters(self, request: web.Request) -> web.Response:
        tenant_id = _caller_tenant(self._auth, request)
        service = _service(request)
        query = validate_query(DeadLetterQuery, request.query)
        page = await self._dead_letters.list(service, tenant_id, offset=query.offset, limit=query.limit)
        body = DeadLetterList.model_validate(
            {
                "service": service,
                "queue": dead_letter_queue(service),
                "entries": page.entries,
                "matched": page.matched,
                "scanned": page.scanned,
                "truncated": page.truncated,
                "offset": query.offset,
                "limit": query.limit,
            }
        )
        return web.json_response(body.model_dump(mode="json"))

    async def replay_dead_letters(self, request: web.Request) -> web.Response:
        tenant_id = _caller_tenant(self._auth, request)
        service = _service(request)
        body = validate(ReplayRequest, await read_json(request))
        report = await self._dead_letters.replay(service, tenant_id, None if body.all else body.task_ids)
        response = ReplayResponse.model_validate(
            {"replayed": report.replayed, "errors": report.errors, "truncated": report.truncated}
        )
        return web.json_response(response.model_dump(mode="json"))
