"""`ctx.submit_job`: a child job made through the orchestrator's front door, `POST /jobs`.

The worker speaks with its own service's token (BATON_SERVICE_TOKEN) for the parent task's tenant
(`X-Baton-Tenant`); the task's context headers (`workers.http.context_headers`) name the parent job
and task and carry its request id. Quotas, the result cache and validation apply as for any client's
job, and the child is a job like any other: GET /jobs/{id}, the WebSockets and the dashboard follow it.

Safe to repeat: the idempotency key is `<parent task id>:<n>`, n counting the handler run's
`submit_job` calls from 1. A retried or redelivered task keeps its task id, so its next run finds the
jobs the earlier one made instead of making them twice. That is also why the POST goes out as an
idempotent call of `ctx.http`: through the orchestrator's circuit breaker, and sent again after a 429, a
5xx or a lost connection as that client's rules say (Retry-After, backoff, the task's time budget).
What is still a failure then is OrchestratorUnavailable (the task may be retried); any other refusal
is ChildJobRefused with the orchestrator's detail, and the task fails for good.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from protocol.envelope import TaskEnvelope
from workers.errors import ChildJobRefused, CircuitOpenError, HttpConnectionError, OrchestratorUnavailable
from workers.http import ContextHttpClient, HttpResponse
from workers.upstream_retry import is_upstream_failure

TENANT_HEADER: Final[str] = "X-Baton-Tenant"
JOBS_PATH: Final[str] = "/jobs"
_DETAIL_CHARS: Final[int] = 500


def idempotency_key(parent: TaskEnvelope, ordinal: int) -> str:
    """The same for every run of the parent task, different for each of its calls."""
    return f"{parent.task_id}:{ordinal}"


def child_job_request(
    parent: TaskEnvelope, job_type: str, payload: Mapping[str, Any], *, priority: int | None, ordinal: int
) -> dict[str, Any]:
    """The POST /jobs body: the parent's session, context ids and (unless given) priority."""
    body: dict[str, Any] = {
        "type": job_type,
        "payload": dict(payload),
        "priority": parent.priority if priority is None else priority,
        "context": parent.context.model_dump(exclude_none=True),
        "idempotency_key": idempotency_key(parent, ordinal),
    }
    if parent.session_id is not None:
        body["session_id"] = parent.session_id
    return body


class OrchestratorJobs:
    """The real `JobSubmitter` (workers.context): POST /jobs on BATON_ORCHESTRATOR_URL."""

    def __init__(self, base_url: str, service: str, token: str | None) -> None:
        self._url = base_url.rstrip("/") + JOBS_PATH
        self._service = service
        self._token = token

    async def submit(
        self,
        parent: TaskEnvelope,
        http: ContextHttpClient,
        job_type: str,
        payload: Mapping[str, Any],
        *,
        priority: int | None,
        ordinal: int,
    ) -> str:
        if self._token is None:
            raise ChildJobRefused(
                job_type,
                0,
                "no_service_token",
                f"BATON_SERVICE_TOKEN has no token for service {self._service!r} (entries are service:token)",
            )
        body = child_job_request(parent, job_type, payload, priority=priority, ordinal=ordinal)
        headers = {"Authorization": f"Bearer {self._token}", TENANT_HEADER: parent.tenant_id}
        try:
            response = await http.request("POST", self._url, json=body, headers=headers, idempotent=True)
        except (HttpConnectionError, CircuitOpenError) as exc:
            raise OrchestratorUnavailable(job_type, self._url, str(exc)) from exc
        if response.ok:
            return _job_id(job_type, response)
        code, detail = _api_error(response)
        if is_upstream_failure(response.status):
            tries = f" after {response.attempts} attempts" if response.attempts > 1 else ""
            raise OrchestratorUnavailable(job_type, self._url, f"{response.status} {code}{tries}: {detail}")
        raise ChildJobRefused(job_type, response.status, code, detail)


def _job_id(job_type: str, response: HttpResponse) -> str:
    try:
        job_id = response.json()["job_id"]
    except (ValueError, TypeError, KeyError):
        job_id = None
    if not isinstance(job_id, str):
        excerpt = response.text()[:_DETAIL_CHARS]
        raise ChildJobRefused(job_type, response.status, "unexpected_answer", f"no job_id in the answer: {excerpt}")
    return job_id


def _api_error(response: HttpResponse) -> tuple[str, str]:
    """The API's {error, detail}; the body's start when it is not one (a proxy's page, another server)."""
    try:
        parsed = response.json()
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or "error" not in parsed:
        return f"http_{response.status}", response.text()[:_DETAIL_CHARS]
    detail = parsed.get("detail")
    text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)
    return str(parsed["error"]), text[:_DETAIL_CHARS]
