"""The Worker SDK: a service name, its concurrency, and one async handler per job type.

    worker = Worker("echo", concurrency=8)

    @worker.handler("echo_request", retry=RetryPolicy(max_retries=5), time_limit=60)
    async def echo(payload: EchoIn, ctx: TaskContext) -> dict: ...

`cache_ttl=3600` on a handler whose result is a pure function of its payload makes the orchestrator's
result cache on by default for its job type (the worker announces it in its heartbeats): an identical
job of the same tenant within the hour is answered with the stored result, and one identical to a job
still running attaches to it. Clients may still ask otherwise per job (`cache` in POST /jobs).

A workflow may be declared beside the handlers (see workers.workflows); the worker announces it and
the orchestrator offers it to every tenant:

    worker.workflow("echo_twice", name="Echo twice", steps=[step("one", "echo_request"), step("two", "echo_request")])

A step's handler sees its execution through `ctx.workflow` (None for a plain task): `execution_id`,
`workflow_id`, `step`, `attempt`, the step's `config` and the execution `context` (`execution_id`,
`dynamic_properties`: the input merged with every earlier step's returned `context`). A step's handler
may return `{"context": {...}}` to add to those properties and `{"next": "<step>"}` to pick a branch.

Limits over every process of the service, kept in Redis (see workers.runtime.flow_limits):

    worker = Worker("mailer", rate_limit="100/m", max_concurrency=20)

`rate_limit` is tasks started per second, minute or hour ("N/s", "N/m", "N/h"; or a function of the
process's WorkerSettings returning a RateLimit or None), `max_concurrency` tasks running at once. A task
over a limit waits, its message unacked, until it may start.

`track_started=False` (on a handler, or Worker-wide) leaves out the `running` announcement as the handler
starts, like Celery's `task_track_started`: a short task's job goes from `queued` straight to its outcome,
one event less. A handler still running LATE_RUNNING_SECONDS (10 s, workers.runtime.late_running) after it
started is announced then, unless a progress report has marked it running already: the job reads `queued`
for at most the first 10 s of its run. The sweeper republishes a job `queued` past BATON_STUCK_QUEUED_SECONDS
(counted from when it was queued) once the service has no ready message: keep that above a job's longest
queue wait, plus any time its delivery waits in the worker before the handler starts (for a slot of the
process's concurrency or its tenant's cap, and for the service's rate_limit or max_concurrency), plus these
10 s (the README's "Your own service" says what bounds those waits). The handler's own default, True,
announces every task as it starts.

`batch_outcomes=True`: the outcomes that handlers return in the same turn of the event loop leave as one
message per tenant, service and event kind (protocol.event_batch), confirmed once: under load one message
carries many jobs' ends, which saves RabbitMQ, the orchestrator and this process a message each. Baton's
orchestrator reads both forms; anything else subscribed to baton.events must read `x-baton-batch` messages
too, so it is off by default. With tracing on, every event keeps its own message (its trace context).

`metrics_port`: each process serves Prometheus metrics at GET /metrics on it (BATON_WORKER_METRICS_PORT
overrides it; workers.runtime.worker_metrics says what they count).

Retry policy and time limit: the handler's, else the Worker's, else the defaults (3 retries
from 0.5 s up to 10 s; 300 s). A handler running past its time limit is cancelled and the
attempt fails with `TimeLimitExceeded`, which is retried like any other error.

A handler's first parameter annotation is the payload model: the runtime validates the
envelope's payload against it (a pydantic model, or anything pydantic's TypeAdapter accepts,
such as `dict[str, Any]`) before the handler runs.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from pydantic import TypeAdapter
from pydantic.errors import PydanticSchemaGenerationError

from protocol.control import MAX_CACHE_TTL_SECONDS
from protocol.names import JOB_TYPE_PATTERN, check_service_name, is_job_type
from workers.errors import ConfigurationError
from workers.rate_limit import RateLimit, parse_rate_limit
from workers.retry import RetryPolicy
from workers.workflows import WorkflowDeclaration, declaration

if TYPE_CHECKING:
    from workers.config import WorkerSettings

HandlerFunc = Callable[..., Awaitable[Any]]
# A rate limit that depends on the process's settings (the query service's LLM_RATE_LIMIT).
RateLimitFromSettings = Callable[["WorkerSettings"], RateLimit | None]
F = TypeVar("F", bound=HandlerFunc)


DEFAULT_TIME_LIMIT_SECONDS: Final[float] = 300.0
MAX_PORT: Final[int] = 65535


@dataclass(frozen=True)
class HandlerSpec:
    """One registered handler and the adapter that validates its payload."""

    job_type: str
    func: HandlerFunc
    payload_type: Any
    adapter: TypeAdapter[Any]
    retry: RetryPolicy | None = None  # None: the Worker's
    time_limit: float | None = None  # seconds; None: the Worker's
    cache_ttl: int | None = None  # seconds the orchestrator caches a result by default; None: off
    track_started: bool | None = None  # announce `running` as the handler starts (else only late); None: the Worker's

    @property
    def name(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"

    def parse_payload(self, payload: Mapping[str, Any]) -> Any:
        """The payload as the handler's model; raises pydantic.ValidationError."""
        return self.adapter.validate_python(payload)


