"""GET /jobs/{job_id}/events: a job's kept events after a seq, for clients that poll instead of a WebSocket."""

from __future__ import annotations

from typing import Final

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.auth import Authenticator
from orchestrator.http.errors import ApiError
from orchestrator.http.request import require_tenant, validate_query
from orchestrator.store.event_history import EventHistory, HistoryRead
from orchestrator.store.scripts import MAX_SEQ
from protocol.codec import compact_json

DEFAULT_EVENTS_LIMIT: Final[int] = 500
MAX_EVENTS_LIMIT: Final[int] = 1000


class JobEventsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: int = Field(default=0, ge=0, le=MAX_SEQ, description="the last seq the client has: events after it")
    limit: int = Field(default=DEFAULT_EVENTS_LIMIT, ge=1, le=MAX_EVENTS_LIMIT)


class JobEvents(BaseModel):
    job_id: str
    seq: int = Field(description="the job's current seq")
    events: list[dict[str, object]] = Field(
        description="the kept client events with seq > since, oldest first (TaskEvent JSON with the job's seq and "
        "job_status); page on with since = the last one's seq"
    )
    complete: bool = Field(
        description="false when the history no longer reaches back to since + 1: events were missed, read the job "
        "record (GET /jobs/{job_id}) for the current state"
    )


class JobEventRoutes:
    def __init__(self, history: EventHistory, authenticator: Authenticator) -> None:
        self._history = history
        self._auth = authenticator

    async def job_events(self, request: web.Request) -> web.Response:
        tenant_id = require_tenant(self._auth, request)
        job_id = request.match_info["job_id"]
        query = validate_query(JobEventsQuery, request.query)
        page = await self._history.after(tenant_id, job_id, query.since, query.limit)
        if page.outcome is HistoryRead.NOT_FOUND:
            raise ApiError(404, "job_not_found", f"job {job_id} not found")
        if page.outcome is HistoryRead.BEYOND:
            raise ApiError(
                422,
                "since_beyond_job",
                f"since {query.since} is past the job's seq {page.seq}",
                extra={"job_id": job_id, "seq": page.seq},
            )
        # The kept entries are JSON already: spliced in, not parsed and encoded again.
        head = compact_json({"job_id": job_id, "seq": page.seq, "complete": page.complete})
        body = f'{head[:-1]},"events":[{",".join(page.entries)}]}}'
        return web.Response(text=body, content_type="application/json")
