"""The OpenAPI document describes every route the application serves, and its references resolve."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.app import create_app
from orchestrator.openapi import build_openapi
from protocol.settings import Settings

PUBLIC = {("get", "/health"), ("get", "/metrics"), ("get", "/openapi.json"), ("get", "/")}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_every_served_route_is_documented() -> None:
    # Building the app starts nothing: no broker or Redis is needed to read its routes.
    app = create_app(Settings(api_keys={"k": "t"}))
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method not in {"HEAD", "OPTIONS"}
    }
    paths = build_openapi()["paths"]
    documented = {(method, path) for path, ops in paths.items() for method in ops}
    assert served == documented


def test_references_resolve_and_the_document_is_json() -> None:
    doc = json.loads(json.dumps(build_openapi()))
    schemas = doc["components"]["schemas"]
    refs = _refs(doc)
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/")
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_security_and_parameters() -> None:
    paths = build_openapi()["paths"]
    for path, ops in paths.items():
        for method, op in ops.items():
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
    assert listed == {"status", "type", "session_id", "offset", "limit"}
