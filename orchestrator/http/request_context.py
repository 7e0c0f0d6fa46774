"""The outermost middleware: each request's id in its log records (`plumbing.log_context`) and a server
span around it (`plumbing.tracing`), the parent of the spans its handler makes (the publish of a task).

The request id is the client's X-Request-Id (cut to 128 characters), or a new uuid, made once here so
the logs, the job's context ids and every later reader (`request.request_id`) agree.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from plumbing.log_context import log_context
from plumbing.tracing import Tracing

log = logging.getLogger(__name__)

REQUEST_ID_HEADER: Final[str] = "X-Request-Id"
MAX_REQUEST_ID_CHARS: Final[int] = 128
REQUEST_ID: Final = web.RequestKey("baton_request_id", str)

def new_request_id(request: web.Request) -> str:
    value = request.headers.get(REQUEST_ID_HEADER, "").strip()
    return value[:MAX_REQUEST_ID_CHARS] if value else str(uuid.uuid4())


def request_context_middleware(tracing: Tracing) -> Middleware:
    @web.middleware
    async def in_context(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[REQUEST_ID] = request_id = new_request_id(request)
        resource = request.match_info.route.resource
        # The route pattern, not the path: span names stay few, whatever the job ids.
        route = resource.canonical if resource is not None else "unmatched"
        started = time.perf_counter()
        status = 500
        with (
            log_context(request_id=request_id),
            tracing.span(
                f"{request.method} {route}",
                kind="server",
                attributes={"http.request.method": request.method, "http.route": route, "baton.request_id": request_id},
            ) as span,
        ):
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                span.set_attributes({"http.response.status_code": status})
                elapsed_ms = (time.perf_counter() - started) * 1e3
                log.debug("%s %s %d in %.1f ms", request.method, request.path, status, elapsed_ms)

    return in_context
