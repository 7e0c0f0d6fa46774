"""The OpenAPI 3.1 document of the HTTP API, built from the route table below and the pydantic models.

The table is the one place a route's documentation lives; a test checks that every route the
application serves is in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from orchestrator.http.schemas import (
    AgentExecuteRequest,
    BatchRequest,
    BatchResponse,
    CancelResponse,
    DeadLetterList,
    DeadLetterQuery,
    ErrorBody,
    HealthReport,
    JobAccepted,
    JobCreateRequest,
    JobFailedBody,
    JobList,
    JobListQuery,
    JobResult,
    JobSpec,
    JobView,
    ReplayRequest,
    ReplayResponse,
    UnavailableBody,
    UnknownJobTypeBody,
)

API_VERSION: Final[str] = "1.0.0"
_REF: Final[str] = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Response:
    description: str
    model: type[BaseModel] | None = None
    content_type: str = "application/json"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    responses: dict[int, Response]
    auth: bool = True
    # WebSocket routes also take ?token= or a first {"type": "auth"} message: no credentials is no error there.
    optional_auth: bool = False
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    tags: tuple[str, ...] = ("jobs",)
    description: str = ""
    extra_models: tuple[type[BaseModel], ...] = field(default=())


_UNAUTHORIZED = Response("missing or invalid API key", ErrorBody)
_FORBIDDEN = Response("the key has no tenant (admin key or service token)", ErrorBody)
_NOT_FOUND = Response("no such job for this tenant", ErrorBody)
_INVALID = Response("invalid body or query (pydantic's error list in detail)", ErrorBody)
_BAD_JSON = Response("the body is not JSON", ErrorBody)
_TOO_LARGE = Response("the body is over the size cap", ErrorBody)
_UNAVAILABLE = Response("RabbitMQ or Redis is down, or the broker did not confirm; see Retry-After", ErrorBody)
_CREATE_RESPONSES: Final[dict[int, Response]] = {
    200: Response("the job is terminal: a replay of a finished job, or it ended within `wait`", JobAccepted),
    202: Response("accepted: the job is queued or running", JobAccepted),
    400: _BAD_JSON,
    401: _UNAUTHORIZED,
    403: _FORBIDDEN,
    409: Response("the idempotency key was used with a different body", ErrorBody),
    413: _TOO_LARGE,
    422: Response("invalid body, or a job type no service serves (with the known types)", UnknownJobTypeBody),
    503: Response(
        "RabbitMQ or Redis is down, or the broker did not confirm (publish_unconfirmed: the job was kept and may "
        "still run, see job_id); see Retry-After",
        UnavailableBody,
    ),
}
_WS_RESPONSES: Final[dict[int, Response]] = {
    101: Response("switching to the WebSocket protocol"),
    400: Response("not a WebSocket upgrade request", ErrorBody),
    401: Response("an invalid API key or ?token=", ErrorBody),
}
_NO_ROUTE = Response("no such route (an empty path parameter)", ErrorBody)

OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation(
        "post",
        "/jobs",
        "Create a job",
        _CREATE_RESPONSES,
        body=JobCreateRequest,
        description="The job is recorded, then its task is published to its service queue. With `wait` the "
        "call holds on until the job ends or `wait` seconds pass; a job that failed within `wait` answers 200 "
        "with its status and error.",
    ),
    Operation(
        "get",
        "/jobs",
        "List the tenant's jobs, newest first",
        {200: Response("one page of jobs", JobList), 401: _UNAUTHORIZED, 403: _FORBIDDEN, 422: _INVALID},
        query=JobListQuery,
    ),
    Operation(
        "post",
        "/jobs/batch",
        "Create up to 1,000 jobs",
        {
            200: Response("one entry per item, in order: a job id or an error", BatchResponse),
            400: _BAD_JSON,
            401: _UNAUTHORIZED,
            403: _FORBIDDEN,
            413: _TOO_LARGE,
            422: _INVALID,
            503: _UNAVAILABLE,
        },
        body=BatchRequest,
        description=(
            "Each item of `jobs` is a JobSpec, validated, encoded and size-checked on its own: an item that fails "
            "is that entry's error (validation_error, unknown_job_type, unencodable_payload, payload_too_large) "
            "and the others are still created. The body is at most 2 MiB (413 otherwise): a batch carries many "
            "small jobs; a large one goes alone through POST /jobs (1 MiB)."
        ),
        extra_models=(JobSpec,),
    ),
    Operation(
        "post",
        "/jobs/agent/{agent_id}/execute",
        "Run an agent (an agent_execution job)",
        {**_CREATE_RESPONSES, 404: _NO_ROUTE},
        body=AgentExecuteRequest,
    ),
    Operation(
        "get",
        "/jobs/{job_id}",
        "A job's record: status, progress, delegated services, result or error",
        {200: Response("the job", JobView), 401: _UNAUTHORIZED, 403: _FORBIDDEN, 404: _NOT_FOUND},
    ),
    Operation(
        "get",
        "/jobs/{job_id}/status",
        "Alias of GET /jobs/{job_id}",
        {200: Response("the job", JobView), 401: _UNAUTHORIZED, 403: _FORBIDDEN, 404: _NOT_FOUND},
    ),
    Operation(
        "get",
        "/jobs/{job_id}/result",
        "A job's result",
        {
            200: Response("completed: the result", JobResult),
            202: Response("not finished yet: status and progress", JobResult),
            401: _UNAUTHORIZED,
            403: _FORBIDDEN,
            404: _NOT_FOUND,
            409: Response("the job failed, was cancelled or timed out: its error", JobFailedBody),
        },
    ),
    Operation(
        "post",
        "/jobs/{job_id}/cancel",
        "Cancel a queued or running job",
        {
            200: Response("cancelled; workers are told to stop it", CancelResponse),
            401: _UNAUTHORIZED,
            403: _FORBIDDEN,
            404: _NOT_FOUND,
            409: Response("the job already ended; `status` says how", ErrorBody),
        },
    ),
    Operation(
        "get",
        "/dead-letters/{service}",
        "List a service's parked tasks (baton.<service>.dead)",
        {
            200: Response("one page of parked tasks", DeadLetterList),
            401: _UNAUTHORIZED,
            403: Response("a service token", ErrorBody),
            404: Response("not a valid service name", ErrorBody),
            422: _INVALID,
            503: _UNAVAILABLE,
        },
        query=DeadLetterQuery,
        tags=("dead letters",),
        description="A tenant sees its own parked tasks; the admin key sees every tenant's, undecodable "
        "messages included. The queue is read without removing anything; one scan is bounded in "
        "messages and time (`truncated` says when it stopped early).",
    ),
    Operation(
        "post",
        "/dead-letters/{service}/replay",
        "Replay parked tasks as new attempts of their jobs",
        {
            200: Response("the tasks replayed, and per-item errors", ReplayResponse),
            400: _BAD_JSON,
            401: _UNAUTHORIZED,
            403: Response("a service token", ErrorBody),
            404: Response("not a valid service name", ErrorBody),
            413: _TOO_LARGE,
            422: _INVALID,
            503: _UNAVAILABLE,
        },
        body=ReplayRequest,
        tags=("dead letters",),
        description="Each selected parked task is published again with attempt + 1 (confirmed) and then "
        "removed from the dead-letter queue; its job goes back to `queued`, and the new attempt's events "
        "reach the job's subscribers. Undecodable messages, and tasks of completed or cancelled jobs, "
        "are not replayed (per-item errors).",
    ),
    Operation(
        "get",
        "/ws/task_updates",
        "WebSocket: live updates of the tenant's jobs",
        _WS_RESPONSES,
        optional_auth=True,
        tags=("websocket",),
        description="Authenticate with the Bearer header or `?token=`. Send {type: subscribe, job_ids: [...]} or "
        "{type: subscribe, all: true}, unsubscribe, cancel_job, ping; the server sends connection_established, "
        "each subscribed job's current state, then its events as they happen.",
    ),
    Operation(
        "get",
        "/ws/jobs/{job_id}",
        "WebSocket: one job's events",
        {**_WS_RESPONSES, 404: _NO_ROUTE},
        optional_auth=True,
        tags=("websocket",),
    ),
    Operation(
        "get",
        "/ws/{execution_id}",
        "WebSocket: one job's (or workflow execution's) events",
        {**_WS_RESPONSES, 404: _NO_ROUTE},
        optional_auth=True,
        tags=("websocket",),
    ),
    Operation(
        "get",
        "/health",
        "Broker, Redis, and per service queue depth, consumers and live workers",
        {200: Response("broker and Redis are up", HealthReport), 503: Response("a dependency is down", HealthReport)},
        auth=False,
        tags=("operations",),
    ),
    Operation(
        "get",
        "/metrics",
        "Prometheus metrics",
        {200: Response("the text exposition format", content_type="text/plain")},
        auth=False,
        tags=("operations",),
    ),
    Operation(
        "get",
        "/openapi.json",
        "This document",
        {200: Response("OpenAPI 3.1")},
        auth=False,
        tags=("operations",),
    ),
    Operation(
        "get",
        "/",
        "The live dashboard page",
        {200: Response("HTML", content_type="text/html")},
        auth=False,
        tags=("operations",),
    ),
)


def build_openapi(operations: tuple[Operation, ...] = OPERATIONS) -> dict[str, Any]:
    schemas = _component_schemas(operations)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method] = _operation(op, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Baton orchestrator",
            "version": API_VERSION,
            "description": "Create jobs, follow them, and get their results. Errors are JSON {error, detail}.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "a tenant's API key"},
                "query_token": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "token",
                    "description": "a tenant's API key, on WebSocket upgrades only (browsers cannot set headers)",
                },
            },
        },
    }


def _component_schemas(operations: tuple[Operation, ...]) -> dict[str, Any]:
    requests = {m for op in operations for m in (op.body, op.query, *op.extra_models) if m is not None}
    responses = {r.model for op in operations for r in op.responses.values() if r.model is not None}
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (m, "validation") for m in sorted(requests, key=lambda m: m.__name__)
    ]
    models += [(m, "serialization") for m in sorted(responses - requests, key=lambda m: m.__name__)]
    _, top = models_json_schema(models, ref_template=_REF)
    return dict(top.get("$defs", {}))


def _operation(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", op.path)
    ]
    if op.query is not None:
        properties = schemas[op.query.__name__]["properties"]
        params += [
            {"name": n, "in": "query", "required": False, "schema": properties[n]} for n in op.query.model_fields
        ]
    body: dict[str, Any] = {"summary": op.summary, "tags": list(op.tags), "responses": {}}
    if op.description:
        body["description"] = op.description
    if params:
        body["parameters"] = params
    if op.optional_auth:
        body["security"] = [{"bearer": []}, {"query_token": []}, {}]
    else:
        body["security"] = [{"bearer": []}] if op.auth else []
    if op.body is not None:
        body["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(op.body)}}}
    for status, response in sorted(op.responses.items()):
        entry: dict[str, Any] = {"description": response.description}
        if response.model is not None:
            entry["content"] = {response.content_type: {"schema": _ref(response.model)}}
        elif response.content_type != "application/json":
            entry["content"] = {response.content_type: {"schema": {"type": "string"}}}
        body["responses"][str(status)] = entry
    return body


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}
