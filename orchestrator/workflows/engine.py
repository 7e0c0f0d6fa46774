"""The workflow engine: executions advanced by the pure core, stored in Redis, carried out on the job path.

An execution is a job of type `workflow` on the reserved service `workflows`: its root "task" is the
execution itself, so the engine's own events (workflow_started, step_started, ..., workflow_completed)
move the job's status through the registry like any root task's would, and reach every WebSocket
client through the same sink. Each step attempt is a task of that job, published to its service.

One transition: read the state, call one pure handler (`advance`), store the new state with
compare-and-set together with the actions it owes (the outbox), then perform them and drop them.
Whichever replica applies a step's outcome advances the execution; two replicas advancing the same
one conflict on the version and the loser reads again. A replica that dies after storing and
before performing leaves the actions owed: the recovery loop of any replica performs them later.
Performing twice is harmless: events carry fixed seqs the registry drops when repeated, and a step
task published again has the same task id and attempt, which the workers' ledger runs once.
Step outcomes arrive from the event consumer, which acks an event only after this engine has
advanced on it: a replica killed in between gets the event redelivered, and an outcome the state
already holds is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Final, Protocol, TypedDict, Unpack

from orchestrator.errors import BrokerError, RegistryError, UnpublishableJob
from orchestrator.models import JobUpdate
from orchestrator.workflows import advance
from orchestrator.workflows.actions import Action, CancelStep, Emit, RunStep
from orchestrator.workflows.definition import WorkflowDefinition, plan_workflow
from orchestrator.workflows.execution_jobs import CONTEXT_KEY, JOB_TYPE_KEY
from orchestrator.workflows.job_progress import EXECUTION_PROGRESS_KEY, execution_progress
from orchestrator.workflows.outcomes import StepFailed, StepOutcome, StepSucceeded
from orchestrator.workflows.state import ExecutionMode, ExecutionState, StepStatus
from orchestrator.workflows.storage import DefinitionStore, ExecutionStore, StoreConflict
from orchestrator.workflows.telemetry import WorkflowMetrics, record_transition
from plumbing.cancellation import cancel_and_wait
from protocol.control import CancelCommand
from protocol.envelope import ContextIds, TaskEnvelope, TaskMetadata, utc_now
from protocol.events import ATTEMPT_SEQ_STRIDE, EventType, JobStatus, Progress, TaskEvent
from protocol.ledger import LEDGER_TTL_SECONDS, cancelled_key
from protocol.services import WORKFLOW_SERVICE

log = logging.getLogger(__name__)

MAX_SWAP_ATTEMPTS: Final[int] = 20
RECOVERY_INTERVAL_SECONDS: Final[float] = 2.0
# Owed actions are performed within milliseconds by the replica that stored them; owed this long,
# their replica died (or failed to reach the broker) and any replica takes over.
RECOVERY_AFTER_SECONDS: Final[float] = 5.0
# Worker failures that no new attempt of the same step can fix, for events that do not say (older workers).
PERMANENT_ERROR_TYPES: Final[frozenset[str]] = frozenset(
    {"ValidationError", "ResultNotSerializable", "ResultTooLarge", "UnknownJobType", "DeadlineExceeded"}
)


class WorkflowNotFound(Exception):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id} not found")
        self.workflow_id = workflow_id


class ExecutionNotFound(Exception):
    def __init__(self, execution_id: str) -> None:
        super().__init__(f"execution {execution_id} not found")
        self.execution_id = execution_id


class StepNotFound(Exception):
    def __init__(self, execution_id: str, step: str) -> None:
        super().__init__(f"execution {execution_id} has no step {step!r}")
        self.execution_id = execution_id
        self.step = step


class NotAllowed(Exception):
    """A control or report that does not apply to the execution as it is (continue a finished one,
    report for a step that is not running, ...); `status` is the execution's status then."""

    def __init__(self, message: str, *, execution_id: str, status: str) -> None:
        super().__init__(message)
        self.execution_id = execution_id
        self.status = status


