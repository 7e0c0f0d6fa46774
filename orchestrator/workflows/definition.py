"""A workflow definition as DESIGN "Workflows" gives it, and the checks that refuse one that cannot run.

Choices where DESIGN is silent:
- A step name is 1-64 letters, digits, `_` or `-`: it goes into URLs (`/steps/{step}`), references
  (`$steps.<step>...`, so no dots) and step task ids (`<execution>:<step>:<attempt>`, so no colons).
- `retry` is {`max_attempts`} (default 1: no retry), or that number alone (`"retry": 3`). Only failures
  the worker calls retryable use it; the retry is published at once, as a new attempt of the step.
- A worker step's `type` must be a job type some service announced. An external step's `type` only
  has to be a valid job-type name: no worker ever runs it, so it is a label for the reporting service.
- At most MAX_STEPS steps: an execution's state is one value, rewritten at every step outcome.
- `output`, optional, is one reference (`"$steps.<step>.result[.<path>]"` or `"$input[.<path>]"`), resolved
  when the execution completes: it is the `result` of `workflow_completed` (what the registry keeps as the
  job's result) instead of the final context. It must name a step of the workflow.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
)

from orchestrator.workflows.errors import DefinitionError, DefinitionProblem
from orchestrator.workflows.references import MalformedReference, iter_strings, parse_reference
from protocol.names import JOB_TYPE_PATTERN

STEP_NAME_PATTERN: Final[str] = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
MAX_STEPS: Final[int] = 256
MAX_ATTEMPTS: Final[int] = 100

StepKind = Literal["worker", "external"]
OnFailure = Literal["stop", "continue"]


class RetryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=1, ge=1, le=MAX_ATTEMPTS)


class StepDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=STEP_NAME_PATTERN)
    type: str = Field(pattern=JOB_TYPE_PATTERN)
    payload: dict[str, Any] = Field(default_factory=dict)
    # None: after the step listed before; []: at once.
    after: list[str] | None = None
    kind: StepKind = "worker"
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_ms: int | None = Field(default=None, gt=0)
    config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("retry", mode="before")
    @classmethod
    def _retry_shorthand(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"max_attempts": value}
        return value


class WorkflowDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    # At least one step: said in the schema; refused by validate_definition with its own reason.
    steps: list[StepDefinition] = Field(max_length=MAX_STEPS, json_schema_extra={"minItems": 1})
    on_failure: OnFailure = "stop"
    output: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="`$steps.<step>.result[.<path>]` or `$input[.<path>]`: the execution's result "
        "(workflow_completed's `result`, the job's result); absent: the final context",
    )

    @model_serializer(mode="wrap")
    def _without_unset_output(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A definition without `output` is stored (and its execution states too) exactly as before the
        # field existed, so a replica of the previous release still reads it during a rolling upgrade.
        data: dict[str, Any] = handler(self)
        if data.get("output") is None:
            data.pop("output", None)
        return data


@dataclass(frozen=True)
class WorkflowPlan:
    """A definition that can run, with its order resolved.

    `dependencies` maps each step to the steps it waits for, `successors` the other way round, and
    `order` lists every step after all of its dependencies (ties keep the listing order)."""

    definition: WorkflowDefinition
    dependencies: Mapping[str, tuple[str, ...]]
    successors: Mapping[str, tuple[str, ...]]
    order: tuple[str, ...]

    def step(self, name: str) -> StepDefinition:
        return next(step for step in self.definition.steps if step.name == name)

    def position(self, name: str) -> int:
        """The step's place in the definition's listing, from 1."""
        return 1 + next(i for i, step in enumerate(self.definition.steps) if step.name == name)


def resolve_dependencies(definition: WorkflowDefinition) -> dict[str, tuple[str, ...]]:
    """Each step's dependencies: its `after`, or else the step listed before it (none for the first)."""
    dependencies: dict[str, tuple[str, ...]] = {}
    previous: str | None = None
    for step in definition.steps:
        if step.after is not None:
            dependencies[step.name] = tuple(dict.fromkeys(step.after))  # a name listed twice waits once
        else:
            dependencies[step.name] = () if previous is None else (previous,)
        previous = step.name
    return dependencies


def plan_workflow(definition: WorkflowDefinition) -> WorkflowPlan:
    """The plan of a definition whose shape is sound; DefinitionError (every problem found) otherwise.
    Job types are not checked here: see `validate_definition`."""
    problems = _shape_problems(definition)
    if problems:
        raise DefinitionError(problems)
    dependencies = resolve_dependencies(definition)
    order, cyclic = _topological_order(dependencies)
    if cyclic:
        cycle = _find_cycle(cyclic, dependencies)
        path = " -> ".join([*cycle, cycle[0]])
        raise DefinitionError([DefinitionProblem(("steps",), f"steps {path} form a cycle", "cycle")])
    successors: dict[str, list[str]] = {name: [] for name in dependencies}
    for name in order:
        for dependency in dependencies[name]:
            successors[dependency].append(name)
    plan = WorkflowPlan(definition, dependencies, {k: tuple(v) for k, v in successors.items()}, order)
    problems = [*_reference_problems(plan), *_output_problems(definition)]
    if problems:
        raise DefinitionError(problems)
    return plan


