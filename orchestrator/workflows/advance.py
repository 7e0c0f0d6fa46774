"""The advance step: pure functions of (state, input, now) that return the new state and the actions.

No I/O and no clock: the caller reads the state, calls one function, stores the new state with a
compare-and-set on `version`, then performs the actions in order. A handler that has nothing to do
(an outcome for an attempt that is not the step's running one, a step already finished, a control
that does not apply) returns the very state it was given and no actions, so a redelivered event is
harmless and the caller can skip the write when `version` did not move.

Rules where DESIGN is silent:
- `step_started` is emitted when the engine sends an attempt (the moment is known and recorded in the
  same write, for worker and external steps alike); `on_step_started` only records when the worker
  began, which `duration_seconds` then measures from.
- A failed attempt with attempts left sends the next attempt at once (`step_started` again, with the
  attempt number and the previous error); only the step's last failure emits `step_finished`.
- Every step that ends (completed, failed, skipped, cancelled) emits one `step_finished`.
- Branches: a step whose dependencies have all ended runs when at least one of them completed and
  picked it (a dependency with no `next` picks all its successors); it is skipped when a dependency
  failed (or was skipped because one failed), and skipped as an untaken branch when none picked it.
  So steps that only untaken branches lead to are skipped, and a join after an if/else runs.
  A `next` that names anything but direct successors fails the step, without retry.
- on_failure "stop": once a step has failed no new step starts; the running ones finish (their work
  is kept for a retry), then the steps not run end skipped ("stopped") and the execution fails.
  "continue": the failed step's dependents are skipped, the rest runs on; the execution then fails.
- Manual mode: ready steps wait; the execution is paused while some step waits and none runs.
  Retries of a failed attempt are not held: the step was already let through.
- cancel and expire: running steps get CancelStep and end cancelled, the others skipped; the terminal
  event is `workflow_failed` with `status` cancelled or timed_out (DESIGN has no other terminal event).
- retry_failed applies to a failed execution only: its failed steps, and the steps skipped because of
  them or because the execution stopped, go back to pending; each failed step gets a new round of
  `retry.max_attempts` attempts, numbered on from its last.
- A step's `context` merges shallowly into dynamic_properties, in the order outcomes arrive.
- A completed execution's `workflow_completed` carries `result`, the definition's `output` resolved, when
  it has one; an `output` that does not resolve (a path not in the step's result) fails the execution.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from orchestrator.workflows.actions import Action, CancelStep, Emit, Finish, RunStep
from orchestrator.workflows.definition import WorkflowPlan, plan_workflow
from orchestrator.workflows.outcomes import StepFailed, StepOutcome, StepSucceeded
from orchestrator.workflows.references import MalformedReference, MissingReference, resolve
from orchestrator.workflows.state import (
    FINISHED_STEP_STATUSES,
    ExecutionContext,
    ExecutionMode,
    ExecutionState,
    ExecutionStatus,
    SkipReason,
    StepState,
    StepStatus,
    step_task_id,
)
from protocol.events import EventType, Progress
from protocol.priorities import DEFAULT_PRIORITY

Transition = tuple[ExecutionState, list[Action]]

REFERENCE_ERROR = "reference_error"
BAD_NEXT_ERROR = "bad_next"


def new_execution(
    plan: WorkflowPlan,
    *,
    execution_id: str,
    workflow_id: str,
    tenant_id: str,
    input: Mapping[str, Any],
    now: datetime,
    mode: ExecutionMode = ExecutionMode.AUTOMATIC,
    priority: int = DEFAULT_PRIORITY,
    metadata: Mapping[str, Any] | None = None,
) -> ExecutionState:
    """A queued execution of `plan`: every step pending, dynamic_properties a copy of the input."""
    definition = plan.definition
    return ExecutionState(
        execution_id=execution_id,
        workflow_id=workflow_id,
        workflow_name=definition.name,
        tenant_id=tenant_id,
        mode=mode,
        priority=priority,
        input=dict(input),
        context=ExecutionContext(dynamic_properties=dict(input)),
        definition=definition,
        steps={step.name: StepState(name=step.name) for step in definition.steps},
        metadata=dict(metadata or {}),
        created_at=now,
        updated_at=now,
    )


def start(state: ExecutionState, now: datetime) -> Transition:
    """Start a queued execution: `workflow_started`, then its first steps run (or wait, in manual mode)."""
    if state.status is not ExecutionStatus.QUEUED:
        return state, []
    move = _Move(state, now)
    move.state.status = ExecutionStatus.RUNNING
    move.emit(EventType.WORKFLOW_STARTED, _started_data(move.state))
    move.settle()
    return move.done()


def on_step_started(state: ExecutionState, step: str, attempt: int, now: datetime) -> Transition:
    """A worker began the attempt: recorded as the step's start. No event (it went out when sent)."""
    current = _running(state, step, attempt)
    if current is None or current.started_at is not None:
        return state, []
    move = _Move(state, now)
    move.state.steps[step].started_at = now
    return move.done()