class EventApplier(Protocol):
    async def apply_own(self, event: TaskEvent) -> JobUpdate | None: ...


class ExecutionJobs(Protocol):
    """The execution's job in the registry (`orchestrator.workflows.execution_jobs`)."""

    async def create(self, state: ExecutionState) -> None: ...

    async def reopen(self, state: ExecutionState) -> None: ...


class TaskSender(Protocol):
    def encode_task(self, envelope: TaskEnvelope) -> bytes: ...

    async def publish_task(self, envelope: TaskEnvelope, *, body: bytes | None = None) -> None: ...

    async def publish_cancel(self, command: CancelCommand) -> None: ...


class ServiceLookup(Protocol):
    async def service_for(self, job_type: str) -> str | None: ...


class LedgerWriter(Protocol):
    """The workers' delivery ledger (a Redis client): a cancelled execution's key stops its queued steps."""

    def set(self, name: str, value: str, ex: int) -> Awaitable[object]: ...


Handler = Callable[[ExecutionState], tuple[ExecutionState, list[Action]]]


class RunOptions(TypedDict, total=False):
    """How an execution is started. A job started through `POST /jobs` (`orchestrator.workflows.
    job_starter`) brings its job id as the execution id, its type (the execution's job is recorded under
    it instead of `workflow`) and its context ids (propagated to every step task); `metadata` is kept in
    the state for the caller."""

    mode: ExecutionMode
    priority: int | None
    idempotency_key: str | None
    session_id: str | None
    execution_id: str | None
    job_type: str | None
    context: Mapping[str, Any] | None
    metadata: Mapping[str, Any] | None