def validate_definition(definition: WorkflowDefinition, known_job_types: Collection[str]) -> WorkflowPlan:
    """`plan_workflow`, and every worker step's type must be one of `known_job_types`."""
    plan = plan_workflow(definition)
    known = set(known_job_types)
    problems = [
        DefinitionProblem(
            ("steps", index, "type"),
            f"no service serves job type {step.type!r} (step {step.name!r})",
            "unknown_job_type",
        )
        for index, step in enumerate(definition.steps)
        if step.kind == "worker" and step.type not in known
    ]
    if problems:
        raise DefinitionError(problems)
    return plan


def parse_definition(data: Any, known_job_types: Collection[str]) -> WorkflowPlan:
    """A definition from its JSON body, validated; pydantic's errors come as DefinitionError too."""
    try:
        definition = WorkflowDefinition.model_validate(data)
    except ValidationError as exc:
        problems = [DefinitionProblem(tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors()]
        raise DefinitionError(problems) from exc
    return validate_definition(definition, known_job_types)


def _shape_problems(definition: WorkflowDefinition) -> list[DefinitionProblem]:
    if not definition.steps:
        return [DefinitionProblem(("steps",), "a workflow needs at least one step", "empty_steps")]
    problems: list[DefinitionProblem] = []
    seen: set[str] = set()
    for index, step in enumerate(definition.steps):
        if step.name in seen:
            problems.append(
                DefinitionProblem(("steps", index, "name"), f"step name {step.name!r} is used twice", "duplicate_step")
            )
        seen.add(step.name)
    for index, step in enumerate(definition.steps):
        for position, dependency in enumerate(step.after or ()):
            if dependency not in seen:
                msg = f"step {step.name!r} waits for {dependency!r}, which is not a step of this workflow"
                problems.append(DefinitionProblem(("steps", index, "after", position), msg, "unknown_step"))
            elif dependency == step.name:
                msg = f"step {step.name!r} waits for itself"
                problems.append(DefinitionProblem(("steps", index, "after", position), msg, "cycle"))
    return problems


def _topological_order(dependencies: Mapping[str, tuple[str, ...]]) -> tuple[tuple[str, ...], list[str]]:
    """The steps in an order that runs each after its dependencies, and those left over (in cycles)."""
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(dependencies)
    progressed = True
    while remaining and progressed:
        # Quadratic at worst, on at most MAX_STEPS steps; it keeps listing order among equals.
        progressed = False
        for name in list(remaining):
            if all(dependency in placed for dependency in dependencies[name]):
                order.append(name)
                placed.add(name)
                remaining.remove(name)
                progressed = True
    return tuple(order), remaining


def _find_cycle(cyclic: list[str], dependencies: Mapping[str, tuple[str, ...]]) -> list[str]:
    """One cycle among the steps that could not be ordered, in the order they wait for each other."""
    candidates = set(cyclic)
    walk: list[str] = []
    current = cyclic[0]
    while current not in walk:
        walk.append(current)
        # Every step left over waits for at least one other step left over.
        current = next(d for d in dependencies[current] if d in candidates)
    cycle = walk[walk.index(current) :]
    cycle.reverse()  # a step comes before the steps that wait for it
    listing = list(dependencies)
    first = min(range(len(cycle)), key=lambda i: listing.index(cycle[i]))
    return cycle[first:] + cycle[:first]  # from the step listed first, so the message is stable


def _ancestors(plan: WorkflowPlan) -> dict[str, set[str]]:
    ancestors: dict[str, set[str]] = {}
    for name in plan.order:
        ancestors[name] = set()
        for dependency in plan.dependencies[name]:
            ancestors[name] |= {dependency, *ancestors[dependency]}
    return ancestors


def _reference_problems(plan: WorkflowPlan) -> list[DefinitionProblem]:
    ancestors = _ancestors(plan)
    problems: list[DefinitionProblem] = []
    for index, step in enumerate(plan.definition.steps):
        for loc, text in iter_strings(step.payload):
            where = ("steps", index, "payload", *loc)
            try:
                reference = parse_reference(text)
            except MalformedReference as exc:
                problems.append(DefinitionProblem(where, str(exc), "malformed_reference"))
                continue
            if reference is None or reference.step is None or reference.step in ancestors[step.name]:
                continue
            if reference.step in plan.dependencies:
                msg = f"{text!r}: step {reference.step!r} does not run before step {step.name!r}"
            else:
                msg = f"{text!r}: {reference.step!r} is not a step of this workflow"
            problems.append(DefinitionProblem(where, msg, "unknown_reference"))
    return problems


def _output_problems(definition: WorkflowDefinition) -> list[DefinitionProblem]:
    text = definition.output
    if text is None:
        return []
    try:
        reference = parse_reference(text)
    except MalformedReference as exc:
        return [DefinitionProblem(("output",), str(exc), "malformed_reference")]
    if reference is None:
        msg = f"{text!r} is not a reference: give $steps.<step>.result[.<path>] or $input[.<path>]"
        return [DefinitionProblem(("output",), msg, "malformed_reference")]
    if reference.step is not None and reference.step not in {step.name for step in definition.steps}:
        msg = f"{text!r}: {reference.step!r} is not a step of this workflow"
        return [DefinitionProblem(("output",), msg, "unknown_reference")]
    return []