def on_step_progress(state: ExecutionState, step: str, attempt: int, progress: Progress, now: datetime) -> Transition:
    """A progress report of the running attempt (for an external step, pass its current attempt)."""
    if _running(state, step, attempt) is None:
        return state, []
    move = _Move(state, now)
    current = move.state.steps[step]
    current.progress = progress
    current.started_at = current.started_at or now
    move.emit(
        EventType.STEP_PROGRESS, {"step": step, "attempt": attempt, "progress": progress.model_dump(exclude_none=True)}
    )
    return move.done()


def on_step_finished(state: ExecutionState, step: str, attempt: int, outcome: StepOutcome, now: datetime) -> Transition:
    """The running attempt ended: the step completes, fails, or runs its next attempt; then whatever
    became ready runs, and the execution ends when nothing is left to run."""
    if _running(state, step, attempt) is None:
        return state, []
    move = _Move(state, now)
    if isinstance(outcome, StepSucceeded):
        bad_next = _bad_next(move.plan, step, outcome.next)
        if bad_next is None:
            move.complete(step, outcome)
        else:
            move.fail(step, StepFailed(bad_next, retryable=False, error_type=BAD_NEXT_ERROR))
    else:
        move.fail(step, outcome)
    move.settle()
    return move.done()


def continue_manual(state: ExecutionState, now: datetime) -> Transition:
    """Send every waiting step (manual mode)."""
    if not can_continue(state):
        return state, []
    move = _Move(state, now)
    for name, current in move.state.steps.items():
        if current.status is StepStatus.WAITING and not move.stopping():
            move.dispatch(name)
    move.settle()
    return move.done()


def cancel(state: ExecutionState, now: datetime) -> Transition:
    """Cancel the running steps and skip the rest; the execution ends cancelled."""
    return _halt(state, now, ExecutionStatus.CANCELLED, "execution cancelled")


def expire(state: ExecutionState, now: datetime) -> Transition:
    """The execution ran out of time: as cancel, but it ends timed_out."""
    return _halt(state, now, ExecutionStatus.TIMED_OUT, "execution timed out")


def retry_failed(state: ExecutionState, now: datetime) -> Transition:
    """Run a failed execution's failed steps again and go on, keeping the finished steps' results."""
    if not can_retry(state):
        return state, []
    move = _Move(state, now)
    for current in move.state.steps.values():
        if current.status is StepStatus.FAILED:
            _reset(current)
            current.first_attempt = current.attempt + 1
        elif current.status is StepStatus.SKIPPED and current.skip_reason in ("dependency_failed", "stopped"):
            _reset(current)
    move.state.status = ExecutionStatus.RUNNING
    move.state.error = None
    move.state.finished_at = None
    move.emit(EventType.WORKFLOW_STARTED, {**_started_data(move.state), "retry": True})
    move.settle()
    return move.done()


def pending_runs(state: ExecutionState) -> list[RunStep]:
    """The RunStep of every running attempt, to send again after a crash between storing a state and
    sending its actions: the task ids are the same, so a task that did go out is not run twice."""
    plan = plan_workflow(state.definition)
    runs: list[RunStep] = []
    for name, current in state.steps.items():
        if current.status is StepStatus.RUNNING:
            try:
                runs.append(_run_step(state, plan, name, current.attempt))
            except (MissingReference, MalformedReference):
                continue  # it resolved when the attempt was sent, and finished results never change
    return runs


def can_continue(state: ExecutionState) -> bool:
    return not state.is_finished and any(s.status is StepStatus.WAITING for s in state.steps.values())


def can_cancel(state: ExecutionState) -> bool:
    return not state.is_finished


def can_retry(state: ExecutionState) -> bool:
    return state.status is ExecutionStatus.FAILED


def _running(state: ExecutionState, step: str, attempt: int) -> StepState | None:
    """The step's state when `attempt` is its running attempt; None when the report is stale."""
    current = state.steps.get(step)
    if current is None or current.status is not StepStatus.RUNNING or current.attempt != attempt:
        return None
    return current


def _bad_next(plan: WorkflowPlan, step: str, next_: tuple[str, ...] | None) -> str | None:
    if next_ is None:
        return None
    successors = plan.successors[step]
    wrong = [name for name in next_ if not isinstance(name, str) or name not in successors]
    if not wrong:
        return None  # an empty `next` takes no branch: every successor is skipped
    return f"step {step!r} picked next {list(next_)!r}; it may only name its successors {list(successors)!r}"


