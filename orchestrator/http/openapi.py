"""The OpenAPI 3.1 document of the HTTP API, built from the route table (`orchestrator.http.routes`)
and the pydantic models: what a route is documented as and what it is served by are one entry."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from protocol.control import WORKFLOW_ID_PATTERN
from protocol.names import JOB_TYPE_PATTERN

API_VERSION: Final[str] = "1.0.0"
_REF: Final[str] = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Response:
    description: str
    model: type[BaseModel] | None = None
    content_type: str = "application/json"
    retry_after: bool = False  # the answer may carry a Retry-After header


@dataclass(frozen=True)
class Header:
    name: str
    description: str


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
    headers: tuple[Header, ...] = ()  # optional request headers the route reads


def build_openapi(operations: tuple[Operation, ...]) -> dict[str, Any]:
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
        {"name": name, "in": "path", "required": True, "schema": _path_schema(name)}
        for name in re.findall(r"{(\w+)}", op.path)
    ]
    params += [
        {"name": h.name, "in": "header", "required": False, "description": h.description, "schema": {"type": "string"}}
        for h in op.headers
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
        if response.retry_after:
            entry["headers"] = {
                "Retry-After": {
                    "description": "whole seconds to wait first",
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        body["responses"][str(status)] = entry
    return body


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _path_schema(name: str) -> dict[str, str]:
    # A workflow id or a job type is refused (422) unless it has this shape; other ids are looked up
    # (404 when unknown).
    if name == "workflow_id":
        return {"type": "string", "pattern": WORKFLOW_ID_PATTERN}
    if name == "type":
        return {"type": "string", "pattern": JOB_TYPE_PATTERN}
    return {"type": "string"}