class WorkflowEngine:
    def __init__(
        self,
        definitions: DefinitionStore,
        executions: ExecutionStore,
        jobs: ExecutionJobs,
        events: EventApplier,
        sender: TaskSender,
        services: ServiceLookup,
        ledger: LedgerWriter,
        metrics: WorkflowMetrics,
        *,
        clock: Callable[[], datetime] = utc_now,
        recovery_interval: float = RECOVERY_INTERVAL_SECONDS,
        recovery_after: float = RECOVERY_AFTER_SECONDS,
    ) -> None:
        self.definitions = definitions
        self.executions = executions
        self._jobs = jobs
        self._events = events
        self._sender = sender
        self._services = services
        self._ledger = ledger
        self._metrics = metrics
        self._clock = clock
        self._recovery_interval = recovery_interval
        self._recovery_after = recovery_after
        self._recovery: asyncio.Task[None] | None = None

    # Lifecycle: the recovery loop performs what dead replicas owed.

    def start(self) -> None:
        self._recovery = asyncio.create_task(self._recover_forever(), name="baton-workflow-recovery")

    async def stop(self) -> None:
        task, self._recovery = self._recovery, None
        if task is not None:
            await cancel_and_wait(task)

    async def recover_once(self, older_than: float | None = None) -> int:
        """Perform the actions owed for longer than `older_than` (default `recovery_after`) seconds;
        how many executions were looked at."""
        overdue = await self.executions.overdue(self._recovery_after if older_than is None else older_than)
        for tenant_id, execution_id in overdue:
            await self.perform_owed(tenant_id, execution_id)
        return len(overdue)

    async def _recover_forever(self) -> None:
        while True:
            try:
                await self.recover_once()
            except (RegistryError, BrokerError) as exc:
                log.warning("workflow recovery round skipped: %s", exc)
            except Exception:
                log.exception("workflow recovery round failed")  # the next round must still happen
            await asyncio.sleep(self._recovery_interval)

    # Runs.

    async def execute(
        self, tenant_id: str, workflow_id: str, data: Mapping[str, Any], **options: Unpack[RunOptions]
    ) -> tuple[ExecutionState, bool]:
        """Start an execution of the tenant's workflow; (its state, True) when it is new, or the execution
        the idempotency key already started and False."""
        stored = await self.definitions.get(tenant_id, workflow_id)
        if stored is None:
            raise WorkflowNotFound(workflow_id)
        return await self.execute_definition(tenant_id, workflow_id, stored.definition, data, **options)

    async def execute_definition(
        self,
        tenant_id: str,
        workflow_id: str,
        definition: WorkflowDefinition,
        data: Mapping[str, Any],
        **options: Unpack[RunOptions],
    ) -> tuple[ExecutionState, bool]:
        """`execute` with a definition the caller has read already."""
        mode = options.get("mode", ExecutionMode.AUTOMATIC)
        priority = options.get("priority")
        idempotency_key = options.get("idempotency_key")
        session_id = options.get("session_id")
        job_type = options.get("job_type")
        context = options.get("context")
        metadata = options.get("metadata")
        now = self._clock()
        execution_id = options.get("execution_id") or str(uuid.uuid4())
        kept: dict[str, Any] = dict(metadata or {})
        if session_id is not None:
            kept["session_id"] = session_id
        if job_type is not None:
            kept[JOB_TYPE_KEY] = job_type
        if context:
            kept[CONTEXT_KEY] = dict(context)
        state = advance.new_execution(
            plan_workflow(definition),
            execution_id=execution_id,
            workflow_id=workflow_id,
            tenant_id=tenant_id,
            input=data,
            now=now,
            mode=mode,
            **({"priority": priority} if priority is not None else {}),
            metadata=kept,
        )
        queued = state
        state, actions = advance.start(state, now)
        state, owed = self._owed(queued, state, actions)
        existing = await self.executions.create(state, [{"kind": "create_job"}, *owed], idempotency_key)
        if existing is not None:
            found = await self.executions.load(tenant_id, existing)
            if found is None:
                raise ExecutionNotFound(existing)
            return found, False
        self._metrics.execution_started(workflow_id)
        await self.perform_owed(tenant_id, execution_id)
        return state, True

    async def get(self, tenant_id: str, execution_id: str) -> ExecutionState:
        state = await self.executions.load(tenant_id, execution_id)
        if state is None:
            raise ExecutionNotFound(execution_id)
        return state

    async def continue_execution(self, tenant_id: str, execution_id: str) -> ExecutionState:
        return await self._control(tenant_id, execution_id, advance.can_continue, advance.continue_manual, "continue")

    async def cancel(self, tenant_id: str, execution_id: str) -> ExecutionState:
        return await self._control(tenant_id, execution_id, advance.can_cancel, advance.cancel, "cancel")

    async def retry(self, tenant_id: str, execution_id: str) -> ExecutionState:
        return await self._control(tenant_id, execution_id, advance.can_retry, self._retry_failed, "retry")

    def _retry_failed(self, state: ExecutionState, now: datetime) -> tuple[ExecutionState, list[Action]]:
        new, actions = advance.retry_failed(state, now)
        if new is not state:
            # The job ended failed; its events start a new round, as a task's next attempt does.
            new.round += 1
            new.events_emitted = 0
        return new, actions

    async def _control(
        self,
        tenant_id: str,
        execution_id: str,
        allowed: Callable[[ExecutionState], bool],
        handler: Callable[[ExecutionState, datetime], tuple[ExecutionState, list[Action]]],
        what: str,
    ) -> ExecutionState:
        def step(state: ExecutionState) -> tuple[ExecutionState, list[Action]]:
            if not allowed(state):
                raise NotAllowed(
                    f"cannot {what} execution {execution_id}: it is {state.status.value}",
                    execution_id=execution_id,
                    status=state.status.value,
                )
            return handler(state, self._clock())

        return await self._transition(tenant_id, execution_id, step)

    # Step reports: from the event consumer (worker steps) and the HTTP API (external steps).

    async def on_step_event(self, event: TaskEvent) -> None:
        """A worker's event about a step task (`<execution>:<step>:<attempt>`); anything else is ignored."""
        parsed = parse_step_task_id(event.global_task_id, event.task_id)
        if parsed is None:
            return
        step, attempt = parsed
        now = self._clock()
        handler: Handler
        if event.event is EventType.TASK_COMPLETED:
            outcome: StepOutcome = StepSucceeded.from_result(event.data.get("result"))
            handler = lambda s: advance.on_step_finished(s, step, attempt, outcome, now)  # noqa: E731
        elif event.event is EventType.TASK_FAILED or event.event is EventType.TASK_CANCELLED:
            failure = step_failure(event)
            handler = lambda s: advance.on_step_finished(s, step, attempt, failure, now)  # noqa: E731
        elif event.event is EventType.TASK_STATUS_UPDATE:
            progress = event.data.get("progress")
            if isinstance(progress, dict):
                report = Progress.model_validate(progress)
                handler = lambda s: advance.on_step_progress(s, step, attempt, report, now)  # noqa: E731
            else:
                handler = lambda s: advance.on_step_started(s, step, attempt, now)  # noqa: E731
        else:
            return
        try:
            await self._transition(event.tenant_id, event.global_task_id, handler)
        except ExecutionNotFound:
            log.warning("event %s of step task %s: no such execution", event.event.value, event.task_id)

    async def report_progress(self, tenant_id: str, execution_id: str, step: str, progress: Progress) -> ExecutionState:
        """An external step's progress report, for its running attempt; StepNotFound, or NotAllowed when the
        step is not external or not running."""
        now = self._clock()

        def handler(state: ExecutionState) -> tuple[ExecutionState, list[Action]]:
            return advance.on_step_progress(state, step, _reporting_attempt(state, step), progress, now)

        return await self._transition(tenant_id, execution_id, handler)

    async def complete_step(
        self, tenant_id: str, execution_id: str, step: str, *, success: bool, data: Any, message: str | None
    ) -> ExecutionState:
        """An external step's outcome, for its running attempt (errors as `report_progress`)."""
        now = self._clock()
        outcome: StepOutcome = (
            StepSucceeded.from_result(data)
            if success
            else StepFailed(message or "the step reported a failure", retryable=True, error_type="ExternalStepFailed")
        )

        def handler(state: ExecutionState) -> tuple[ExecutionState, list[Action]]:
            return advance.on_step_finished(state, step, _reporting_attempt(state, step), outcome, now)

        return await self._transition(tenant_id, execution_id, handler)

    # Transitions and their actions.

    async def _transition(self, tenant_id: str, execution_id: str, handler: Handler) -> ExecutionState:
        for _ in range(MAX_SWAP_ATTEMPTS):
            state = await self.executions.load(tenant_id, execution_id)
            if state is None:
                raise ExecutionNotFound(execution_id)
            new, actions = handler(state)
            if new is state or new.version == state.version:
                return state
            new, owed = self._owed(state, new, actions)
            try:
                await self.executions.swap(state.version, new, owed)
            except StoreConflict:
                continue  # another replica advanced it meanwhile: redo on what it stored
            record_transition(self._metrics, state, new)
            await self.perform_owed(tenant_id, execution_id)
            return new
        raise RegistryError(f"execution {execution_id} kept changing under {MAX_SWAP_ATTEMPTS} attempts to advance it")

    def _owed(
        self, before: ExecutionState, after: ExecutionState, actions: list[Action]
    ) -> tuple[ExecutionState, list[dict[str, Any]]]:
        """The actions as outbox entries; each event gets its seq here, stored with the state."""
        owed: list[dict[str, Any]] = []
        emitted = after.events_emitted
        for action in actions:
            if isinstance(action, Emit):
                emitted += 1
                owed.append(
                    {
                        "kind": "emit",
                        "event": action.event.value,
                        "data": _event_data(action, after),
                        "seq": after.round * ATTEMPT_SEQ_STRIDE + emitted,
                    }
                )
            elif isinstance(action, RunStep):
                owed.append({"kind": "run", "step": action.step, "attempt": action.attempt})
            elif isinstance(action, CancelStep):
                owed.append({"kind": "cancel"})
            # Finish needs nothing more: the terminal event it comes with settles the job.
        if after.round != before.round:
            owed.insert(0, {"kind": "reopen_job"})
        after.events_emitted = emitted
        return after, owed

    async def perform_owed(self, tenant_id: str, execution_id: str) -> None:
        """Carry out what the execution owes, in order, one replica at a time; what fails stays owed
        for the recovery loop. A replica that adds actions while another performs leaves them to it:
        the performer looks again after releasing its claim. The claim expires by itself
        (PERFORM_LOCK_SECONDS) when its holder dies; it is released when its holder is cancelled."""
        token = secrets.token_hex(8)
        while await self.executions.claim(tenant_id, execution_id, token):
            done = 0
            try:
                owed = await self.executions.owed(tenant_id, execution_id)
                state = await self.executions.load(tenant_id, execution_id) if owed else None
                for entry in owed:
                    if state is not None:
                        await self._carry_out(state, entry)
                    done += 1
            except (RegistryError, BrokerError, UnpublishableJob) as exc:
                log.warning("execution %s: an owed action failed (%s); retried later", execution_id, exc)
                await self.executions.performed(tenant_id, execution_id, done, token)
                await self.executions.postpone(tenant_id, execution_id)
                return
            except BaseException:
                # Cancelled (a shutdown) or a bug: hand over what is left now, not when the claim expires.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.executions.performed(tenant_id, execution_id, done, token))
                raise
            if await self.executions.performed(tenant_id, execution_id, done, token) == 0:
                return

    async def _carry_out(self, state: ExecutionState, entry: Mapping[str, Any]) -> None:
        kind = entry["kind"]
        if kind == "create_job":
            await self._jobs.create(state)
        elif kind == "reopen_job":
            await self._jobs.reopen(state)
        elif kind == "emit":
            event = TaskEvent(
                event=EventType(entry["event"]),
                service=WORKFLOW_SERVICE,
                task_id=state.execution_id,
                global_task_id=state.execution_id,
                tenant_id=state.tenant_id,
                seq=entry["seq"],
                data=entry["data"],
            )
            await self._events.apply_own(event)
        elif kind == "run":
            await self._send_step(state, entry["step"], entry["attempt"])
        elif kind == "cancel":
            await self._ledger.set(
                cancelled_key(state.tenant_id, state.execution_id), "cancelled", ex=LEDGER_TTL_SECONDS
            )
            command = CancelCommand(
                tenant_id=state.tenant_id, global_task_id=state.execution_id, reason="execution cancelled"
            )
            await self._sender.publish_cancel(command)

    async def _send_step(self, state: ExecutionState, step: str, attempt: int) -> None:
        current = state.steps.get(step)
        if current is None or current.attempt != attempt or current.task_id is None:
            return  # a later transition moved on (another attempt, or cancelled): nothing to send
        run = _find_run(state, step)
        if run is None or run.kind != "worker":
            return  # external steps take reports instead of a task
        service = await self._services.service_for(run.type)
        if service is None:
            # Checked when the workflow was stored; the service may have been forgotten since: its
            # task would wait in a queue nobody serves, so the step fails now instead.
            await self._fail_unsendable(
                state, step, attempt, f"no service serves job type {run.type!r}", "UnknownJobType"
            )
            return
        envelope = step_envelope(state, run, service)
        try:
            body = self._sender.encode_task(envelope)
        except UnpublishableJob as exc:
            # The payload, references filled in, is over the message cap or not encodable: no retry helps.
            error_type = "PayloadTooLarge" if exc.too_large else "UnencodablePayload"
            await self._fail_unsendable(state, step, attempt, str(exc), error_type)
            return
        await self._sender.publish_task(envelope, body=body)

    async def _fail_unsendable(self, state: ExecutionState, step: str, attempt: int, error: str, kind: str) -> None:
        failure = StepFailed(error, retryable=False, error_type=kind)
        await self._transition(
            state.tenant_id,
            state.execution_id,
            lambda s: advance.on_step_finished(s, step, attempt, failure, self._clock()),
        )