def _started_data(state: ExecutionState) -> dict[str, Any]:
    return {"workflow_id": state.workflow_id, "workflow_name": state.workflow_name, "mode": state.mode.value}


def _reset(current: StepState) -> None:
    current.status = StepStatus.PENDING
    current.task_id = None
    current.queued_at = current.started_at = current.finished_at = None
    current.result = current.next = current.error = current.error_type = current.progress = None
    current.skip_reason = None


def _run_step(state: ExecutionState, plan: WorkflowPlan, name: str, attempt: int) -> RunStep:
    definition = plan.step(name)
    payload = resolve(definition.payload, state.input, *_resolvable(state))
    return RunStep(
        step=name,
        attempt=attempt,
        task_id=step_task_id(state.execution_id, name, attempt),
        type=definition.type,
        kind=definition.kind,
        payload=payload,
        config=dict(definition.config),
        timeout_ms=definition.timeout_ms,
        context=dict(state.context.dynamic_properties),
    )


def _halt(state: ExecutionState, now: datetime, status: ExecutionStatus, error: str) -> Transition:
    if not can_cancel(state):
        return state, []
    move = _Move(state, now)
    for name, current in move.state.steps.items():
        if current.status is StepStatus.RUNNING:
            move.actions.append(CancelStep(name, step_task_id(state.execution_id, name, current.attempt)))
            current.status = StepStatus.CANCELLED
            current.finished_at = now
            move.emit_finished(name)
        elif current.status in (StepStatus.PENDING, StepStatus.WAITING):
            move.skip(name, "cancelled")
    move.finish(status, error)
    return move.done()


