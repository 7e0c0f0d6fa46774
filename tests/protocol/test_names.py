"""Name rules: a whole name matches or it is refused (a trailing newline included), in Python and in pydantic."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from protocol.control import CancelCommand
from protocol.envelope import TaskEnvelope
from protocol.names import check_job_type, check_service_name, check_tenant_id, is_tenant_id


@pytest.mark.parametrize("bad", ["query\n", "query\r\n", "\nquery", "que\nry", "", "Query", "a.b", "a" * 64])
def test_service_names_match_whole(bad: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        check_service_name(bad)


@pytest.mark.parametrize("bad", ["acme\n", "acme\n\n", "ac:me", "-acme", "a" * 65, ""])
def test_tenant_ids_match_whole(bad: str) -> None:
    assert not is_tenant_id(bad)
    with pytest.raises(ValueError, match="must match"):
        check_tenant_id(bad)


@pytest.mark.parametrize("bad", ["llm_request\n", "llm request", ".llm", ""])
def test_job_types_match_whole(bad: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        check_job_type(bad)


def test_good_names_pass() -> None:
    assert check_service_name("query") == "query"
    assert check_tenant_id("Acme_1-x") == "Acme_1-x"
    assert is_tenant_id("a" * 64)
    assert check_job_type("llm.request_v2") == "llm.request_v2"


@pytest.mark.parametrize(
    ("field", "value"), [("tenant_id", "acme\n"), ("service", "query\n"), ("type", "llm_request\n")]
)
def test_pydantic_patterns_refuse_a_trailing_newline(field: str, value: str) -> None:
    """pydantic's Rust regex reads `$` as the end of the text; this pins it."""
    fields = {"global_task_id": "job", "tenant_id": "acme", "type": "llm_request", "service": "query", field: value}
    with pytest.raises(ValidationError):
        TaskEnvelope.model_validate(fields)
    with pytest.raises(ValidationError):
        CancelCommand.model_validate({"tenant_id": "acme\n", "global_task_id": "job", "reason": "r"})
