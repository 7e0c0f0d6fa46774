"""The OpenAPI document describes every route the application serves, and its references resolve."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema_rs
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from orchestrator.app import create_app
from orchestrator.http.routes import ROUTES, add_routes, openapi_document
from orchestrator.settings import OrchestratorSettings

PUBLIC = {
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/"),
    ("get", "/docs"),
    ("get", "/docs/{name}"),
    ("get", "/static/{name}"),
}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_every_served_route_is_documented() -> None:
    """The route table drives both registration and the document: check the registration side."""
    # Building the app starts nothing: no broker or Redis is needed to read its routes.
    app = create_app(OrchestratorSettings(api_keys={"k": "t"}))
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method not in {"HEAD", "OPTIONS"}
    }
    paths = openapi_document()["paths"]
    documented = {(method, path) for path, ops in paths.items() for method in ops}
    assert served == documented


def test_the_route_table_refuses_missing_or_unused_handlers() -> None:
    class Stray:
        pass

    with pytest.raises(ValueError, match="no JobRoutes given for POST /jobs"):
        add_routes(web.Application().router, [], ROUTES)
    with pytest.raises(ValueError, match="handlers no route uses"):
        add_routes(web.Application().router, [Stray()], ())


def test_references_resolve_and_the_document_is_json() -> None:
    doc = json.loads(json.dumps(openapi_document()))
    schemas = doc["components"]["schemas"]
    refs = _refs(doc)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/")
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_security_and_parameters() -> None:
    paths = openapi_document()["paths"]
    for path, ops in paths.items():
        for method, op in ops.items():
            if not path.startswith("/ws/"):  # see test_websocket_routes_document_plain_http_answers
                assert op["security"] == ([] if (method, path) in PUBLIC else [{"bearer": []}]), (method, path)
            assert op["responses"], (method, path)
            for name in ("job_id", "agent_id", "execution_id"):
                if "{" + name + "}" in path:
                    assert {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} in op[
                        "parameters"
                    ]
    create = paths["/jobs"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobCreateRequest"
    }
    assert {"200", "202", "400", "401", "409", "413", "422", "503"} <= set(create["responses"])
    listed = {p["name"] for p in paths["/jobs"]["get"]["parameters"]}
    assert listed == {"status", "type", "session_id", "created_after", "created_before", "offset", "limit"}


def _validator(doc: dict[str, Any], model: str) -> Any:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": f"#/components/schemas/{model}",
        "components": doc["components"],
    }
    return jsonschema_rs.validator_for(schema)


def _response_validator(doc: dict[str, Any], method: str, path: str, status: int) -> Any:
    content = doc["paths"][path][method]["responses"][str(status)]["content"]["application/json"]
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **content["schema"]}
    return jsonschema_rs.validator_for({**schema, "components": doc["components"]})


@pytest.mark.parametrize("model", ["JobCreateRequest", "JobSpec", "AgentExecuteRequest"])
def test_the_priority_range_is_documented(model: str) -> None:
    validator = _validator(openapi_document(), model)
    base = {"type": "t"} if model != "AgentExecuteRequest" else {}
    for accepted in (0, 9, "high", "low", None):
        assert validator.is_valid({**base, "priority": accepted}), accepted
    for refused in (-1, 10, "urgent", True):
        assert not validator.is_valid({**base, "priority": refused}), refused


def test_the_replay_body_documents_exactly_one_selection() -> None:
    validator = _validator(openapi_document(), "ReplayRequest")
    assert validator.is_valid({"all": True})
    assert validator.is_valid({"task_ids": ["t1"]})
    assert validator.is_valid({"task_ids": ["t1"], "all": False})
    for refused in ({}, {"all": False}, {"all": True, "task_ids": ["t1"]}, {"task_ids": None}):
        assert not validator.is_valid(refused), refused


@pytest.mark.parametrize("path", ["/jobs", "/jobs/agent/{agent_id}/execute"])
def test_every_422_of_job_creation_matches_its_document(path: str) -> None:
    validator = _response_validator(openapi_document(), "post", path, 422)
    assert validator.is_valid({"error": "validation_error", "detail": "expected a JSON object, got list"})
    assert validator.is_valid({"error": "validation_error", "detail": [{"loc": ["type"], "msg": "m", "type": "t"}]})
    assert validator.is_valid({"error": "unencodable_payload", "detail": "..."})
    assert validator.is_valid({"error": "unknown_job_type", "detail": "...", "known_types": {"llm_request": "query"}})


def test_every_route_that_reads_a_body_documents_400_and_413() -> None:
    paths = openapi_document()["paths"]
    for path, ops in paths.items():
        for method, op in ops.items():
            if "requestBody" in op:
                assert {"400", "413", "422"} <= set(op["responses"]), (method, path)


def test_websocket_routes_document_plain_http_answers() -> None:
    paths = openapi_document()["paths"]
    for path in ("/ws/task_updates", "/ws/jobs/{job_id}", "/ws/{execution_id}"):
        op = paths[path]["get"]
        # The key may also come as ?token= or as the first message: no credentials is not a 401.
        assert {} in op["security"] and {"bearer": []} in op["security"], path
        assert {"101", "400", "401"} <= set(op["responses"]), path


def test_get_on_the_batch_route_is_405_not_a_job_lookup() -> None:
    app = create_app(OrchestratorSettings(api_keys={"k": "t"}))
    match = asyncio.run(app.router.resolve(make_mocked_request("GET", "/jobs/batch")))
    assert isinstance(match.http_exception, web.HTTPMethodNotAllowed)
    assert match.http_exception.allowed_methods == {"POST"}
    assert asyncio.run(app.router.resolve(make_mocked_request("GET", "/jobs/batch-1"))).route.resource.canonical == (
        "/jobs/{job_id}"
    )


@pytest.mark.parametrize("model", ["JobCreateRequest", "AgentExecuteRequest"])
def test_number_bounds_are_documented(model: str) -> None:
    validator = _validator(openapi_document(), model)
    base = {"type": "t"} if model != "AgentExecuteRequest" else {}
    assert validator.is_valid({**base, "timeout_ms": 1, "wait": 0})
    for refused in ({"timeout_ms": 0}, {"timeout_ms": 7 * 24 * 3600 * 1000 + 1}, {"wait": -1}, {"wait": "1"}):
        assert not validator.is_valid({**base, **refused}), refused


def test_no_bound_is_left_as_an_unknown_keyword() -> None:
    # pydantic writes a bound it cannot place as "gt"/"le"..., which JSON Schema ignores: an undocumented bound.
    def keys(node: Any) -> set[str]:
        if isinstance(node, dict):
            return set(node) | {k for value in node.values() for k in keys(value)}
        if isinstance(node, list):
            return {k for value in node for k in keys(value)}
        return set()

    assert not keys(openapi_document()["components"]) & {"gt", "ge", "lt", "le"}