class Worker:
    """A service: its queue is `baton.<service>`; `concurrency` handlers run at once per process."""

    def __init__(
        self,
        service: str,
        *,
        concurrency: int = 10,
        prefetch: int | None = None,
        retry: RetryPolicy | None = None,
        time_limit: float | None = None,
        rate_limit: str | RateLimitFromSettings | None = None,
        max_concurrency: int | None = None,
        metrics_port: int | None = None,
        track_started: bool = True,
        batch_outcomes: bool = False,
    ) -> None:
        try:
            self.service = check_service_name(service)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}")
        if prefetch is not None and prefetch < 1:
            raise ConfigurationError(f"prefetch must be at least 1, got {prefetch}")
        self.concurrency = concurrency
        # Unacked messages held per process; by default exactly what can run, so no task
        # waits in one process while another process is idle.
        self.prefetch = prefetch if prefetch is not None else concurrency
        self.retry = retry if retry is not None else RetryPolicy()
        self.time_limit = _check_time_limit(time_limit) if time_limit is not None else DEFAULT_TIME_LIMIT_SECONDS
        if max_concurrency is not None and max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.max_concurrency = max_concurrency
        if metrics_port is not None and not 0 <= metrics_port <= MAX_PORT:
            raise ConfigurationError(f"metrics_port must be 0 (off) to {MAX_PORT}, got {metrics_port}")
        # GET /metrics of each process on this port; None or 0: off. BATON_WORKER_METRICS_PORT overrides it.
        self.metrics_port = metrics_port or None
        self.track_started = _check_flag("track_started", track_started)
        self.batch_outcomes = _check_flag("batch_outcomes", batch_outcomes)
        self._rate_limit = parse_rate_limit(rate_limit) if isinstance(rate_limit, str) else rate_limit
        self._handlers: dict[str, HandlerSpec] = {}
        self._workflows: dict[str, WorkflowDeclaration] = {}

    def __repr__(self) -> str:
        return f"Worker({self.service!r}, job_types={list(self._handlers)}, concurrency={self.concurrency})"

    @property
    def handlers(self) -> Mapping[str, HandlerSpec]:
        return MappingProxyType(self._handlers)

    @property
    def job_types(self) -> list[str]:
        return list(self._handlers)

    @property
    def workflows(self) -> Mapping[str, WorkflowDeclaration]:
        return MappingProxyType(self._workflows)

    def workflow(
        self,
        workflow_id: str,
        *,
        name: str,
        steps: Sequence[Mapping[str, Any]],
        on_failure: Literal["stop", "continue"] = "stop",
        output: str | None = None,
    ) -> WorkflowDeclaration:
        """Declare a workflow (steps from `workers.workflows.step`, or dicts of the same shape); the
        worker announces it when it starts. `output` is the reference whose value is an execution's
        result (`"$steps.<step>.result"`); without one, the result is the final context. Declared under
        the id of a job type this worker serves, the workflow is what `POST /jobs` of that type runs."""
        if workflow_id in self._workflows:
            raise ConfigurationError(f"workflow {workflow_id!r} is already declared on service {self.service!r}")
        declared = declaration(workflow_id, name=name, steps=steps, on_failure=on_failure, output=output)
        self._workflows[workflow_id] = declared
        return declared

    def rate_limit_for(self, settings: WorkerSettings) -> RateLimit | None:
        """The Worker's own rate limit (BATON_WORKER_RATE_LIMIT, which overrides it, is the runtime's call)."""
        return self._rate_limit(settings) if callable(self._rate_limit) else self._rate_limit

    @property
    def cache_ttls(self) -> dict[str, int]:
        """Job type -> default result-cache TTL, for the handlers that declare one."""
        return {t: spec.cache_ttl for t, spec in self._handlers.items() if spec.cache_ttl is not None}

    def handler_for(self, job_type: str) -> HandlerSpec | None:
        return self._handlers.get(job_type)

    def retry_for(self, spec: HandlerSpec) -> RetryPolicy:
        return spec.retry if spec.retry is not None else self.retry

    def time_limit_for(self, spec: HandlerSpec) -> float:
        return spec.time_limit if spec.time_limit is not None else self.time_limit

    def track_started_for(self, spec: HandlerSpec) -> bool:
        """Whether an attempt of this handler announces `running` before the handler runs."""
        return spec.track_started if spec.track_started is not None else self.track_started

    def handler(
        self,
        job_type: str,
        *,
        retry: RetryPolicy | None = None,
        time_limit: float | None = None,
        cache_ttl: int | None = None,
        track_started: bool | None = None,
    ) -> Callable[[F], F]:
        """Register `async def f(payload: Model, ctx: TaskContext)` for `job_type`."""
        if not is_job_type(job_type):
            raise ConfigurationError(f"job type {job_type!r} must match {JOB_TYPE_PATTERN}")
        limit = None if time_limit is None else _check_time_limit(time_limit)
        if cache_ttl is not None:
            _check_cache_ttl(cache_ttl)
        if track_started is not None:
            _check_flag("track_started", track_started)

        def register(func: F) -> F:
            if job_type in self._handlers:
                raise ConfigurationError(
                    f"job type {job_type!r} already has a handler on service {self.service!r}: "
                    f"{self._handlers[job_type].name}"
                )
            payload_type = payload_annotation(func)
            try:
                adapter: TypeAdapter[Any] = TypeAdapter(payload_type)
            except PydanticSchemaGenerationError as exc:
                raise ConfigurationError(
                    f"handler {func.__qualname__}: payload type {payload_type!r} cannot be validated: {exc}"
                ) from exc
            self._handlers[job_type] = HandlerSpec(
                job_type, func, payload_type, adapter, retry, limit, cache_ttl, track_started
            )
            return func

        return register