def parse_step_task_id(execution_id: str, task_id: str) -> tuple[str, int] | None:
    """(step, attempt) of a step task id `<execution>:<step>:<attempt>`; None for any other task."""
    prefix = execution_id + ":"
    if not task_id.startswith(prefix):
        return None
    step, _, attempt = task_id[len(prefix) :].rpartition(":")
    if not step or not attempt.isdigit():
        return None
    return step, int(attempt)


def step_failure(event: TaskEvent) -> StepFailed:
    error_type = event.data.get("error_type")
    if event.event is EventType.TASK_CANCELLED:
        return StepFailed(str(event.data.get("reason") or "the step task was cancelled"), False, "Cancelled")
    retryable = event.data.get("retryable")
    return StepFailed(
        str(event.data.get("error") or "the step task failed"),
        retryable=retryable if isinstance(retryable, bool) else error_type not in PERMANENT_ERROR_TYPES,
        error_type=error_type if isinstance(error_type, str) else None,
    )


def step_envelope(state: ExecutionState, run: RunStep, service: str) -> TaskEnvelope:
    now = utc_now()
    context = ContextIds.model_validate(state.metadata.get(CONTEXT_KEY) or {})
    return TaskEnvelope(
        task_id=run.task_id,
        global_task_id=state.execution_id,
        tenant_id=state.tenant_id,
        session_id=state.metadata.get("session_id"),
        type=run.type,
        service=service,
        priority=state.priority,
        created_at=now,
        deadline=TaskEnvelope.deadline_for(run.timeout_ms, now),
        # DESIGN: the job's context ids go to every child task (a job started through POST /jobs has them).
        context=context,
        # DESIGN: metadata takes free extra keys; the worker SDK shows this one to step handlers.
        metadata=TaskMetadata.model_validate(
            {
                "source": "workflow",
                "user_id": context.user_id,
                "timeout_ms": run.timeout_ms,
                "workflow": {
                    "execution_id": state.execution_id,
                    "workflow_id": state.workflow_id,
                    "step": run.step,
                    "attempt": run.attempt,
                    "config": run.config,
                    "context": {"execution_id": state.execution_id, "dynamic_properties": run.context},
                },
            }
        ),
        payload=run.payload,
    )


