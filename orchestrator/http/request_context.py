"""The outermost middleware: each request's id in its log records (`plumbing.log_context`), a server
span around it (`plumbing.tracing`), the parent of the spans its handler makes (the publish of a task),
and its count and time by route pattern in the metrics.

One middleware, not three: each wrapped every request and found its route, read the clock and caught
its status again (together about 1% of a POST /jobs's CPU, tests/bench profile).

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

from orchestrator.metrics import OrchestratorMetrics
from plumbing.log_context import log_context
from plumbing.metric_series import LabelledSeries
from plumbing.tracing import Tracing

log = logging.getLogger(__name__)

REQUEST_ID_HEADER: Final[str] = "X-Request-Id"
MAX_REQUEST_ID_CHARS: Final[int] = 128
REQUEST_ID: Final = web.RequestKey("baton_request_id", str)


def new_request_id(request: web.Request) -> str:
    value = request.headers.get(REQUEST_ID_HEADER, "").strip()
    return value[:MAX_REQUEST_ID_CHARS] if value else str(uuid.uuid4())


def request_context_middleware(tracing: Tracing, metrics: OrchestratorMetrics) -> Middleware:
    counts = LabelledSeries(metrics.http_requests)
    durations = LabelledSeries(metrics.http_duration)

    @web.middleware
    async def in_context(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[REQUEST_ID] = request_id = new_request_id(request)
        resource = request.match_info.route.resource
        # The route pattern, not the path: one series and few span names, whatever the job ids.
        route = resource.canonical if resource is not None else "unmatched"
        method = request.method
        started = time.perf_counter()
        status = 500
        with (
            log_context(request_id=request_id),
            tracing.span(
                f"{method} {route}",
                kind="server",
                attributes={"http.request.method": method, "http.route": route, "baton.request_id": request_id},
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
                elapsed = time.perf_counter() - started
                span.set_attributes({"http.response.status_code": status})
                # By route pattern (and method and status for the count).
                counts.get(route, method, str(status)).inc()
                durations.get(route).observe(elapsed)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("%s %s %d in %.1f ms", method, request.path, status, elapsed * 1e3)

    return in_context
