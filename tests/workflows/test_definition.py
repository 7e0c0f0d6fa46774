"""The definition validator: default order, resolved dependencies, and every refusal with its reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.workflows.definition import (
    WorkflowDefinition,
    parse_definition,
    plan_workflow,
    resolve_dependencies,
    validate_definition,
)
from orchestrator.workflows.errors import DefinitionError
from orchestrator.workflows.storage import definition_fields, stored_definition

KNOWN = {"llm_request", "embedding_request"}


def step(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": "llm_request", **fields}


def definition(*steps: dict[str, Any], **fields: Any) -> WorkflowDefinition:
    return WorkflowDefinition.model_validate({"name": "wf", "steps": list(steps), **fields})


def refusal(data: dict[str, Any], known: set[str] = KNOWN) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(data, known)
    return caught.value


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([step("a"), step("b"), step("c")], {"a": (), "b": ("a",), "c": ("b",)}),
        ([step("a"), step("b", after=[]), step("c")], {"a": (), "b": (), "c": ("b",)}),
        (
            [step("a"), step("b", after=["a"]), step("c", after=["a"]), step("d", after=["b", "c"])],
            {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")},
        ),
        ([step("a"), step("b", after=["a", "a"])], {"a": (), "b": ("a",)}),
        ([step("b", after=["a"]), step("a", after=[])], {"b": ("a",), "a": ()}),
    ],
    ids=["sequence", "after-empty-starts-at-once", "fan-out-join", "named-twice-waits-once", "forward-reference"],
)
def test_dependencies_resolve_the_default_order(
    steps: list[dict[str, Any]], expected: dict[str, tuple[str, ...]]
) -> None:
    assert resolve_dependencies(definition(*steps)) == expected
    plan = plan_workflow(definition(*steps))
    assert dict(plan.dependencies) == expected
    position = {name: i for i, name in enumerate(plan.order)}
    assert all(position[d] < position[s] for s, deps in expected.items() for d in deps)


def test_plan_lists_successors_and_positions() -> None:
    plan = plan_workflow(
        definition(step("a"), step("b", after=["a"]), step("c", after=["a"]), step("d", after=["b", "c"]))
    )
    assert dict(plan.successors) == {"a": ("b", "c"), "b": ("d",), "c": ("d",), "d": ()}
    assert plan.position("c") == 3
    assert plan.step("b").name == "b"


@pytest.mark.parametrize(
    ("data", "problem_type", "loc", "words"),
    [
        ({"name": "wf", "steps": []}, "empty_steps", ["steps"], "at least one step"),
        ({"name": "wf", "steps": [step("a"), step("a")]}, "duplicate_step", ["steps", 1, "name"], "'a' is used twice"),
        (
            {"name": "wf", "steps": [step("a"), step("b", after=["x"])]},
            "unknown_step",
            ["steps", 1, "after", 0],
            "'x', which is not a step",
        ),
        ({"name": "wf", "steps": [step("a", after=["a"])]}, "cycle", ["steps", 0, "after", 0], "waits for itself"),
        (
            {"name": "wf", "steps": [step("a", after=["c"]), step("b", after=["a"]), step("c", after=["b"])]},
            "cycle",
            ["steps"],
            "a -> b -> c -> a form a cycle",
        ),
        (
            {"name": "wf", "steps": [step("a"), {"name": "b", "type": "nobody_serves_this"}]},
            "unknown_job_type",
            ["steps", 1, "type"],
            "'nobody_serves_this'",
        ),
        ({"name": "wf", "steps": [step("a.b")]}, "string_pattern_mismatch", ["steps", 0, "name"], "should match"),
        ({"name": "wf", "steps": [step("a:b")]}, "string_pattern_mismatch", ["steps", 0, "name"], "should match"),
        (
            {"name": "wf", "steps": [step("a", retry=0)]},
            "greater_than_equal",
            ["steps", 0, "retry", "max_attempts"],
            "",
        ),
        ({"name": "wf", "steps": [step("a", kind="cron")]}, "literal_error", ["steps", 0, "kind"], ""),
        ({"name": "wf", "steps": [step("a")], "on_failure": "panic"}, "literal_error", ["on_failure"], ""),
        ({"name": "wf", "steps": [step("a", colour="red")]}, "extra_forbidden", ["steps", 0, "colour"], ""),
        (
            {"name": "wf", "steps": [step("a", payload={"x": "$steps.b.result"}), step("b")]},
            "unknown_reference",
            ["steps", 0, "payload", "x"],
            "'b' does not run before step 'a'",
        ),
        (
            {"name": "wf", "steps": [step("a", after=[]), step("b", after=[], payload={"x": ["$steps.a.result.v"]})]},
            "unknown_reference",
            ["steps", 1, "payload", "x", 0],
            "'a' does not run before step 'b'",
        ),
        (
            {"name": "wf", "steps": [step("a", payload={"x": "$steps.ghost.result"})]},
            "unknown_reference",
            ["steps", 0, "payload", "x"],
            "'ghost' is not a step",
        ),
        (
            {"name": "wf", "steps": [step("a"), step("b", payload={"x": "$steps.a.output"})]},
            "malformed_reference",
            ["steps", 1, "payload", "x"],
            "$steps.<step>.result",
        ),
        (
            {"name": "wf", "steps": [step("a", payload={"x": "$input..x"})]},
            "malformed_reference",
            ["steps", 0, "payload", "x"],
            "empty path segment",
        ),
    ],
    ids=[
        "empty",
        "duplicate",
        "unknown-after",
        "self-cycle",
        "cycle",
        "unknown-job-type",
        "dot-in-name",
        "colon-in-name",
        "zero-attempts",
        "bad-kind",
        "bad-on-failure",
        "unknown-field",
        "reference-to-later-step",
        "reference-to-parallel-step",
        "reference-to-unknown-step",
        "malformed-steps-reference",
        "malformed-input-reference",
    ],
)
def test_bad_definitions_are_refused_with_the_reason(
    data: dict[str, Any], problem_type: str, loc: list[Any], words: str
) -> None:
    details = refusal(data).details()
    assert [d["type"] for d in details] == [problem_type]
    assert details[0]["loc"] == loc
    assert words in details[0]["msg"]


def test_every_shape_problem_is_reported_at_once() -> None:
    error = refusal({"name": "wf", "steps": [step("a"), step("a"), step("b", after=["x"])]})
    assert [d["type"] for d in error.details()] == ["duplicate_step", "unknown_step"]
    assert "'a' is used twice" in str(error)


def test_a_step_that_waits_on_a_cycle_names_only_the_cycle() -> None:
    data = {"name": "wf", "steps": [step("a", after=[]), step("b", after=["c"]), step("c", after=["b"]), step("d")]}
    (detail,) = refusal(data).details()
    assert detail["msg"] == "steps b -> c -> b form a cycle"


def test_external_steps_may_have_a_type_no_service_announced() -> None:
    plan = parse_definition(
        {"name": "wf", "steps": [{"name": "sign", "type": "human_signature", "kind": "external"}]}, KNOWN
    )
    assert plan.step("sign").kind == "external"


def test_retry_takes_a_number_or_an_object_and_defaults_to_one_attempt() -> None:
    plan = parse_definition(
        {"name": "wf", "steps": [step("a", retry=3), step("b", retry={"max_attempts": 2}), step("c")]}, KNOWN
    )
    assert [plan.step(n).retry.max_attempts for n in "abc"] == [3, 2, 1]


def test_valid_references_and_plain_dollar_strings_pass() -> None:
    plan = validate_definition(
        definition(
            step("a", payload={"doc": "$input.document.url", "all": "$input", "price": "$5", "x": "$inputs"}),
            step("b", payload={"chunks": "$steps.a.result.chunks.0", "whole": "$steps.a.result"}),
            step("c", payload={"deep": {"list": ["$steps.a.result.x"]}}),
        ),
        KNOWN,
    )
    assert plan.order == ("a", "b", "c")


@pytest.mark.parametrize(
    ("output", "problem_type", "words"),
    [
        ("$steps.nope.result", "unknown_reference", "'nope' is not a step"),
        ("$steps.a.chunks", "malformed_reference", "not of the form"),
        ("$input..x", "malformed_reference", "empty path segment"),
        ("the index result", "malformed_reference", "not a reference"),
    ],
    ids=["unknown-step", "malformed-steps", "malformed-input", "plain-text"],
)
def test_an_output_must_be_a_reference_to_a_step_or_the_input(output: str, problem_type: str, words: str) -> None:
    (detail,) = refusal({"name": "wf", "steps": [step("a")], "output": output}).details()
    assert (detail["type"], detail["loc"]) == (problem_type, ["output"])
    assert words in detail["msg"]


def test_an_output_may_name_any_step_or_the_input() -> None:
    for output in ("$steps.b.result", "$steps.a.result.chunks.0", "$input", "$input.title"):
        plan = parse_definition({"name": "wf", "steps": [step("a"), step("b")], "output": output}, KNOWN)
        assert plan.definition.output == output


def test_a_definition_without_an_output_serialises_as_before_the_field_existed() -> None:
    """A replica of the previous release refuses unknown fields: it must still read these."""
    plain = definition(step("a"))
    assert "output" not in plain.model_dump(mode="json") and '"output"' not in plain.model_dump_json()
    with_output = definition(step("a"), output="$steps.a.result")
    assert with_output.model_dump(mode="json")["output"] == "$steps.a.result"
    assert WorkflowDefinition.model_validate_json(with_output.model_dump_json()) == with_output


def test_a_stored_output_is_kept_beside_the_definition() -> None:
    with_output = definition(step("a"), output="$steps.a.result")
    fields = definition_fields(with_output)
    assert fields["output"] == "$steps.a.result" and "output" not in fields["definition"]
    raw = json.dumps({**fields, "created_at": "c", "updated_at": "u"})
    assert stored_definition("wf", raw).definition == with_output
    assert definition_fields(definition(step("a"))).keys() == {"definition"}