def _find_run(state: ExecutionState, step: str) -> RunStep | None:
    for run in advance.pending_runs(state):
        if run.step == step:
            return run
    return None


def _reporting_attempt(state: ExecutionState, step: str) -> int:
    """The attempt an external step's report is for; checked inside the transition, so a report
    racing the step's end (or a cancel) is refused rather than applied to a step that moved on."""
    current = state.steps.get(step)
    if current is None:
        raise StepNotFound(state.execution_id, step)
    kind = next(s.kind for s in state.definition.steps if s.name == step)
    if kind != "external":
        problem = "is run by a worker, which reports through its task events"
    elif current.status is not StepStatus.RUNNING:
        problem = f"is {current.status.value}, not running"
    else:
        return current.attempt
    raise NotAllowed(
        f"step {step!r} of execution {state.execution_id} {problem}",
        execution_id=state.execution_id,
        status=state.status.value,
    )


_STEP_EVENTS: Final[frozenset[EventType]] = frozenset(
    {EventType.STEP_STARTED, EventType.STEP_PROGRESS, EventType.STEP_FINISHED}
)


def _event_data(action: Emit, state: ExecutionState) -> dict[str, Any]:
    """The event's data as clients see it, plus what the registry reads from it (status, result, error)."""
    data = dict(action.data)
    if action.event in _STEP_EVENTS:
        # The job's progress is the execution's, aggregated from its steps (the registry reads this key).
        data[EXECUTION_PROGRESS_KEY] = execution_progress(state).model_dump(exclude_none=True)
    if action.event is EventType.WORKFLOW_COMPLETED:
        data.setdefault("result", data.get("final_context"))
    elif action.event is EventType.WORKFLOW_FAILED:
        data.setdefault("status", JobStatus.FAILED.value)
        data.setdefault("error_type", "WorkflowFailed")
    return data
