"""The advance step, rule by rule: each test drives an execution through the pure handlers and checks
the state and the actions it asks for."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.workflows.actions import Action, CancelStep, Emit, Finish, RunStep
from orchestrator.workflows.advance import (
    can_cancel,
    can_continue,
    can_retry,
    cancel,
    continue_manual,
    expire,
    new_execution,
    on_step_finished,
    on_step_progress,
    on_step_started,
    pending_runs,
    retry_failed,
    start,
)
from orchestrator.workflows.definition import WorkflowDefinition, resolve_dependencies, validate_definition
from orchestrator.workflows.outcomes import StepFailed, StepSucceeded
from orchestrator.workflows.state import ExecutionMode, ExecutionState, ExecutionStatus, StepStatus
from protocol.events import EventType, Progress

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
EXECUTION = "exec-1"


def step(name: str, after: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": name, "type": "llm_request", **fields}
    if after is not None:
        data["after"] = after
    return data


class Driver:
    """One execution, its clock, and the actions of the last call."""

    def __init__(
        self,
        *steps: dict[str, Any],
        on_failure: str = "stop",
        mode: ExecutionMode = ExecutionMode.AUTOMATIC,
        input: dict[str, Any] | None = None,
        output: str | None = None,
    ) -> None:
        body: dict[str, Any] = {"name": "wf", "steps": list(steps), "on_failure": on_failure}
        if output is not None:
            body["output"] = output
        definition = WorkflowDefinition.model_validate(body)
        plan = validate_definition(definition, {"llm_request"})
        self.clock = 0
        self.state = new_execution(
            plan, execution_id=EXECUTION, workflow_id="wf-1", tenant_id="t1", input=input or {}, now=T0, mode=mode
        )
        self.actions: list[Action] = []
        self.apply(start)

    def now(self) -> datetime:
        self.clock += 1
        return T0 + timedelta(seconds=self.clock)

    def apply(self, handler: Callable[..., tuple[ExecutionState, list[Action]]], *args: Any) -> list[Action]:
        self.state, self.actions = handler(self.state, *args, self.now())
        return self.actions

    def succeed(self, name: str, result: Any = None, **fields: Any) -> list[Action]:
        return self.apply(on_step_finished, name, self.attempt(name), StepSucceeded(result, **fields))

    def fail(self, name: str, error: str = "boom", retryable: bool = True) -> list[Action]:
        return self.apply(on_step_finished, name, self.attempt(name), StepFailed(error, retryable))

    def status(self) -> ExecutionStatus:
        return self.state.status

    def attempt(self, name: str) -> int:
        return self.state.steps[name].attempt

    def statuses(self) -> dict[str, str]:
        return {name: s.status.value for name, s in self.state.steps.items()}


def runs(actions: list[Action]) -> list[str]:
    return [a.step for a in actions if isinstance(a, RunStep)]


def run_of(actions: list[Action], name: str) -> RunStep:
    return next(a for a in actions if isinstance(a, RunStep) and a.step == name)


def emitted(actions: list[Action]) -> list[tuple[str, str | None]]:
    return [(a.event.value, a.data.get("step")) for a in actions if isinstance(a, Emit)]


def event(actions: list[Action], kind: EventType) -> dict[str, Any]:
    return next(a.data for a in actions if isinstance(a, Emit) and a.event is kind)


def finishes(actions: list[Action]) -> list[ExecutionStatus]:
    return [a.status for a in actions if isinstance(a, Finish)]


def test_a_sequence_runs_one_step_after_the_other_and_completes() -> None:
    run = Driver(step("a"), step("b"), step("c"))
    assert emitted(run.actions) == [("workflow_started", None), ("step_started", "a")]
    first = run_of(run.actions, "a")
    assert (first.attempt, first.task_id, first.kind) == (1, "exec-1:a:1", "worker")
    assert run.status() is ExecutionStatus.RUNNING
    assert runs(run.succeed("a", {"n": 1})) == ["b"]
    assert runs(run.succeed("b")) == ["c"]
    actions = run.succeed("c")
    assert emitted(actions) == [("step_finished", "c"), ("workflow_completed", None)]
    assert finishes(actions) == [ExecutionStatus.COMPLETED]
    assert run.status() is ExecutionStatus.COMPLETED and run.state.finished_at is not None
    assert run.state.version == 4
    assert run.state.steps["a"].result == {"n": 1}


def test_fan_out_runs_in_parallel_and_the_join_waits_for_all() -> None:
    run = Driver(step("a"), step("b", ["a"]), step("c", ["a"]), step("d", ["b", "c"]), step("e", []))
    assert runs(run.actions) == ["a", "e"]
    assert runs(run.succeed("a")) == ["b", "c"]
    assert runs(run.succeed("c")) == []
    assert runs(run.succeed("b")) == ["d"]
    run.succeed("d")
    assert run.status() is ExecutionStatus.RUNNING  # e is still running
    assert finishes(run.succeed("e")) == [ExecutionStatus.COMPLETED]


@pytest.mark.parametrize("how", ["outcome", "from_result"])
def test_next_picks_a_branch_and_steps_only_untaken_branches_lead_to_are_skipped(how: str) -> None:
    run = Driver(
        step("a"),
        step("b", ["a"]),
        step("c", ["a"]),
        step("c2", ["c"]),
        step("join", ["b", "c2"], payload={"from_b": "$steps.b.result.v", "from_c": "$steps.c2.result.v"}),
    )
    if how == "outcome":
        actions = run.succeed("a", {"route": "b"}, next=("b",))
    else:
        actions = run.apply(on_step_finished, "a", 1, StepSucceeded.from_result({"next": "b", "context": {"k": 1}}))
    assert runs(actions) == ["b"]
    assert ("step_finished", "c") in emitted(actions) and ("step_finished", "c2") in emitted(actions)
    assert run.state.steps["c"].skip_reason == "branch"
    assert runs(run.succeed("b", {"v": 7})) == ["join"]
    assert run_of(run.actions, "join").payload == {"from_b": 7, "from_c": None}  # a skipped arm reads as null
    run.succeed("join")
    assert run.statuses() == {"a": "completed", "b": "completed", "c": "skipped", "c2": "skipped", "join": "completed"}
    assert run.status() is ExecutionStatus.COMPLETED


def test_an_empty_next_takes_no_branch() -> None:
    run = Driver(step("a"), step("b"), step("c"))
    actions = run.succeed("a", next=())
    assert runs(actions) == []
    assert run.statuses() == {"a": "completed", "b": "skipped", "c": "skipped"}
    assert finishes(actions) == [ExecutionStatus.COMPLETED]


def test_a_next_that_is_not_a_successor_fails_the_step_without_retry() -> None:
    run = Driver(step("a", retry=3), step("b"), step("c"))
    actions = run.succeed("a", next=("c",))
    assert run.state.steps["a"].status is StepStatus.FAILED
    assert run.state.steps["a"].error_type == "bad_next"
    assert "may only name its successors ['b']" in (run.state.steps["a"].error or "")
    assert finishes(actions) == [ExecutionStatus.FAILED]


def test_a_failed_attempt_with_attempts_left_runs_again_with_a_new_task_id() -> None:
    run = Driver(step("a", retry=3), step("b"))
    actions = run.fail("a", "flaky")
    again = run_of(actions, "a")
    assert (again.attempt, again.task_id) == (2, "exec-1:a:2")
    assert event(actions, EventType.STEP_STARTED) == {
        "step": "a",
        "attempt": 2,
        "task_id": "exec-1:a:2",
        "previous_error": "flaky",
    }
    assert ("step_finished", "a") not in emitted(actions)
    assert runs(run.succeed("a")) == ["b"]
    assert run.state.steps["a"].attempt == 2


def test_a_step_that_exhausts_its_attempts_fails_the_execution() -> None:
    run = Driver(step("a", retry=2), step("b"))
    run.fail("a")
    actions = run.fail("a", "still broken")
    assert runs(actions) == []
    assert event(actions, EventType.STEP_FINISHED) == {
        "step": "a",
        "status": "failed",
        "attempt": 2,
        "error": "still broken",
        "error_type": None,
    }
    assert event(actions, EventType.WORKFLOW_FAILED) == {
        "error": "step a failed",
        "failed_steps": ["a"],
        "status": "failed",
    }
    assert finishes(actions) == [ExecutionStatus.FAILED]
    assert run.statuses() == {"a": "failed", "b": "skipped"}


def test_a_failure_that_is_not_retryable_ends_the_step_at_once() -> None:
    run = Driver(step("a", retry=5))
    actions = run.fail("a", retryable=False)
    assert runs(actions) == [] and run.status() is ExecutionStatus.FAILED


def test_on_failure_stop_starts_nothing_new_but_lets_running_steps_finish() -> None:
    run = Driver(step("a", []), step("b", []), step("c", ["b"]), on_failure="stop")
    actions = run.fail("a")
    assert not [x for x in actions if isinstance(x, RunStep | CancelStep | Finish)]
    assert run.status() is ExecutionStatus.RUNNING  # b is still running
    actions = run.succeed("b", {"kept": True})
    assert runs(actions) == []
    assert run.statuses() == {"a": "failed", "b": "completed", "c": "skipped"}
    assert run.state.steps["c"].skip_reason == "stopped"
    assert finishes(actions) == [ExecutionStatus.FAILED]


def test_on_failure_continue_skips_the_dependents_and_runs_the_rest() -> None:
    run = Driver(
        step("a", []), step("a2", ["a"]), step("a3", ["a2"]), step("b", []), step("b2", ["b"]), on_failure="continue"
    )
    actions = run.fail("a")
    assert run.state.steps["a2"].skip_reason == "dependency_failed"
    assert run.state.steps["a3"].skip_reason == "dependency_failed"
    assert runs(actions) == [] and run.status() is ExecutionStatus.RUNNING
    assert runs(run.succeed("b")) == ["b2"]
    actions = run.succeed("b2")
    assert finishes(actions) == [ExecutionStatus.FAILED]
    assert event(actions, EventType.WORKFLOW_FAILED)["failed_steps"] == ["a"]


def test_manual_mode_pauses_before_each_step_until_continued() -> None:
    run = Driver(step("a"), step("b", ["a"]), step("c", ["a"]), mode=ExecutionMode.MANUAL)
    assert runs(run.actions) == [] and run.status() is ExecutionStatus.PAUSED
    assert run.statuses()["a"] == "waiting" and can_continue(run.state)
    assert runs(run.apply(continue_manual)) == ["a"]
    assert run.status() is ExecutionStatus.RUNNING and not can_continue(run.state)
    assert runs(run.succeed("a")) == []
    assert run.statuses() == {"a": "completed", "b": "waiting", "c": "waiting"}
    assert run.status() is ExecutionStatus.PAUSED
    assert runs(run.apply(continue_manual)) == ["b", "c"]
    run.succeed("b")
    assert finishes(run.succeed("c")) == [ExecutionStatus.COMPLETED]


def test_continue_stops_sending_once_a_waiting_step_fails_on_its_payload() -> None:
    run = Driver(step("a", [], payload={"x": "$input.nope"}), step("b", []), mode=ExecutionMode.MANUAL)
    actions = run.apply(continue_manual)
    assert runs(actions) == []
    assert run.statuses() == {"a": "failed", "b": "skipped"}
    assert finishes(actions) == [ExecutionStatus.FAILED]


def test_cancel_of_a_queued_execution_skips_every_step() -> None:
    definition = WorkflowDefinition.model_validate({"name": "wf", "steps": [step("a"), step("b")]})
    state = new_execution(
        validate_definition(definition, {"llm_request"}),
        execution_id=EXECUTION,
        workflow_id="wf-1",
        tenant_id="t1",
        input={},
        now=T0,
    )
    cancelled, actions = cancel(state, T0)
    assert finishes(actions) == [ExecutionStatus.CANCELLED]
    assert {s.status for s in cancelled.steps.values()} == {StepStatus.SKIPPED}


def test_manual_mode_does_not_hold_the_retry_of_a_failed_attempt() -> None:
    run = Driver(step("a", retry=2), mode=ExecutionMode.MANUAL)
    run.apply(continue_manual)
    assert runs(run.fail("a")) == ["a"]


def test_cancel_cancels_running_steps_and_skips_the_rest() -> None:
    run = Driver(step("a", []), step("b", []), step("c", ["a", "b"]))
    run.succeed("b")
    actions = run.apply(cancel)
    assert [x for x in actions if isinstance(x, CancelStep)] == [CancelStep("a", "exec-1:a:1")]
    assert run.statuses() == {"a": "cancelled", "b": "completed", "c": "skipped"}
    assert event(actions, EventType.WORKFLOW_FAILED) == {
        "error": "execution cancelled",
        "failed_steps": [],
        "status": "cancelled",
    }
    assert finishes(actions) == [ExecutionStatus.CANCELLED]
    assert not can_cancel(run.state) and not can_retry(run.state)
    before = run.state
    assert run.succeed("a") == [] and run.state is before  # the cancelled task's late outcome
    assert run.apply(cancel) == [] and run.state is before


def test_expire_ends_the_execution_timed_out() -> None:
    run = Driver(step("a"), step("b"))
    actions = run.apply(expire)
    assert finishes(actions) == [ExecutionStatus.TIMED_OUT]
    assert run.statuses() == {"a": "cancelled", "b": "skipped"}


def test_retry_failed_runs_the_failed_steps_again_and_keeps_finished_results() -> None:
    run = Driver(step("a", []), step("b", [], retry=2), step("c", ["a", "b"]), step("d", ["c"]))
    run.succeed("a", {"done": 1})
    run.fail("b")
    run.fail("b")
    assert run.status() is ExecutionStatus.FAILED and can_retry(run.state)
    actions = run.apply(retry_failed)
    assert runs(actions) == ["b"]
    assert emitted(actions)[0] == ("workflow_started", None)
    assert run_of(actions, "b").task_id == "exec-1:b:3"
    assert run.state.steps["a"].status is StepStatus.COMPLETED and run.state.steps["a"].result == {"done": 1}
    assert run.statuses()["c"] == "pending" and run.state.error is None
    assert runs(run.fail("b")) == ["b"]  # a new round of attempts
    assert runs(run.succeed("b")) == ["c"]
    run.succeed("c")
    assert finishes(run.succeed("d")) == [ExecutionStatus.COMPLETED]


def test_retry_failed_leaves_untaken_branches_skipped() -> None:
    run = Driver(step("a"), step("b", ["a"]), step("c", ["a"]), step("d", ["b"]), on_failure="continue")
    run.succeed("a", next=("b",))
    run.fail("b")
    assert run.statuses() == {"a": "completed", "b": "failed", "c": "skipped", "d": "skipped"}
    run.apply(retry_failed)
    assert run.statuses() == {"a": "completed", "b": "running", "c": "skipped", "d": "pending"}


def test_retry_failed_applies_only_to_a_failed_execution() -> None:
    run = Driver(step("a"))
    before = run.state
    assert run.apply(retry_failed) == [] and run.state is before


def unchanged_cases() -> list[tuple[str, Callable[[Driver], list[Action]]]]:
    return [
        ("outcome-for-unknown-step", lambda r: r.apply(on_step_finished, "ghost", 1, StepSucceeded())),
        ("outcome-for-stale-attempt", lambda r: r.apply(on_step_finished, "a", 1, StepSucceeded())),
        ("outcome-for-future-attempt", lambda r: r.apply(on_step_finished, "a", 3, StepFailed("x"))),
        ("outcome-for-pending-step", lambda r: r.apply(on_step_finished, "b", 1, StepSucceeded())),
        ("progress-for-stale-attempt", lambda r: r.apply(on_step_progress, "a", 1, Progress(percentage=5))),
        ("started-for-stale-attempt", lambda r: r.apply(on_step_started, "a", 1)),
        ("start-again", lambda r: r.apply(start)),
        ("continue-with-nothing-waiting", lambda r: r.apply(continue_manual)),
        ("retry-while-running", lambda r: r.apply(retry_failed)),
    ]


@pytest.mark.parametrize(("name", "call"), unchanged_cases(), ids=[name for name, _ in unchanged_cases()])
def test_stale_and_repeated_inputs_change_nothing(name: str, call: Callable[[Driver], list[Action]]) -> None:
    run = Driver(step("a", retry=3), step("b"))
    run.fail("a")  # attempt 2 now runs
    before = run.state
    assert call(run) == []
    assert run.state is before and run.state.version == 2


def test_a_repeated_outcome_after_the_step_finished_changes_nothing() -> None:
    run = Driver(step("a"), step("b"))
    run.succeed("a")
    before = run.state
    assert run.apply(on_step_finished, "a", 1, StepSucceeded()) == [] and run.state is before
    assert run.apply(on_step_finished, "a", 1, StepFailed("late")) == [] and run.state is before
    run.apply(on_step_started, "b", 1)
    before = run.state
    assert run.apply(on_step_started, "b", 1) == [] and run.state is before


def test_payload_references_are_replaced_at_any_depth() -> None:
    run = Driver(
        step("a", payload={"url": "$input.doc.url", "price": "$5", "all": "$input", "deep": [{"n": "$input.n"}]}),
        step("b", payload={"second": "$steps.a.result.chunks.1", "whole": "$steps.a.result", "text": "see $input.n"}),
        input={"doc": {"url": "s3://x"}, "n": 2},
    )
    assert run_of(run.actions, "a").payload == {
        "url": "s3://x",
        "price": "$5",
        "all": {"doc": {"url": "s3://x"}, "n": 2},
        "deep": [{"n": 2}],
    }
    actions = run.succeed("a", {"chunks": ["c0", "c1"]})
    assert run_of(actions, "b").payload == {"second": "c1", "whole": {"chunks": ["c0", "c1"]}, "text": "see $input.n"}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"x": "$input.doc.missing"}, "$input.doc.missing: 'doc.missing' is not in the execution's input"),
        ({"x": "$steps.a.result.chunks.5"}, "$steps.a.result.chunks.5: 'chunks.5' is not in the result of step 'a'"),
        ({"x": "$steps.a.result.chunks.x"}, "'chunks.x' is not in the result of step 'a'"),
    ],
    ids=["input-key", "list-index-out-of-range", "key-into-list"],
)
def test_a_reference_that_is_not_there_fails_the_step(payload: dict[str, Any], message: str) -> None:
    run = Driver(step("a"), step("b", payload=payload), input={"doc": {}})
    actions = run.succeed("a", {"chunks": ["c0"]})
    assert runs(actions) == []
    b = run.state.steps["b"]
    assert (b.status, b.error_type, b.attempt) == (StepStatus.FAILED, "reference_error", 1)
    assert message in (b.error or "")
    assert finishes(actions) == [ExecutionStatus.FAILED]


def test_a_reference_failure_at_start_stops_parallel_roots_listed_after_it() -> None:
    run = Driver(step("a", [], payload={"x": "$input.nope"}), step("b", []))
    assert runs(run.actions) == []
    assert run.statuses() == {"a": "failed", "b": "skipped"}
    assert finishes(run.actions) == [ExecutionStatus.FAILED]


def test_returned_context_merges_into_dynamic_properties() -> None:
    run = Driver(step("a"), step("b"), step("c"), input={"x": 1, "keep": True})
    actions = run.succeed("a", context={"y": 2})
    assert run_of(actions, "b").context == {"x": 1, "keep": True, "y": 2}
    run.succeed("b", context={"x": 3})
    actions = run.succeed("c")
    assert run.state.context.dynamic_properties == {"x": 3, "keep": True, "y": 2}
    assert event(actions, EventType.WORKFLOW_COMPLETED) == {"final_context": {"x": 3, "keep": True, "y": 2}}
    assert run.state.input == {"x": 1, "keep": True}


def test_progress_is_recorded_and_emitted_and_marks_the_start() -> None:
    run = Driver(step("a", kind="external", type="human_review"))
    assert run_of(run.actions, "a").kind == "external"
    actions = run.apply(on_step_progress, "a", 1, Progress(percentage=65, message="half"))
    assert event(actions, EventType.STEP_PROGRESS) == {
        "step": "a",
        "attempt": 1,
        "progress": {"percentage": 65, "message": "half"},
    }
    a = run.state.steps["a"]
    assert a.progress == Progress(percentage=65, message="half") and a.started_at == T0 + timedelta(seconds=2)


def test_started_is_recorded_once_and_the_duration_counts_from_it() -> None:
    run = Driver(step("a"))
    assert run.apply(on_step_started, "a", 1) == []
    run.clock += 10
    run.succeed("a")
    a = run.state.steps["a"]
    assert a.queued_at == T0 + timedelta(seconds=1)
    assert a.started_at == T0 + timedelta(seconds=2)
    assert a.duration_seconds == 11.0


def test_pending_runs_resend_the_running_attempts_with_the_same_task_ids() -> None:
    run = Driver(step("a", [], retry=2), step("b", [], payload={"v": "$input.v"}), input={"v": 9})
    run.fail("a")
    resent = pending_runs(run.state)
    assert [(r.step, r.task_id) for r in resent] == [("a", "exec-1:a:2"), ("b", "exec-1:b:1")]
    assert resent[1].payload == {"v": 9}


def test_the_state_survives_a_json_round_trip() -> None:
    run = Driver(step("a"), step("b"), input={"x": [1, 2]})
    run.apply(on_step_progress, "a", 1, Progress(percentage=10, custom_data={"k": "v"}))
    run.succeed("a", {"r": 1}, context={"c": True}, next=("b",))
    assert ExecutionState.from_json(run.state.to_json()) == run.state


def test_a_handler_never_changes_the_state_it_was_given() -> None:
    run = Driver(step("a"), step("b"))
    before = run.state
    snapshot = before.model_dump()
    run.succeed("a", {"r": 1}, context={"c": True})
    assert before.model_dump() == snapshot
    assert run.state.version == before.version + 1


def random_definition(rng: random.Random) -> list[dict[str, Any]]:
    """A random DAG of 1-9 steps listed in a random order; some steps rely on the default order."""
    count = rng.randint(1, 9)
    names = [f"s{i}" for i in range(count)]  # s<i> may only wait for s<j>, j < i: no cycle
    deps = {name: sorted(rng.sample(names[:i], rng.randint(0, min(i, 3)))) for i, name in enumerate(names)}
    listing = names[:]
    rng.shuffle(listing)
    steps = []
    for position, name in enumerate(listing):
        if position > 0 and deps[name] == [listing[position - 1]] and rng.random() < 0.7:
            steps.append(step(name))  # the default: after the step listed before
        else:
            steps.append(step(name, deps[name]))
    if deps[listing[0]] == [] and rng.random() < 0.5:
        steps[0] = step(listing[0])
    return steps


@pytest.mark.parametrize("seed", range(200))
def test_random_dags_complete_every_step_exactly_once_in_any_valid_order(seed: int) -> None:
    rng = random.Random(seed)
    run = Driver(*random_definition(rng))
    dependencies = resolve_dependencies(run.state.definition)
    sent = runs(run.actions)
    assert all(dependencies[name] == () for name in sent)
    finished: list[str] = []
    all_actions = list(run.actions)
    while (running := [n for n, s in run.state.steps.items() if s.status is StepStatus.RUNNING]) != []:
        name = rng.choice(running)
        actions = run.succeed(name, {"step": name})
        all_actions += actions
        finished.append(name)
        assert all(set(dependencies[new]) <= set(finished) for new in runs(actions))  # never before its dependencies
        sent += runs(actions)
        if rng.random() < 0.3:  # a redelivered outcome of a step already finished
            before = run.state
            assert run.apply(on_step_finished, rng.choice(finished), 1, StepSucceeded()) == []
            assert run.state is before
    assert run.status() is ExecutionStatus.COMPLETED
    assert sorted(sent) == sorted(run.state.steps) == sorted(finished)
    assert all(s.status is StepStatus.COMPLETED and s.attempt == 1 for s in run.state.steps.values())
    assert finishes(all_actions) == [ExecutionStatus.COMPLETED]
    assert [e for e, _ in emitted(all_actions)].count("workflow_completed") == 1


def test_without_an_output_the_completed_event_carries_the_final_context_only() -> None:
    run = Driver(step("a"), input={"doc": 1})
    completed = event(run.succeed("a", {"n": 1}, context={"seen": True}), EventType.WORKFLOW_COMPLETED)
    assert completed == {"final_context": {"doc": 1, "seen": True}}  # the engine makes it the result too


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("$steps.index.result", {"chunks": [1, 2], "title": "t"}),
        ("$steps.index.result.chunks.1", 2),
        ("$input.title", "from input"),
        ("$steps.skipped.result", None),
    ],
    ids=["whole-result", "path-into-result", "input", "skipped-step-is-null"],
)
def test_the_output_is_resolved_at_completion_as_the_result(output: str, expected: Any) -> None:
    run = Driver(
        step("split"),
        step("skipped", ["split"]),
        step("index", ["split"]),
        input={"title": "from input"},
        output=output,
    )
    run.succeed("split", None, next=("index",))
    completed = event(run.succeed("index", {"chunks": [1, 2], "title": "t"}), EventType.WORKFLOW_COMPLETED)
    assert run.status() is ExecutionStatus.COMPLETED
    assert completed["result"] == expected
    assert completed["final_context"] == {"title": "from input"}


def test_an_output_that_does_not_resolve_fails_the_execution() -> None:
    run = Driver(step("a"), step("b"), output="$steps.a.result.missing")
    run.succeed("a", {"there": 1})
    actions = run.succeed("b")
    assert finishes(actions) == [ExecutionStatus.FAILED]
    failed = event(actions, EventType.WORKFLOW_FAILED)
    assert "output" in failed["error"] and "'missing' is not in the result of step 'a'" in failed["error"]
    assert failed["failed_steps"] == []
    assert run.statuses() == {"a": "completed", "b": "completed"}
