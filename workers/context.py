"""TaskContext: what a handler sees of its task and of the runtime (and, for a workflow step, of its
execution: `ctx.workflow`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel

from protocol.envelope import ContextIds, TaskEnvelope, TaskMetadata
from protocol.events import Progress
from workers.config import WorkerSettings
from workers.http import ContextHttpClient
from workers.workflow_step import WorkflowStep, workflow_step


class ProgressReporter(Protocol):
    """Publishes a progress update of the task; the runtime's seam for `ctx.progress`."""

    async def __call__(self, progress: Progress) -> None: ...


class ChildCaller(Protocol):
    """Runs a child task on another service and returns its result; the seam for `ctx.call_service`."""

    async def call(
        self,
        parent: TaskEnvelope,
        service: str,
        job_type: str,
        payload: Mapping[str, Any],
        *,
        timeout_seconds: float,
        retries: int,
        priority: int | None,
    ) -> Any: ...


class JobSubmitter(Protocol):
    """Makes a job of its own for a task and returns its id; the seam for `ctx.submit_job`.
    `ordinal` numbers the calls of one handler run from 1 (with the task id, the call's idempotency key)."""

    async def submit(
        self,
        parent: TaskEnvelope,
        http: ContextHttpClient,
        job_type: str,
        payload: Mapping[str, Any],
        *,
        priority: int | None,
        ordinal: int,
    ) -> str: ...


class TaskContext:
    """The task a handler runs: its ids, propagated context, progress reporting and calls out."""

    def __init__(
        self,
        envelope: TaskEnvelope,
        *,
        settings: WorkerSettings,
        http: ContextHttpClient,
        report_progress: ProgressReporter,
        caller: ChildCaller,
        jobs: JobSubmitter,
    ) -> None:
        self._envelope = envelope
        self._settings = settings
        self._http = http
        self._report_progress = report_progress
        self._caller = caller
        self._jobs = jobs
        self._submitted = 0
        self._workflow = workflow_step(envelope.metadata)

    def __repr__(self) -> str:
        return f"TaskContext(task_id={self.task_id!r}, type={self._envelope.type!r}, tenant_id={self.tenant_id!r})"

    @property
    def envelope(self) -> TaskEnvelope:
        return self._envelope

    @property
    def tenant_id(self) -> str:
        return self._envelope.tenant_id

    @property
    def task_id(self) -> str:
        return self._envelope.task_id

    @property
    def global_task_id(self) -> str:
        return self._envelope.global_task_id

    @property
    def session_id(self) -> str | None:
        return self._envelope.session_id

    @property
    def attempt(self) -> int:
        return self._envelope.attempt

    @property
    def deadline(self) -> datetime | None:
        return self._envelope.deadline

    @property
    def context(self) -> ContextIds:
        return self._envelope.context

    @property
    def metadata(self) -> TaskMetadata:
        return self._envelope.metadata

    @property
    def workflow(self) -> WorkflowStep | None:
        """For a workflow step: the execution, workflow, step and attempt, the step's `config` and the
        execution context (`context.dynamic_properties`); None for a plain task."""
        return self._workflow

    @property
    def settings(self) -> WorkerSettings:
        """The process settings (e.g. `settings.llm`), filled by the runtime from the environment."""
        return self._settings

    @property
    def http(self) -> ContextHttpClient:
        """An HTTP client whose requests carry this task's context ids as headers."""
        return self._http

    async def progress(
        self,
        percentage: float,
        message: str | None = None,
        *,
        current_task: str | None = None,
        estimated_remaining_seconds: float | None = None,
        custom_data: dict[str, Any] | None = None,
    ) -> None:
        """Publish a task_status_update with progress; percentage is clamped to 0-100.

        Progress is advisory: if the broker cannot take it right now the runtime logs it
        and the handler carries on.
        """
        await self._report_progress(
            Progress(
                percentage=min(100.0, max(0.0, float(percentage))),
                message=message,
                current_task=current_task,
                estimated_remaining_seconds=(
                    None if estimated_remaining_seconds is None else max(0.0, estimated_remaining_seconds)
                ),
                custom_data=custom_data,
            )
        )

    async def call_service(
        self,
        service: str,
        job_type: str,
        payload: Mapping[str, Any] | BaseModel,
        *,
        timeout: float = 30.0,
        retries: int = 2,
        priority: int | None = None,
    ) -> Any:
        """Run `job_type` on `service` as a child task of this one and return its result.

        Raises ServiceCallError when the child fails or is cancelled, ServiceCallTimeout when
        no answer came within `timeout` seconds on the first try and on each of `retries`
        republished tries (only timeouts are retried: a child that answered has answered).
        """
        return await self._caller.call(
            self._envelope,
            service,
            job_type,
            _as_dict(payload),
            timeout_seconds=timeout,
            retries=retries,
            priority=priority,
        )

    async def submit_job(
        self, job_type: str, payload: Mapping[str, Any] | BaseModel, *, priority: int | None = None
    ) -> str:
        """Start `job_type` as a job of its own and return its job id at once (fire and forget).

        Unlike `call_service`, nothing waits for it: the child is created through the orchestrator
        (POST /jobs, which picks its service), may outlive this task, and is followed like any job
        (GET /jobs/{id}, the WebSockets). It carries this task's tenant, session and context ids, this
        task's priority unless `priority` is given, and metadata naming this job and task as its parent.

        Safe to repeat: a retried or redelivered run of this task gets back the jobs its earlier run
        made, call by call in the order made (the n-th call of a run is the n-th call of every run).
        Raises ChildJobRefused (a PermanentError) when the orchestrator refuses the job, e.g. an unknown
        type or an invalid payload, and OrchestratorUnavailable when it cannot be reached (retryable).
        """
        self._submitted += 1
        return await self._jobs.submit(
            self._envelope, self._http, job_type, _as_dict(payload), priority=priority, ordinal=self._submitted
        )


def _as_dict(payload: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    return payload.model_dump(mode="json") if isinstance(payload, BaseModel) else dict(payload)