def _check_time_limit(seconds: float) -> float:
    if not seconds > 0:
        raise ConfigurationError(f"time_limit must be a positive number of seconds, got {seconds}")
    return float(seconds)


def _check_flag(name: str, value: bool) -> bool:
    if not isinstance(value, bool):  # "no" would read as True
        raise ConfigurationError(f"{name} must be True or False, got {value!r}")
    return value


def _check_cache_ttl(seconds: int) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= MAX_CACHE_TTL_SECONDS:
        raise ConfigurationError(
            f"cache_ttl must be a whole number of seconds, 1 to {MAX_CACHE_TTL_SECONDS}, got {seconds!r}"
        )


def payload_annotation(func: HandlerFunc) -> Any:
    """The annotation of the handler's first parameter, resolved with typing.get_type_hints."""
    if not inspect.iscoroutinefunction(func):
        raise ConfigurationError(f"handler {getattr(func, '__qualname__', func)!r} must be an `async def` function")
    params = [
        p for p in inspect.signature(func).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(params) != 2:
        raise ConfigurationError(f"handler {func.__qualname__} must take exactly (payload, ctx)")
    try:
        hints = typing.get_type_hints(func)
    except NameError as exc:
        # Models defined inside a function are invisible to get_type_hints under
        # `from __future__ import annotations`; say so rather than guessing.
        raise ConfigurationError(
            f"handler {func.__qualname__}: cannot resolve its annotations ({exc}); "
            "define the payload model at module level"
        ) from exc
    if params[0].name not in hints:
        raise ConfigurationError(
            f"handler {func.__qualname__}: annotate its first parameter with the payload model "
            "(or dict[str, Any] for the raw payload)"
        )
    return hints[params[0].name]
