"""Baton workers: the Worker SDK, its runtime, and the built-in services.

    from workers import Worker, TaskContext

    worker = Worker("echo", concurrency=8)

    @worker.handler("echo_request")
    async def echo(payload: EchoIn, ctx: TaskContext) -> dict: ...

Run with `python -m workers mypackage.echo:worker`.
"""

from workers.config import LlmSettings, WorkerSettings
from workers.context import TaskContext
from workers.errors import (
    BrokerError,
    ChildJobRefused,
    CircuitOpenError,
    ConfigurationError,
    DeadlineExceeded,
    HttpConnectionError,
    HttpError,
    HttpStatusError,
    OrchestratorUnavailable,
    PermanentError,
    ServiceCallError,
    ServiceCallTimeout,
    TimeLimitExceeded,
    UnroutableError,
    WorkerError,
)
from workers.http import ContextHttpClient, HttpResponse
from workers.retry import RetryPolicy
from workers.sdk import HandlerSpec, Worker
from workers.workflow_step import ExecutionContext, WorkflowStep
from workers.workflows import WorkflowDeclaration, step

__all__ = [
    "BrokerError",
    "ChildJobRefused",
    "CircuitOpenError",
    "ConfigurationError",
    "ContextHttpClient",
    "DeadlineExceeded",
    "ExecutionContext",
    "HandlerSpec",
    "HttpConnectionError",
    "HttpError",
    "HttpResponse",
    "HttpStatusError",
    "LlmSettings",
    "OrchestratorUnavailable",
    "PermanentError",
    "RetryPolicy",
    "ServiceCallError",
    "ServiceCallTimeout",
    "TaskContext",
    "TimeLimitExceeded",
    "UnroutableError",
    "Worker",
    "WorkerError",
    "WorkerSettings",
    "WorkflowDeclaration",
    "WorkflowStep",
    "step",
]
