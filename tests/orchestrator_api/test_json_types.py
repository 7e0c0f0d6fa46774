"""Bodies are read with JSON's types, as the OpenAPI document states them (found by the schemathesis run):
a number is not a string or a boolean, and an integer written as 6.0 is still an integer."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from orchestrator.http.schemas import AgentExecuteRequest, JobCreateRequest, ReplayRequest


@pytest.mark.parametrize("model", [JobCreateRequest, AgentExecuteRequest])
@pytest.mark.parametrize(
    ("field", "value"),
    [("wait", False), ("wait", True), ("wait", "5"), ("timeout_ms", "1000"), ("timeout_ms", True)],
)
def test_numbers_are_json_numbers(model: type[BaseModel], field: str, value: object) -> None:
    base = {"type": "t"} if model is JobCreateRequest else {}
    with pytest.raises(ValidationError) as info:
        model.model_validate({**base, field: value})
    assert info.value.errors()[0]["loc"][0] == field


@pytest.mark.parametrize("model", [JobCreateRequest, AgentExecuteRequest])
def test_integral_floats_are_integers(model: type[BaseModel]) -> None:
    base = {"type": "t"} if model is JobCreateRequest else {}
    body = model.model_validate({**base, "priority": 6.0, "timeout_ms": 1640.0, "wait": 0})
    assert (body.priority, body.timeout_ms) == (6, 1640)  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        model.model_validate({**base, "priority": 6.5})


@pytest.mark.parametrize("value", ["true", 1, "yes"])
def test_replay_all_is_a_json_boolean(value: object) -> None:
    with pytest.raises(ValidationError):
        ReplayRequest.model_validate({"all": value})
