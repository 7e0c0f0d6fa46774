"""The route table: every route of the API once, with the method that serves it and its documentation.

Registration (`add_routes`) and the OpenAPI document (`openapi_document`) both read this table,
so a route cannot be served undocumented or documented without being served. Order matters where
patterns overlap: /jobs/batch and /jobs/agent/... before /jobs/{job_id}; /ws/task_updates and
/ws/jobs/{job_id} before /ws/{execution_id}.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from orchestrator.http.cache_routes import CacheRoutes
from orchestrator.http.dead_letter_routes import DeadLetterRoutes
from orchestrator.http.docs_routes import DocsRoutes
from orchestrator.http.execution_routes import ExecutionRoutes
from orchestrator.http.identity_routes import Identity, IdentityRoutes
from orchestrator.http.job_creator import PARENT_JOB_HEADER, PARENT_TASK_HEADER, TENANT_HEADER
from orchestrator.http.job_event_routes import JobEventRoutes, JobEvents, JobEventsQuery
from orchestrator.http.job_routes import JobRoutes
from orchestrator.http.openapi import Header, Operation, Response, build_openapi
from orchestrator.http.overview_routes import OverviewRoutes
from orchestrator.http.schemas import (
    AgentExecuteRequest,
    BatchRequest,
    BatchResponse,
    CacheCleared,
    CancelResponse,
    DeadLetterList,
    DeadLetterQuery,
    ErrorBody,
    HealthReport,
    JobAccepted,
    JobCreateRequest,
    JobDetailView,
    JobFailedBody,
    JobList,
    JobListQuery,
    JobQuery,
    JobResult,
    JobSpec,
    QueuesReport,
    QuotaExceededBody,
    ReplayRequest,
    ReplayResponse,
    StatsQuery,
    StatsReport,
    UnavailableBody,
    UnknownJobTypeBody,
)
from orchestrator.http.system_routes import SystemRoutes
from orchestrator.http.workflow_routes import WorkflowRoutes
from orchestrator.http.workflow_schemas import (
    ControlNotAllowedBody,
    ExecuteRequest,
    ExecutionAccepted,
    ExecutionList,
    ExecutionListQuery,
    LegacyExecuteRequest,
    StepCompleteRequest,
    StepProgressRequest,
    StepReportAnswer,
    WorkflowList,
    WorkflowView,
)
from orchestrator.live.websocket import WebSocketEndpoint
from orchestrator.workflows.definition import WorkflowDefinition
from orchestrator.workflows.status import ExecutionStatusView, ExecutionStepsView

UnboundHandler = Callable[[Any, web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    handler: UnboundHandler  # a method of a route class, bound to its instance by add_routes
    operation: Operation
    match: str | None = None  # the router's pattern, where it is stricter than the documented path


_UNAUTHORIZED = Response("missing or invalid API key", ErrorBody)
_FORBIDDEN = Response("the key has no tenant (admin key or service token)", ErrorBody)
_NOT_FOUND = Response("no such job for this tenant", ErrorBody)
_INVALID = Response("invalid body or query (pydantic's error list in detail)", ErrorBody)
_BAD_JSON = Response("the body is not JSON", ErrorBody)
# GET /jobs/{job_id} and its /status alias answer alike.
_JOB_DETAIL_RESPONSES: Final[dict[int, Response]] = {
    200: Response("the job (with `payload` when asked for)", JobDetailView),
    401: _UNAUTHORIZED,
    403: _FORBIDDEN,
    404: _NOT_FOUND,
    422: Response("an unknown query parameter, or an include other than payload", ErrorBody),
}
_TOO_LARGE = Response("the body is over the size cap", ErrorBody)
_UNAVAILABLE = Response("RabbitMQ or Redis is down, or the broker did not confirm; see Retry-After", ErrorBody)
_OVER_QUOTA = Response(
    "over the tenant's job creation quota (a token per job; nothing was created): retry after Retry-After seconds; "
    "none when the request asks for more jobs than the quota's burst",
    QuotaExceededBody,
    retry_after=True,
)
_CREATE_RESPONSES: Final[dict[int, Response]] = {
    200: Response(
        "the job is terminal: a result-cache hit (from_cache), a replay of a finished job, or it ended within `wait`",
        JobAccepted,
    ),
    202: Response(
        "accepted: the job is queued or running (coalesced: an identical job that was running already)", JobAccepted
    ),
    400: _BAD_JSON,
    401: _UNAUTHORIZED,
    403: _FORBIDDEN,
    409: Response("the idempotency key was used with a different body", ErrorBody),
    413: _TOO_LARGE,
    422: Response(
        "invalid body, a job type no service serves (with the known types), or `cache` asked of a job type that runs "
        "as a workflow (cache_unsupported)",
        UnknownJobTypeBody,
    ),
    429: _OVER_QUOTA,
    503: Response(
        "RabbitMQ or Redis is down, or the broker did not confirm (publish_unconfirmed: the job was kept and may "
        "still run, see job_id); see Retry-After",
        UnavailableBody,
    ),
}
_WS_RESPONSES: Final[dict[int, Response]] = {
    101: Response("switching to the WebSocket protocol"),
    400: Response("not a WebSocket upgrade request", ErrorBody),
    401: Response("an invalid API key or ?token=", ErrorBody),
    403: Response("a browser's upgrade from an origin that is not allowed (BATON_ALLOWED_ORIGINS)", ErrorBody),
}
_NO_ROUTE = Response("no such route (an empty path parameter)", ErrorBody)
_NO_WORKFLOW = Response("no such workflow for this tenant", ErrorBody)
_NO_EXECUTION = Response("no such execution for this tenant (another tenant's answers the same)", ErrorBody)
_EXECUTE_RESPONSES: Final[dict[int, Response]] = {
    200: Response("the idempotency key had started this execution already", ExecutionAccepted),
    202: Response("started: follow it at tracking_url or websocket_url", ExecutionAccepted),
    400: _BAD_JSON,
    401: _UNAUTHORIZED,
    403: _FORBIDDEN,
    404: _NO_WORKFLOW,
    409: Response("the idempotency key started an execution of another workflow", ErrorBody),
    413: _TOO_LARGE,
    422: _INVALID,
    429: _OVER_QUOTA,
    503: _UNAVAILABLE,
}
_STATUS_VIEW = Response("the execution's status, after the control", ExecutionStatusView)
_NOT_ALLOWED = Response("the control does not fit the execution's status (in `status`)", ControlNotAllowedBody)
_REPORT_RESPONSES: Final[dict[int, Response]] = {
    200: Response("applied: the step's and the execution's status after it", StepReportAnswer),
    400: _BAD_JSON,
    401: _UNAUTHORIZED,
    403: Response("the admin key, or a service token of another service than the step's", ErrorBody),
    404: Response("no such execution for this tenant (or the token's service), or no such step", ErrorBody),
    409: Response("the step is not external, or not running", ControlNotAllowedBody),
    413: _TOO_LARGE,
    422: _INVALID,
    503: _UNAVAILABLE,
}
_REPORTER_DESCRIPTION: Final[str] = (
    "With the tenant's key, or a service token: the token's service must be the step's `config.service`, or, "
    "when it sets none, the service announced for the step's job type. Only external steps take reports, "
    "and only while running."
)

ROUTES: Final[tuple[Route, ...]] = (
    Route(
        JobRoutes.create_job,
        Operation(
            "post",
            "/jobs",
            "Create a job",
            {
                **_CREATE_RESPONSES,
                400: Response(
                    "the body is not JSON; or a service token without a well-formed X-Baton-Tenant or X-Global-Task-Id",
                    ErrorBody,
                ),
                403: Response(
                    "the admin key; a tenant key naming another tenant in X-Baton-Tenant; a service token whose "
                    "parent job is not running in that tenant",
                    ErrorBody,
                ),
            },
            body=JobCreateRequest,
            description="The job is recorded, then its task is published to its service queue. With `wait` the "
            "call holds on until the job ends or `wait` seconds pass; a job that failed within `wait` answers 200 "
            "with its status and error. A service token (a worker's `ctx.submit_job`) creates a job for one of its "
            "tasks: X-Baton-Tenant names the task's tenant and X-Global-Task-Id its job, which must be running "
            "there; the new job's `parent` names them. With the result cache on (`cache`), a result stored for the "
            "same tenant, type and payload answers 200 at once (`from_cache`), and an identical job still running is "
            "attached to (202, `coalesced`: `wait` waits for it, and its failure is this request's).",
            headers=(
                Header(TENANT_HEADER, "with a service token: the tenant to create the job for"),
                Header(PARENT_JOB_HEADER, "with a service token: the parent task's job (running, in that tenant)"),
                Header(PARENT_TASK_HEADER, "with a service token: the parent task"),
            ),
        ),
    ),
    Route(
        JobRoutes.list_jobs,
        Operation(
            "get",
            "/jobs",
            "List the tenant's jobs, newest first",
            {200: Response("one page of jobs", JobList), 401: _UNAUTHORIZED, 403: _FORBIDDEN, 422: _INVALID},
            query=JobListQuery,
        ),
    ),
    Route(
        JobRoutes.create_batch,
        Operation(
            "post",
            "/jobs/batch",
            "Create up to 1,000 jobs",
            {
                200: Response("one entry per item, in order: a job id or an error", BatchResponse),
                400: _BAD_JSON,
                401: _UNAUTHORIZED,
                403: _FORBIDDEN,
                413: _TOO_LARGE,
                422: _INVALID,
                429: _OVER_QUOTA,
                503: _UNAVAILABLE,
            },
            body=BatchRequest,
            description=(
                "Each item of `jobs` is a JobSpec, validated, encoded and size-checked on its own: an item that fails "
                "is that entry's error (validation_error, unknown_job_type, unencodable_payload, payload_too_large) "
                "and the others are still created. The body is at most 2 MiB (413 otherwise): a batch carries many "
                "small jobs; a large one goes alone through POST /jobs (1 MiB). Each item costs a token of the "
                "tenant's job creation quota: a batch over it is refused whole (429)."
            ),
            extra_models=(JobSpec,),
        ),
    ),
    Route(
        JobRoutes.execute_agent,
        Operation(
            "post",
            "/jobs/agent/{agent_id}/execute",
            "Run an agent (an agent_execution job)",
            {**_CREATE_RESPONSES, 404: _NO_ROUTE},
            body=AgentExecuteRequest,
        ),
    ),
    Route(
        JobRoutes.get_job,
        Operation(
            "get",
            "/jobs/{job_id}",
            "A job's record: status, progress, delegated services, result or error (?include=payload: its payload)",
            _JOB_DETAIL_RESPONSES,
            query=JobQuery,
            description="The record leaves the payload out: it may be large (up to the message cap) and most "
            "readers poll the status. ?include=payload adds it, read in the same Redis round trip as the record; "
            "null when the job's task is no longer kept.",
        ),
        match="/jobs/{job_id:(?!batch$)[^/]+}",
    ),
    Route(
        JobRoutes.get_job,
        Operation(
            "get",
            "/jobs/{job_id}/status",
            "Alias of GET /jobs/{job_id}",
            _JOB_DETAIL_RESPONSES,
            query=JobQuery,
        ),
    ),
    Route(
        JobRoutes.get_result,
        Operation(
            "get",
            "/jobs/{job_id}/result",
            "A job's result",
            {
                200: Response("completed: the result", JobResult),
                202: Response("not finished yet: status and progress", JobResult),
                401: _UNAUTHORIZED,
                403: _FORBIDDEN,
                404: _NOT_FOUND,
                409: Response("the job failed, was cancelled or timed out: its error", JobFailedBody),
            },
        ),
    ),
    Route(
        JobEventRoutes.job_events,
        Operation(
            "get",
            "/jobs/{job_id}/events",
            "A job's kept events after a seq (the WebSocket's resume, by polling)",
            {
                200: Response("the events, and whether the history still reaches back to since + 1", JobEvents),
                401: _UNAUTHORIZED,
                403: _FORBIDDEN,
                404: _NOT_FOUND,
                422: Response("invalid since or limit, or since past the job's seq (since_beyond_job)", ErrorBody),
                503: _UNAVAILABLE,
            },
            query=JobEventsQuery,
            description="The orchestrator keeps each job's last BATON_EVENT_HISTORY_MAX events (default 500) as "
            "long as the job's record. Page on with since = the last event's seq; when complete is false, "
            "events were missed: GET /jobs/{job_id} for the current state.",
        ),
    ),
    Route(
        JobRoutes.cancel_job,
        Operation(
            "post",
            "/jobs/{job_id}/cancel",
            "Cancel a queued or running job",
            {
                200: Response("cancelled; workers are told to stop it", CancelResponse),
                401: _UNAUTHORIZED,
                403: _FORBIDDEN,
                404: _NOT_FOUND,
                409: Response("the job already ended; `status` says how", ErrorBody),
            },
        ),
    ),
    Route(
        JobRoutes.retry_job,
        Operation(
            "post",
            "/jobs/{job_id}/retry",
            "Run a failed, timed out or cancelled job again, as a new job",
            {
                202: Response("the new job is queued (its record's retry_of names this job)", JobAccepted),
                401: _UNAUTHORIZED,
                403: _FORBIDDEN,
                404: _NOT_FOUND,
                409: Response(
                    "not_retryable: the job is queued, running, retrying or completed (`status`), or it is a "
                    "workflow execution (`retry_url`: POST /executions/{execution_id}/retry)",
                    ErrorBody,
                ),
                422: Response("no service serves the job's type any more (with the known types)", UnknownJobTypeBody),
                429: _OVER_QUOTA,
                503: _UNAVAILABLE,
            },
            description="The new job has the old one's type, payload, priority, session, context and timeout, and "
            "goes through the same path as POST /jobs: the tenant's quota, the job type's service as routed now, "
            "and never the result cache (a retry must run). The old job stays as it ended.",
        ),
    ),
    Route(
        CacheRoutes.clear,
        Operation(
            "delete",
            "/cache/{type}",
            "Clear the tenant's result-cache entries of a job type",
            {
                200: Response("cleared: how many entries there were", CacheCleared),
                401: _UNAUTHORIZED,
                403: _FORBIDDEN,
                422: Response("not a valid job type", ErrorBody),
                503: _UNAVAILABLE,
            },
            tags=("cache",),
            description="Other tenants' entries, and other types', stay. Jobs still running store their result "
            "when they complete.",
        ),
    ),
    Route(
        WorkflowRoutes.put_workflow,
        Operation(
            "put",
            "/workflows/{workflow_id}",
            "Store (or replace) a workflow definition",
            {
                200: Response("replaced: the stored definition", WorkflowView),
                201: Response("created: the stored definition", WorkflowView),
                400: _BAD_JSON,
                401: _UNAUTHORIZED,
                403: _FORBIDDEN,
                413: _TOO_LARGE,
                422: Response(
                    "invalid_workflow: every reason as {loc, msg, type} (a cycle, an unknown step or job type, a "
                    "duplicate step name, ...); validation_error: a bad workflow id",
                    ErrorBody,
                ),
                503: _UNAVAILABLE,
            },
            body=WorkflowDefinition,
            tags=("workflows",),
            description="Executions under way keep the definition they started with.",
        ),
    ),
    Route(
        WorkflowRoutes.list_workflows,
        Operation(
            "get",
            "/workflows",
            "List the tenant's workflow definitions, by id",
            {200: Response("every definition", WorkflowList), 401: _UNAUTHORIZED, 403: _FORBIDDEN},
            tags=("workflows",),
        ),
    ),
    Route(
        WorkflowRoutes.get_workflow,
        Operation(
            "get",
            "/workflows/{workflow_id}",
            "A workflow definition",
            {200: Response("the definition", WorkflowView), 401: _UNAUTHORIZED, 403: _FORBIDDEN, 404: _NO_WORKFLOW},
            tags=("workflows",),
        ),
    ),
    Route(
        WorkflowRoutes.delete_workflow,
        Operation(
            "delete",
            "/workflows/{workflow_id}",
            "Delete a workflow definition",
            {204: Response("deleted"), 401: _UNAUTHORIZED, 403: _FORBIDDEN, 404: _NO_WORKFLOW},
            tags=("workflows",),
            description="Executions under way keep running on their own copy.",
        ),
    ),
    Route(
        WorkflowRoutes.execute,
        Operation(
            "post",
            "/workflows/{workflow_id}/execute-async",
            "Start an execution of a workflow",
            _EXECUTE_RESPONSES,
            body=ExecuteRequest,
            tags=("workflows", "executions"),
            description="An execution is a job: its execution_id is its job_id, so the jobs API and every "
            "WebSocket follow it too.",
        ),
    ),
    Route(
        WorkflowRoutes.execute_legacy,
        Operation(
            "post",
            "/execute-async/",
            "Start an execution (older clients: the workflow id in the body)",
            _EXECUTE_RESPONSES,
            body=LegacyExecuteRequest,
            tags=("workflows", "executions"),
        ),
    ),
    Route(
        ExecutionRoutes.list_executions,
        Operation(
            "get",
            "/executions",
            "List the tenant's executions, newest first",
            {
                200: Response("one page of executions", ExecutionList),
                401: _UNAUTHORIZED,
                403: _FORBIDDEN,
                422: _INVALID,
            },
            query=ExecutionListQuery,
            tags=("executions",),
        ),
    ),
    Route(
        ExecutionRoutes.status,
        Operation(
            "get",
            "/executions/{execution_id}/status",
            "An execution's status: progress, current steps, history, context",
            {
                200: Response("the execution", ExecutionStatusView),
                401: _UNAUTHORIZED,
                403: _FORBIDDEN,
                404: _NO_EXECUTION,
            },
            tags=("executions",),
        ),
    ),
    Route(
        ExecutionRoutes.steps,
        Operation(
            "get",
            "/executions/{execution_id}/steps",
            "An execution's steps with their state",
            {
                200: Response("every step, in listing order", ExecutionStepsView),
                401: _UNAUTHORIZED,
                403: _FORBIDDEN,
                404: _NO_EXECUTION,
            },
            tags=("executions",),
        ),
    ),
    Route(
        ExecutionRoutes.continue_execution,
        Operation(
            "post",
            "/executions/{execution_id}/continue",
            "Send the steps a manual execution holds",
            {200: _STATUS_VIEW, 401: _UNAUTHORIZED, 403: _FORBIDDEN, 404: _NO_EXECUTION, 409: _NOT_ALLOWED},
            tags=("executions",),
        ),
    ),
    Route(
        ExecutionRoutes.cancel,
        Operation(
            "post",
            "/executions/{execution_id}/cancel",
            "Cancel the running steps and skip the rest",
            {200: _STATUS_VIEW, 401: _UNAUTHORIZED, 403: _FORBIDDEN, 404: _NO_EXECUTION, 409: _NOT_ALLOWED},
            tags=("executions",),
        ),
    ),
    Route(
        ExecutionRoutes.retry,
        Operation(
            "post",
            "/executions/{execution_id}/retry",
            "Run a failed execution's failed steps again, keeping finished steps' results",
            {200: _STATUS_VIEW, 401: _UNAUTHORIZED, 403: _FORBIDDEN, 404: _NO_EXECUTION, 409: _NOT_ALLOWED},
            tags=("executions",),
        ),
    ),
    Route(
        ExecutionRoutes.step_progress,
        Operation(
            "post",
            "/executions/{execution_id}/steps/{step}/progress",
            "An external step's progress",
            _REPORT_RESPONSES,
            body=StepProgressRequest,
            tags=("executions",),
            description=_REPORTER_DESCRIPTION,
        ),
    ),
    Route(
        ExecutionRoutes.step_complete,
        Operation(
            "post",
            "/executions/{execution_id}/steps/{step}/complete",
            "An external step's outcome",
            _REPORT_RESPONSES,
            body=StepCompleteRequest,
            tags=("executions",),
            description=_REPORTER_DESCRIPTION + " A failure is retried per the step's `retry`, as a new attempt.",
        ),
    ),
    Route(
        DeadLetterRoutes.list_dead_letters,
        Operation(
            "get",
            "/dead-letters/{service}",
            "List a service's parked tasks (baton.<service>.dead)",
            {
                200: Response("one page of parked tasks", DeadLetterList),
                401: _UNAUTHORIZED,
                403: Response("a service token", ErrorBody),
                404: Response("not a valid service name", ErrorBody),
                422: _INVALID,
                503: _UNAVAILABLE,
            },
            query=DeadLetterQuery,
            tags=("dead letters",),
            description="A tenant sees its own parked tasks; the admin key sees every tenant's, undecodable "
            "messages included. The queue is read without removing anything; one scan is bounded in "
            "messages and time (`truncated` says when it stopped early).",
        ),
    ),
    Route(
        DeadLetterRoutes.replay_dead_letters,
        Operation(
            "post",
            "/dead-letters/{service}/replay",
            "Replay parked tasks as new attempts of their jobs",
            {
                200: Response("the tasks replayed, and per-item errors", ReplayResponse),
                400: _BAD_JSON,
                401: _UNAUTHORIZED,
                403: Response("a service token", ErrorBody),
                404: Response("not a valid service name", ErrorBody),
                413: _TOO_LARGE,
                422: _INVALID,
                503: _UNAVAILABLE,
            },
            body=ReplayRequest,
            tags=("dead letters",),
            description="Each selected parked task is published again with attempt + 1 (confirmed) and then "
            "removed from the dead-letter queue; its job goes back to `queued`, and the new attempt's events "
            "reach the job's subscribers. Undecodable messages, and tasks of completed or cancelled jobs, "
            "are not replayed (per-item errors).",
        ),
    ),
    Route(
        WebSocketEndpoint.task_updates,
        Operation(
            "get",
            "/ws/task_updates",
            "WebSocket: live updates of the tenant's jobs",
            _WS_RESPONSES,
            optional_auth=True,
            tags=("websocket",),
            description="Authenticate with the Bearer header or `?token=`. Send {type: subscribe, job_ids: [...]} or "
            "{type: subscribe, all: true}, unsubscribe, cancel_job, ping; the server sends connection_established, "
            "each subscribed job's current state, then its events as they happen (each with the job's seq and "
            "job_status). With since: {job_id: seq} (with all: true, for jobs the client knows) a job's events after "
            "that seq replace its state when the server still keeps them all. Over a cap of this server (sockets "
            "per tenant, in all, or waiting for their auth message) the socket gets an error message naming the cap "
            "and is closed with 1013; a client sending faster than its message rate, with 1008. With ?batch=1 (on "
            "every /ws/ route) the messages waiting together for the socket come as one frame {type: events, "
            "events: [...]}, each as it would come alone, in order; a message waiting alone comes alone.",
        ),
    ),
    Route(
        WebSocketEndpoint.one_job,
        Operation(
            "get",
            "/ws/jobs/{job_id}",
            "WebSocket: one job's events (?since=N: those after seq N first, when still kept)",
            {**_WS_RESPONSES, 404: _NO_ROUTE},
            optional_auth=True,
            tags=("websocket",),
        ),
    ),
    Route(
        WebSocketEndpoint.one_execution,
        Operation(
            "get",
            "/ws/{execution_id}",
            "WebSocket: one job's (or workflow execution's) events (?since=N as on /ws/jobs/{job_id})",
            {**_WS_RESPONSES, 404: _NO_ROUTE},
            optional_auth=True,
            tags=("websocket",),
        ),
    ),
    Route(
        IdentityRoutes.whoami,
        Operation(
            "get",
            "/whoami",
            "What kind of key the request carries: a tenant's (and which), the admin key, or a service token",
            {200: Response("the key's role and tenant", Identity), 401: _UNAUTHORIZED},
            tags=("operations",),
            description="Any valid key may ask. A client shows the views its key can use without probing a "
            "route for a 403.",
        ),
    ),
    Route(
        SystemRoutes.health,
        Operation(
            "get",
            "/health",
            "Broker, Redis, and per service queue depth, consumers and live workers",
            {
                200: Response("broker and Redis are up", HealthReport),
                503: Response("a dependency is down", HealthReport),
            },
            auth=False,
            tags=("operations",),
        ),
    ),
    Route(
        OverviewRoutes.queues,
        Operation(
            "get",
            "/queues",
            "Per service: queue depth, consumers, dead letters, rates over the last minute, live workers",
            {
                200: Response("every service shown (see `services`), by name", QueuesReport),
                401: _UNAUTHORIZED,
                403: Response("a service token", ErrorBody),
            },
            tags=("operations",),
            description="The admin key sees every tenant's figures; a tenant key its own where they are per "
            "tenant (its lane's depth, its parked tasks, its rates) and the shared ones (consumers, workers). "
            "A figure the broker or Redis could not give in time is null.",
        ),
    ),
    Route(
        OverviewRoutes.stats,
        Operation(
            "get",
            "/stats",
            "Jobs made and ended, and their latency, per minute",
            {
                200: Response("one bucket per minute, oldest first, and the totals", StatsReport),
                401: _UNAUTHORIZED,
                403: Response("a service token", ErrorBody),
                422: _INVALID,
                503: _UNAVAILABLE,
            },
            query=StatsQuery,
            tags=("operations",),
            description="Kept in Redis for 25 hours (they survive orchestrator restarts, and every replica adds to "
            "them). A tenant key sees its tenant's; the admin key every tenant's summed. Latency is the time "
            "from a job's creation to its end, read from a histogram with fixed bounds "
            "(`latency_bucket_bounds_ms`).",
        ),
    ),
    Route(
        SystemRoutes.metrics,
        Operation(
            "get",
            "/metrics",
            "Prometheus metrics",
            {200: Response("the text exposition format", content_type="text/plain")},
            auth=False,
            tags=("operations",),
        ),
    ),
    Route(
        SystemRoutes.openapi,
        Operation(
            "get",
            "/openapi.json",
            "This document",
            {200: Response("OpenAPI 3.1")},
            auth=False,
            tags=("operations",),
        ),
    ),
    Route(
        DocsRoutes.page,
        Operation(
            "get",
            "/docs",
            "Swagger UI over /openapi.json, served offline",
            {200: Response("HTML", content_type="text/html")},
            auth=False,
            tags=("operations",),
            description="Every file the page loads is served by the orchestrator (GET /docs/{name}): no CDN. "
            "Authorize with a key to try the routes from the page.",
        ),
    ),
    Route(
        DocsRoutes.asset,
        Operation(
            "get",
            "/docs/{name}",
            "A file of the Swagger UI page (its script, stylesheet and icons)",
            {
                200: Response("the file (JavaScript, CSS or PNG)", content_type="application/octet-stream"),
                404: Response("not a file of the page", ErrorBody),
                503: Response("Swagger UI's files are not installed", ErrorBody),
            },
            auth=False,
            tags=("operations",),
        ),
    ),
    Route(
        SystemRoutes.dashboard,
        Operation(
            "get",
            "/",
            "The live dashboard page",
            {200: Response("HTML", content_type="text/html")},
            auth=False,
            tags=("operations",),
        ),
    ),
    Route(
        SystemRoutes.static_file,
        Operation(
            "get",
            "/static/{name}",
            "A static file: the JS client (baton.js, its types baton.d.ts) and the dashboard's files",
            {
                200: Response("the file, with its ETag; Cache-Control: no-cache (revalidate)", content_type="*/*"),
                304: Response("If-None-Match named the file's current ETag"),
                404: Response("no such file", ErrorBody),
            },
            auth=False,
            tags=("operations",),
            description="`import { Baton } from '/static/baton.js'` in a page of this origin: a dependency-free "
            'ES module (DESIGN "Clients"). Only files of the packaged folders are served, by plain name.',
        ),
    ),
)


def openapi_document(routes: tuple[Route, ...] = ROUTES) -> dict[str, Any]:
    return build_openapi(tuple(route.operation for route in routes))


def add_routes(router: web.UrlDispatcher, handlers: Iterable[object], routes: tuple[Route, ...] = ROUTES) -> None:
    """Register every route of the table on the method of the handler object of its class."""
    by_class = {type(handler).__qualname__: handler for handler in handlers}
    unused = set(by_class)
    for route in routes:
        owner, _, name = route.handler.__qualname__.partition(".")
        if owner not in by_class:
            raise ValueError(f"no {owner} given for {route.operation.method.upper()} {route.operation.path}")
        unused.discard(owner)
        bound = getattr(by_class[owner], name)
        path = route.match or route.operation.path
        if route.operation.method == "get":
            router.add_get(path, bound)  # HEAD too, as aiohttp's add_get does
        else:
            router.add_route(route.operation.method.upper(), path, bound)
    if unused:
        raise ValueError(f"handlers no route uses: {sorted(unused)}")
