"""Every error the HTTP API answers is JSON {error, detail}: one middleware turns our errors,
the registry's and aiohttp's own (404, 405, 413, ...) into that shape."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Handler

from orchestrator.errors import (
    BrokerUnavailable,
    CacheUnsupported,
    IdempotencyConflict,
    JobNotFound,
    NotRetryable,
    PublishFailed,
    PublishUncertain,
    QuotaExceeded,
    RegistryUnavailable,
    UnknownJobType,
    UnpublishableJob,
)
from orchestrator.workflows.engine import ExecutionNotFound, NotAllowed, StepNotFound, WorkflowNotFound
from orchestrator.workflows.errors import DefinitionError

log = logging.getLogger(__name__)

# Seconds a client should wait before retrying when a dependency is down.
RETRY_AFTER_BROKER: Final[int] = 5
RETRY_AFTER_PUBLISH: Final[int] = 2
RETRY_AFTER_REDIS: Final[int] = 5


class ApiError(Exception):
    """An HTTP error answer, raised by handlers and rendered by `error_middleware`."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: Any,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> web.Response:
        body = {"error": self.error, "detail": self.detail, **self.extra}
        return web.json_response(body, status=self.status, headers=self.headers)


def api_error_for(exc: Exception) -> ApiError | None:
    """Our domain errors and the registry's, as HTTP answers; None for anything unexpected."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, JobNotFound):
        return ApiError(404, "job_not_found", str(exc))
    if isinstance(exc, DefinitionError):
        return ApiError(422, "invalid_workflow", exc.details())
    if isinstance(exc, WorkflowNotFound):
        return ApiError(404, "workflow_not_found", str(exc))
    if isinstance(exc, ExecutionNotFound):
        # Another tenant's execution answers exactly this too: its key names only its own tenant's.
        return ApiError(404, "execution_not_found", str(exc))
    if isinstance(exc, StepNotFound):
        return ApiError(404, "step_not_found", str(exc))
    if isinstance(exc, NotAllowed):
        return ApiError(409, "not_allowed", str(exc), extra={"execution_id": exc.execution_id, "status": exc.status})
    if isinstance(exc, UnknownJobType):
        return ApiError(422, "unknown_job_type", str(exc), extra={"known_types": exc.known_types})
    if isinstance(exc, UnpublishableJob):
        if exc.too_large:
            return ApiError(413, "payload_too_large", str(exc))
        return ApiError(422, "unencodable_payload", str(exc))
    if isinstance(exc, NotRetryable):
        extra: dict[str, Any] = {"job_id": exc.job_id, "status": exc.status}
        if exc.execution:
            extra["retry_url"] = f"/executions/{exc.job_id}/retry"
        return ApiError(409, "not_retryable", str(exc), extra=extra)
    if isinstance(exc, CacheUnsupported):
        return ApiError(422, "cache_unsupported", str(exc))
    if isinstance(exc, IdempotencyConflict):
        return ApiError(409, "idempotency_conflict", str(exc), extra={"job_id": exc.job_id})
    if isinstance(exc, QuotaExceeded):
        extra = {"requested": exc.cost, "available": exc.available, "burst": exc.burst}
        if exc.retry_after is None:
            return ApiError(429, "quota_exceeded", str(exc), extra=extra)
        # Whole seconds, rounded up: a client that waits that long finds the tokens there.
        seconds = max(1, math.ceil(exc.retry_after))
        return ApiError(429, "quota_exceeded", str(exc), headers={"Retry-After": str(seconds)}, extra=extra)
    if isinstance(exc, PublishUncertain):
        detail = (
            f"the broker did not confirm job {exc.job_id} in time; the job may still run: track it at "
            f"/jobs/{exc.job_id}, or retry with the same idempotency key to get this job back"
        )
        return ApiError(
            503,
            "publish_unconfirmed",
            detail,
            headers={"Retry-After": str(RETRY_AFTER_PUBLISH)},
            extra={"job_id": exc.job_id},
        )
    if isinstance(exc, BrokerUnavailable):
        return ApiError(503, "broker_unavailable", str(exc), headers={"Retry-After": str(RETRY_AFTER_BROKER)})
    if isinstance(exc, PublishFailed):
        return ApiError(
            503, "publish_failed", f"{exc} ({exc.reason})", headers={"Retry-After": str(RETRY_AFTER_PUBLISH)}
        )
    if isinstance(exc, RegistryUnavailable):
        return ApiError(503, "registry_unavailable", str(exc), headers={"Retry-After": str(RETRY_AFTER_REDIS)})
    return None


def _from_http_exception(exc: web.HTTPException) -> ApiError:
    try:
        code = HTTPStatus(exc.status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        code = "http_error"
    if exc.status == 413:
        code = "body_too_large"
    headers = {k: v for k, v in exc.headers.items() if k.lower() not in {"content-type", "content-length"}}
    detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    return ApiError(exc.status, code, detail, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and other non-errors pass through as aiohttp renders them
        return _from_http_exception(exc).response()
    except Exception as exc:
        error = api_error_for(exc)
        if error is None:
            log.exception("unhandled error on %s %s", request.method, request.path)
            error = ApiError(500, "internal_error", "unexpected server error")
        return error.response()
