"""The fuzz harness's own adjustments: they must never turn a negative case into a valid one."""

from __future__ import annotations

from typing import Any

from tests.fuzz.cases import _fit_workflow


def definition() -> dict[str, Any]:
    return {
        "name": "wf",
        "steps": [{"name": "a", "type": "x.y"}, {"name": "b", "type": "x.y", "after": True}],
        "output": True,  # the shape a negative case gets: a boolean where the schema wants an object or null
    }


def test_a_positive_definition_loses_what_json_schema_cannot_check() -> None:
    body = definition()
    _fit_workflow(body, "run.type", keep_invalid_parts=False)
    assert "output" not in body
    assert [step.get("after") for step in body["steps"]] == [None, None]
    assert [(step["name"], step["type"]) for step in body["steps"]] == [("s0", "run.type"), ("s1", "run.type")]


def test_a_negative_definition_keeps_its_invalid_values() -> None:
    # CI on c5e28ff: popping a negative case's `output` (null mutated to a boolean) made it valid, the
    # server rightly answered 201, and schemathesis reported a schema-violating request accepted.
    body = definition()
    _fit_workflow(body, "run.type", keep_invalid_parts=True)
    assert body["output"] is True
    assert body["steps"][1]["after"] is True
    assert [step["type"] for step in body["steps"]] == ["run.type", "run.type"]
