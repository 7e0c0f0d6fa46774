"""DELETE /cache/{type}: the tenant's result-cache entries of one job type, removed."""

from __future__ import annotations

from aiohttp import web

from orchestrator.auth import Authenticator
from orchestrator.http.errors import ApiError
from orchestrator.http.request import require_tenant
from orchestrator.http.schemas import CacheCleared
from orchestrator.store.result_cache import RedisResultCache
from protocol.names import JOB_TYPE_PATTERN, is_job_type


class CacheRoutes:
    def __init__(self, cache: RedisResultCache, authenticator: Authenticator) -> None:
        self._cache = cache
        self._auth = authenticator

    async def clear(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        job_type = request.match_info["type"]
        if not is_job_type(job_type):
            raise ApiError(422, "validation_error", f"job type {job_type!r} must match {JOB_TYPE_PATTERN}")
        removed = await self._cache.clear(tenant_id, job_type)
        return web.json_response(CacheCleared(type=job_type, removed=removed).model_dump(mode="json"))
