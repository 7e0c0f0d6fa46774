"""Adjusting generated requests before they are sent, for the fuzz runs (the test and the CLI hooks).

Only values the schema allows are changed, into other values it allows, so a negative case stays
negative and a positive one positive:
- a well-formed job type becomes the run's own (any name the pattern allows is schema-valid, but
  only announced types are accepted: a fuzzer cannot guess them, and the run must not fill the
  machine's built-in queues);
- `wait` is shortened: no worker runs the jobs, so every wait would last its full time (up to 60 s);
- payload integers are brought into 64 bits: any value is schema-valid in a payload, but the task
  message cannot carry larger ones (422 unencodable_payload, documented in the payload's description
  and tested in tests/orchestrator_api);
- a workflow definition's steps get distinct names, the run's job type, the default order (no `after`),
  no `$` references and no `output`: what JSON Schema cannot say (a DAG, names that exist, references
  to earlier steps) is refused with 422 invalid_workflow, tested in tests/workflows. In a negative case
  `after` and `output` stay: removing them could remove the very value the case was made invalid with,
  and the server would then rightly accept it (a false "schema-violating request accepted").
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Final

from schemathesis import Case

from orchestrator.workflows.definition import STEP_NAME_PATTERN
from protocol.names import JOB_TYPE_PATTERN

CREATE_PATHS: Final[frozenset[str]] = frozenset({"/jobs", "/jobs/agent/{agent_id}/execute"})
WORKFLOW_PATH: Final[str] = "/workflows/{workflow_id}"
MIN_INT: Final[int] = -(2**63)
MAX_INT: Final[int] = 2**64 - 1


def adjust(case: Case[Any], job_type: str, max_wait: float) -> None:
    """Pin job types to `job_type` and cap `wait` at `max_wait` in `case`'s body, in place."""
    body = case.body
    path = case.operation.path
    if case.operation.method.lower() == "get" and path == "/jobs":
        _order_window(case)
        return
    parameters = case.path_parameters
    if isinstance(parameters, dict) and parameters.get("job_id") == "batch":
        # /jobs/batch is POST /jobs/batch's path: any other method on it answers 405, whatever the template says.
        parameters["job_id"] = "batch-job"
    if case.operation.method.lower() == "put" and path == WORKFLOW_PATH and isinstance(body, dict):
        _fit_workflow(body, job_type, keep_invalid_parts=_is_negative(case))
        return
    if case.operation.method.lower() != "post" or not isinstance(body, dict):
        return
    if path == "/jobs":
        _pin_type(body, job_type)
    elif path == "/jobs/batch" and isinstance(jobs := body.get("jobs"), list):
        for item in jobs:
            if isinstance(item, dict):
                _pin_type(item, job_type)
                _fit_payload(item)
    if path in CREATE_PATHS:
        _cap_wait(body, max_wait)
        _fit_payload(body)


def _order_window(case: Case[Any]) -> None:
    """GET /jobs refuses created_after later than created_before (422, tested in test_listing_and_retry): a
    rule across two parameters that the schema cannot state, so a valid-looking pair is put in order."""
    query = case.query
    if not isinstance(query, dict):
        return
    after, before = query.get("created_after"), query.get("created_before")
    try:
        if datetime.fromisoformat(str(after)) > datetime.fromisoformat(str(before)):
            query["created_after"], query["created_before"] = before, after
    except (TypeError, ValueError):
        return  # absent or not a time: the case stays as it is


def _is_negative(case: Case[Any]) -> bool:
    return case.meta is not None and case.meta.generation.mode.is_negative


def _fit_workflow(body: dict[str, Any], job_type: str, keep_invalid_parts: bool) -> None:
    if not keep_invalid_parts:
        body.pop("output", None)
    steps = body.get("steps")
    if not isinstance(steps, list):
        return
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        if isinstance(step.get("name"), str) and re.fullmatch(STEP_NAME_PATTERN, step["name"]):
            step["name"] = f"s{index}"  # distinct; a name the pattern refuses stays, and the case negative
        if isinstance(step.get("type"), str) and re.fullmatch(JOB_TYPE_PATTERN, step["type"]):
            step["type"] = job_type
        if not keep_invalid_parts:
            step.pop("after", None)
        if isinstance(step.get("payload"), dict):
            step["payload"] = _without_references(step["payload"])


def _without_references(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        return value[1:]
    if isinstance(value, dict):
        return {key: _without_references(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_references(item) for item in value]
    return value


def _fit_payload(body: dict[str, Any]) -> None:
    if isinstance(body.get("payload"), dict):
        body["payload"] = _fit_integers(body["payload"])


def _fit_integers(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(value, MIN_INT), MAX_INT)
    if isinstance(value, dict):
        return {key: _fit_integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fit_integers(item) for item in value]
    return value


def _pin_type(body: dict[str, Any], job_type: str) -> None:
    value = body.get("type")
    if isinstance(value, str) and re.fullmatch(JOB_TYPE_PATTERN, value):
        body["type"] = job_type


def _cap_wait(body: dict[str, Any], max_wait: float) -> None:
    value = body.get("wait")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > max_wait:
        body["wait"] = max_wait
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            return
        if math.isfinite(seconds) and seconds > max_wait:
            body["wait"] = str(max_wait)