class _Move:
    """One transition under way: a private copy of the state, the plan, and the actions so far."""

    def __init__(self, state: ExecutionState, now: datetime) -> None:
        self.state = state.model_copy(deep=True)
        self.plan = plan_workflow(state.definition)
        self.now = now
        self.actions: list[Action] = []

    def done(self) -> Transition:
        self.state.version += 1
        self.state.updated_at = self.now
        return self.state, self.actions

    def emit(self, event: EventType, data: dict[str, Any]) -> None:
        self.actions.append(Emit(event, data))

    def emit_finished(self, name: str) -> None:
        current = self.state.steps[name]
        data: dict[str, Any] = {"step": name, "status": current.status.value, "attempt": current.attempt}
        if current.status is StepStatus.COMPLETED:
            data["result"] = current.result
        elif current.status is StepStatus.FAILED:
            data["error"] = current.error
            data["error_type"] = current.error_type
        elif current.status is StepStatus.SKIPPED:
            data["reason"] = current.skip_reason
        self.emit(EventType.STEP_FINISHED, data)

    def dispatch(self, name: str, previous_error: str | None = None) -> None:
        """Send the step's next attempt; a payload reference that cannot resolve fails the step instead."""
        current = self.state.steps[name]
        attempt = current.attempt + 1
        current.attempt = attempt
        try:
            run = _run_step(self.state, self.plan, name, attempt)
        except (MissingReference, MalformedReference) as exc:
            current.error, current.error_type = str(exc), REFERENCE_ERROR
            current.status = StepStatus.FAILED
            current.finished_at = self.now
            self.emit_finished(name)
            return
        current.status = StepStatus.RUNNING
        current.task_id = run.task_id
        current.queued_at = self.now
        current.started_at = current.finished_at = None
        current.progress = None
        current.error = current.error_type = None
        data: dict[str, Any] = {"step": name, "attempt": attempt, "task_id": run.task_id}
        if previous_error is not None:
            data["previous_error"] = previous_error
        self.emit(EventType.STEP_STARTED, data)
        self.actions.append(run)

    def complete(self, name: str, outcome: StepSucceeded) -> None:
        current = self.state.steps[name]
        current.status = StepStatus.COMPLETED
        current.result = outcome.result
        current.next = list(outcome.next) if outcome.next is not None else None
        current.finished_at = self.now
        if outcome.context:
            self.state.context.dynamic_properties.update(outcome.context)
        self.emit_finished(name)

    def fail(self, name: str, outcome: StepFailed) -> None:
        current = self.state.steps[name]
        retry = self.plan.step(name).retry
        attempts_used = current.attempt - current.first_attempt + 1
        if outcome.retryable and attempts_used < retry.max_attempts:
            self.dispatch(name, previous_error=outcome.error)
            return
        current.status = StepStatus.FAILED
        current.error, current.error_type = outcome.error, outcome.error_type
        current.finished_at = self.now
        self.emit_finished(name)

    def skip(self, name: str, reason: SkipReason) -> None:
        current = self.state.steps[name]
        current.status = StepStatus.SKIPPED
        current.skip_reason = reason
        current.finished_at = self.now
        self.emit_finished(name)

    def settle(self) -> None:
        """Start what is ready, skip what can no longer run, and end the execution when all is done."""
        steps = self.state.steps
        # In dependency order, so a skip or an immediate failure reaches the steps after it in one pass.
        for name in self.plan.order:
            if self.stopping():
                break
            if steps[name].status is StepStatus.PENDING:
                self._consider(name)
        stopping = self.stopping()
        if any(s.status is StepStatus.RUNNING for s in steps.values()):
            self.state.status = ExecutionStatus.RUNNING
            return
        if stopping:
            for name in self.plan.order:
                if steps[name].status in (StepStatus.PENDING, StepStatus.WAITING):
                    self.skip(name, "stopped")
        elif any(s.status is StepStatus.WAITING for s in steps.values()):
            self.state.status = ExecutionStatus.PAUSED
            return
        if all(s.status in FINISHED_STEP_STATUSES for s in steps.values()):
            failed = [n for n, s in steps.items() if s.status is StepStatus.FAILED]
            if failed:
                self.finish(ExecutionStatus.FAILED, f"step{'s' if len(failed) > 1 else ''} {', '.join(failed)} failed")
                return
            try:
                output = _output(self.state)
            except (MissingReference, MalformedReference) as exc:
                # As a step's payload: a path that is not there fails loudly rather than give null.
                self.finish(ExecutionStatus.FAILED, f"the workflow's output: {exc}")
                return
            self.finish(ExecutionStatus.COMPLETED, None, output)

    def stopping(self) -> bool:
        """on_failure "stop" and a step has failed: nothing new may start."""
        return self.plan.definition.on_failure == "stop" and any(
            s.status is StepStatus.FAILED for s in self.state.steps.values()
        )

    def _consider(self, name: str) -> None:
        steps = self.state.steps
        dependencies = [steps[d] for d in self.plan.dependencies[name]]
        if any(d.status not in FINISHED_STEP_STATUSES for d in dependencies):
            return
        if any(_failed_path(d) for d in dependencies):
            self.skip(name, "dependency_failed")
        elif dependencies and not any(_picks(d, name) for d in dependencies):
            self.skip(name, "branch")
        elif self.state.mode is ExecutionMode.MANUAL:
            steps[name].status = StepStatus.WAITING
        else:
            self.dispatch(name)

    def finish(self, status: ExecutionStatus, error: str | None, output: tuple[Any] | None = None) -> None:
        """End the execution; `output` (completed only) holds the resolved `output` of the definition."""
        self.state.status = status
        self.state.error = error
        self.state.finished_at = self.now
        if status is ExecutionStatus.COMPLETED:
            data: dict[str, Any] = {"final_context": dict(self.state.context.dynamic_properties)}
            if output is not None:
                data["result"] = output[0]  # what the registry keeps as the job's result
            self.emit(EventType.WORKFLOW_COMPLETED, data)
        else:
            failed = _names(self.state.steps.items(), StepStatus.FAILED)
            self.emit(EventType.WORKFLOW_FAILED, {"error": error, "failed_steps": failed, "status": status.value})
        self.actions.append(Finish(status))


def _output(state: ExecutionState) -> tuple[Any] | None:
    """The definition's `output` resolved against the finished steps, boxed (it may resolve to null);
    None when the definition has no `output` (the result is then the final context)."""
    text = state.definition.output
    if text is None:
        return None
    return (resolve(text, state.input, *_resolvable(state)),)


def _resolvable(state: ExecutionState) -> tuple[dict[str, Any], set[str]]:
    """What references resolve against: the completed steps' results, and the steps that ended skipped."""
    results = {n: s.result for n, s in state.steps.items() if s.status is StepStatus.COMPLETED}
    skipped = {n for n, s in state.steps.items() if s.status is StepStatus.SKIPPED}
    return results, skipped


def _failed_path(dependency: StepState) -> bool:
    return dependency.status in (StepStatus.FAILED, StepStatus.CANCELLED) or (
        dependency.status is StepStatus.SKIPPED and dependency.skip_reason != "branch"
    )


def _picks(dependency: StepState, name: str) -> bool:
    return dependency.status is StepStatus.COMPLETED and (dependency.next is None or name in dependency.next)


def _names(steps: Iterable[tuple[str, StepState]], status: StepStatus) -> list[str]:
    return [name for name, current in steps if current.status is status]
