"""The WebSocket routes (DESIGN "WebSockets"): /ws/task_updates, /ws/jobs/{job_id}, /ws/{execution_id}.

A client authenticates with `Authorization: Bearer`, `?token=` (here only, never on HTTP routes), or a first message
{"type": "auth", "token": ...} within BATON_WS_AUTH_TIMEOUT_SECONDS (10 s), and then speaks JSON:

    client -> server                               server -> client
    {"type": "subscribe", "job_ids": [...]}        {"type": "job_snapshot", "job_id", "seq", "job"[, "execution"]},
                                                   then events
    {"type": "subscribe", "all": true}             events of every job of the tenant
    ... "since": {"<job_id>": <seq>}               instead of the snapshot, the job's events after that seq (its
                                                   kept history), then live ones; the snapshot when the history
                                                   no longer reaches back (with "all": the jobs the client knows)
    {"type": "unsubscribe", "job_ids"|"all"}       (nothing)
    {"type": "cancel_job", "job_id": ...}          {"type": "cancel_result", "job_id", "status", "job_status"}
    {"type": "ping"}                               {"type": "pong"}
    anything wrong                                 {"type": "error", "error", "detail"}; the socket stays open

Events are the TaskEvent JSON with the job's seq and its status after the event (`job_status`); /ws/jobs/{job_id}
and /ws/{execution_id} take `?since=N` for their job. With `?batch=1` on any of the three routes, messages that
wait together for the socket go out as one frame {"type": "events", "events": [<message>, ...]} (in order, each as
it would come alone; a message that waits alone comes alone): see `orchestrator.live.hub`. A workflow execution's
snapshot also carries the execution's status view under "execution" (from the injected snapshot provider).
A service-token connection may publish TaskEvent JSON (no "type" field) of its own service's tasks and gets
{"type": "event_ack", ...}; it cannot subscribe.
Another tenant's job is answered exactly like a job that does not exist.
Origins, caps on sockets and the message rate are `orchestrator.live.admission`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, TypeGuard

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import ValidationError

from orchestrator import strict_json
from orchestrator.auth import Authenticator, Principal
from orchestrator.errors import RegistryError
from orchestrator.live.admission import Refusal, SocketAdmission
from orchestrator.live.hub import ClientConnection, WebSocketHub
from orchestrator.models import CancelResult, JobRecord, JobUpdate
from orchestrator.settings import WebSocketSettings
from orchestrator.store.event_history import EventHistory, HistoryRead
from orchestrator.store.event_tails import entry_seq
from orchestrator.store.registry import RedisTaskRegistry
from orchestrator.store.scripts import MAX_SEQ
from protocol.errors import summarise_validation
from protocol.events import TaskEvent

MAX_JOB_IDS_PER_MESSAGE: Final[int] = 1000
MAX_JOBS_PER_CONNECTION: Final[int] = 10_000
MAX_JOB_ID_LENGTH: Final[int] = 128

CLOSE_UNAUTHORIZED: Final[int] = 4401
CLOSE_FORBIDDEN: Final[int] = 4403
CLOSE_NOT_FOUND: Final[int] = 4404
# Client frames that spend the connection's message budget (pongs answer the server's own pings).
_COUNTED: Final[frozenset[WSMsgType]] = frozenset({WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING})
_BATCH_VALUES: Final[dict[str, bool]] = {"1": True, "true": True, "0": False, "false": False}

CancelJob = Callable[[str, str], Awaitable[CancelResult]]
# (tenant_id, job record) -> what a snapshot of that job carries besides the record, e.g.
# {"execution": {...}} for a workflow execution; None for nothing more. RegistryError when Redis failed.
SnapshotExtras = Callable[[str, JobRecord], Awaitable[dict[str, Any] | None]]


async def no_extras(tenant_id: str, job: JobRecord) -> dict[str, Any] | None:
    return None


class EventAcceptor(Protocol):
    """Applies a service's event (`orchestrator.jobs.event_sink.EventSink`): its update, or None if dropped."""

    async def accept(self, event: TaskEvent) -> JobUpdate | None: ...


class ClientError(Exception):
    """A client message the server answers with an error message; the socket stays open."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


class WebSocketEndpoint:
    def __init__(
        self,
        *,
        authenticator: Authenticator,
        cancel_job: CancelJob,
        registry: RedisTaskRegistry,
        hub: WebSocketHub,
        events: EventAcceptor,
        max_message_bytes: int,
        limits: WebSocketSettings | None = None,
        history: EventHistory,
        snapshot_extras: SnapshotExtras = no_extras,
    ) -> None:
        self._auth = authenticator
        self._cancel_job = cancel_job
        self._registry = registry
        self._hub = hub
        self._events = events
        self._max_message_bytes = max_message_bytes
        limits = limits or WebSocketSettings()
        self._auth_timeout = limits.auth_timeout_seconds
        self._admission = SocketAdmission(limits, hub.metrics)
        self._snapshot_extras = snapshot_extras
        self._history = history

    async def task_updates(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, None)

    async def one_job(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, request.match_info["job_id"])

    async def one_execution(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, request.match_info["execution_id"])

    async def _serve(self, request: web.Request, job_id: str | None) -> web.StreamResponse:
        if not self._admission.origin_allowed(request):
            detail = f"origin {request.headers['Origin']!r} may not open WebSockets here (BATON_ALLOWED_ORIGINS)"
            return web.json_response({"error": "forbidden_origin", "detail": detail}, status=403)
        principal = self._auth.authenticate(request, allow_query_token=True)
        if principal is None and _offers_credentials(request):
            return web.json_response({"error": "unauthorized", "detail": "invalid API key"}, status=401)
        # No aiohttp heartbeat (its timers cost ~2 KB per idle socket): the hub pings every client
        # from one task, and sees the pongs because this handler answers pings itself.
        ws = web.WebSocketResponse(max_msg_size=self._max_message_bytes, compress=False, autoping=False)
        await ws.prepare(request)
        if principal is None:
            if refusal := self._admission.wait_for_auth():
                return await _refuse(ws, refusal)
            try:
                principal = await self._authenticate_by_message(ws)
            finally:
                self._admission.done_waiting()
            if principal is None:
                return ws
        if principal.is_admin or (principal.is_service and job_id is not None):
            await ws.close(code=CLOSE_FORBIDDEN, message=b"this key cannot follow jobs")
            return ws
        if refusal := self._admission.admit(principal.tenant_id):
            return await _refuse(ws, refusal)
        try:
            await self._converse(request, ws, principal, job_id)
        finally:
            self._admission.leave(principal.tenant_id)
        return ws

    async def _converse(
        self, request: web.Request, ws: web.WebSocketResponse, principal: Principal, job_id: str | None
    ) -> None:
        """The authenticated socket's life, from connection_established to its close."""
        budget = self._admission.message_bucket()
        batch = _query_batch(request)
        conn = self._hub.connect(ws, principal.tenant_id, request.transport, batch=batch is True)
        try:
            conn.send(
                {
                    "type": "connection_established",
                    "connection_id": conn.id,
                    "tenant_id": principal.tenant_id,
                    "role": "service" if principal.is_service else "client",
                }
            )
            if batch is None:
                conn.send(_error("bad_message", f"?batch must be 1 or 0, not {request.query['batch']!r}"))
            if job_id is not None:
                try:
                    since = _query_since(request, job_id)
                    if not await self._subscribe_jobs(conn, [job_id], since, report_missing=False):
                        conn.close_after_flush(CLOSE_NOT_FOUND, "job not found")
                except ClientError as exc:
                    conn.send(_error(exc.error, exc.detail))  # open: the client may subscribe again
                except RegistryError:
                    conn.close_after_flush(WSCloseCode.TRY_AGAIN_LATER, "job registry unavailable")
            async for msg in ws:
                conn.heard = time.monotonic()  # any frame, a pong included, shows the client is alive
                if budget is not None and msg.type in _COUNTED and not conn.closed and not budget.take():
                    refusal = self._admission.too_fast()
                    conn.send(refusal.message())
                    conn.close_after_flush(refusal.code, refusal.close_reason)
                if msg.type is WSMsgType.PING:
                    await _pong(ws, msg.data)
                elif conn.closed:
                    continue  # closing: only the client's close frame matters now
                elif msg.type is WSMsgType.TEXT:
                    await self._on_text(conn, principal, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    conn.send(_error("bad_message", "send JSON in text frames"))
        finally:
            await self._hub.disconnect(conn)

    async def _authenticate_by_message(self, ws: web.WebSocketResponse) -> Principal | None:
        """Browsers without a token in the URL send {"type": "auth", "token": ...} first."""
        try:
            async with asyncio.timeout(self._auth_timeout):
                while (msg := await ws.receive()).type in (WSMsgType.PING, WSMsgType.PONG):
                    if msg.type is WSMsgType.PING:
                        await _pong(ws, msg.data)
        except TimeoutError:
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"authentication timed out")
            return None
        principal = None
        if msg.type is WSMsgType.TEXT:
            try:
                body = _parse(msg.data)
            except ClientError:
                body = None
            if isinstance(body, dict) and body.get("type") == "auth" and isinstance(body.get("token"), str):
                principal = self._auth.principal_for(body["token"])
        if principal is None and not ws.closed:
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"authentication required")
        return principal

    async def _on_text(self, conn: ClientConnection, principal: Principal, data: str) -> None:
        try:
            body = _parse(data)
            if not isinstance(body, dict):
                raise ClientError("bad_message", "a message must be a JSON object")
            kind = body.get("type")
            if kind is None and principal.service is not None and "event" in body:
                await self._publish_event(conn, principal.service, body)
            elif kind == "ping":
                conn.send({"type": "pong"})
            elif kind in ("subscribe", "unsubscribe", "cancel_job"):
                if conn.tenant_id is None:
                    raise ClientError("forbidden", "a service connection cannot follow or cancel jobs")
                if kind == "subscribe":
                    await self._subscribe(conn, body)
                elif kind == "unsubscribe":
                    self._unsubscribe(self._hub, conn, body)
                else:
                    await self._cancel(conn, body)
            elif kind == "auth":
                raise ClientError("bad_message", "already authenticated")
            else:
                raise ClientError("unknown_type", f"unknown message type {kind!r}")
        except ClientError as exc:
            conn.send(_error(exc.error, exc.detail))
        except RegistryError:
            conn.send(_error("unavailable", "the job registry is unavailable; retry shortly"))

    async def _subscribe(self, conn: ClientConnection, body: dict[str, Any]) -> None:
        follow_all = body.get("all") is True
        if "job_ids" not in body and not follow_all:
            raise ClientError("bad_message", 'subscribe needs "job_ids": [...] or "all": true')
        job_ids = _job_ids(body) if "job_ids" in body else []
        since = _since(body, job_ids, follow_all)
        if len(conn.jobs | set(job_ids)) > MAX_JOBS_PER_CONNECTION:
            raise ClientError("too_many_subscriptions", f"at most {MAX_JOBS_PER_CONNECTION} jobs per connection")
        if follow_all:
            self._hub.subscribe_all(conn)
        # With "all", jobs of `since` alone are caught up like subscribed ones, then followed through "all".
        only_all = [job_id for job_id in since if job_id not in job_ids and job_id not in conn.jobs]
        resumed = [job_id for job_id in since if job_id not in job_ids]
        if job_ids or resumed:
            await self._subscribe_jobs(conn, [*job_ids, *resumed], since, report_missing=True)
        for job_id in only_all:
            self._hub.follow_through_all(conn, job_id)

    async def _subscribe_jobs(
        self, conn: ClientConnection, job_ids: list[str], since: dict[str, int], *, report_missing: bool
    ) -> bool:
        """For each job, what catches the client up (the events after its `since`, else a snapshot), then
        live; False when one was not found (or not the tenant's)."""
        tenant_id = conn.tenant_id
        if tenant_id is None:
            return False
        for job_id in job_ids:
            self._hub.begin_snapshot(conn, job_id)
        all_found = True
        for index, job_id in enumerate(job_ids):
            try:
                found = await self._catch_up(conn, tenant_id, job_id, since.get(job_id))
            except RegistryError:
                for pending in job_ids[index:]:
                    self._hub.abort_snapshot(conn, pending)
                raise
            except ClientError as exc:
                self._hub.abort_snapshot(conn, job_id)
                conn.send({**_error(exc.error, exc.detail), "job_id": job_id})
                continue
            if not found:
                self._hub.abort_snapshot(conn, job_id)
                all_found = False
                if report_missing:
                    conn.send(_error("not_found", f"job {job_id} not found"))
        return all_found

    async def _catch_up(self, conn: ClientConnection, tenant_id: str, job_id: str, since: int | None) -> bool:
        """Queue the job's events after `since`, or its snapshot; False when there is no such job."""
        if since is not None:
            # Never more than the outbox takes: a job that missed more gets its snapshot (one message).
            page = await self._history.after(tenant_id, job_id, since, conn.room)
            if page.outcome is HistoryRead.NOT_FOUND:
                return False
            if page.outcome is HistoryRead.BEYOND:
                raise ClientError("since_beyond_job", f"since {since} is past job {job_id}'s seq {page.seq}")
            if page.complete and since + len(page.entries) == page.seq:
                events = [(entry_seq(entry), entry) for entry in page.entries]
                self._hub.finish_replay(conn, job_id, page.seq, events)
                return True
        record = await self._registry.get(tenant_id, job_id)
        if record is None:
            return False
        # Read after the record: what it adds is never older than the record's seq.
        extras = await self._snapshot_extras(tenant_id, record)
        snapshot = {
            **(extras or {}),
            "type": "job_snapshot",
            "job_id": job_id,
            "seq": record.seq,
            "job": record.public(),
        }
        self._hub.finish_snapshot(conn, job_id, record.seq, snapshot)
        return True

    def _unsubscribe(self, hub: WebSocketHub, conn: ClientConnection, body: dict[str, Any]) -> None:
        if body.get("all") is True:
            hub.unsubscribe_all(conn)
        if "job_ids" in body:
            for job_id in _job_ids(body):
                hub.unsubscribe_job(conn, job_id)
        elif body.get("all") is not True:
            raise ClientError("bad_message", 'unsubscribe needs "job_ids": [...] or "all": true')

    async def _cancel(self, conn: ClientConnection, body: dict[str, Any]) -> None:
        job_id = body.get("job_id")
        if not _is_job_id(job_id) or conn.tenant_id is None:
            raise ClientError("bad_message", 'cancel_job needs "job_id"')
        result = await self._cancel_job(conn.tenant_id, job_id)
        # `job_status` is how the job ended: "cancelled", or what won the race (e.g. "completed").
        job_status = result.record.status if result.record is not None else None
        conn.send({"type": "cancel_result", "job_id": job_id, "status": result.status.value, "job_status": job_status})

    async def _publish_event(self, conn: ClientConnection, service: str, body: dict[str, Any]) -> None:
        try:
            event = TaskEvent.model_validate(body)
        except ValidationError as exc:
            raise ClientError("invalid_event", summarise_validation(exc)) from exc
        if event.service != service:
            # The registry then holds the event to the tasks routed to that service.
            raise ClientError("forbidden", f"this token reports for service {service!r} only, not {event.service!r}")
        update = await self._events.accept(event)
        conn.send(
            {
                "type": "event_ack",
                "task_id": event.task_id,
                "seq": event.seq,
                "applied": update is not None,
                "job_seq": update.seq if update is not None else None,
            }
        )


async def _refuse(ws: web.WebSocketResponse, refusal: Refusal) -> web.WebSocketResponse:
    """Say which limit refused the socket, then close it with the limit's code."""
    with contextlib.suppress(ConnectionError):
        await ws.send_json(refusal.message())
    await ws.close(code=refusal.code, message=refusal.close_reason.encode())
    return ws


async def _pong(ws: web.WebSocketResponse, data: bytes) -> None:
    with contextlib.suppress(ConnectionError):  # the client went away: the receive loop ends next
        await ws.pong(data)


def _offers_credentials(request: web.Request) -> bool:
    return bool(request.headers.get("Authorization") or request.query.get("token"))


def _parse(data: str) -> Any:
    try:
        return strict_json.loads(data)
    except ValueError as exc:
        raise ClientError("bad_message", f"not valid JSON: {exc}") from exc


def _job_ids(body: dict[str, Any]) -> list[str]:
    job_ids = body.get("job_ids")
    if not isinstance(job_ids, list) or not all(_is_job_id(j) for j in job_ids):
        raise ClientError("bad_message", '"job_ids" must be a list of job id strings')
    if len(job_ids) > MAX_JOB_IDS_PER_MESSAGE:
        raise ClientError("bad_message", f"at most {MAX_JOB_IDS_PER_MESSAGE} job ids per message")
    return list(dict.fromkeys(job_ids))


def _since(body: dict[str, Any], job_ids: list[str], follow_all: bool) -> dict[str, int]:
    """The subscribe message's `since` ({job_id: last seq seen}), checked; {} without one."""
    since = body.get("since")
    if since is None:
        return {}
    if not isinstance(since, dict):
        raise ClientError("bad_message", '"since" must be an object of job id -> the last seq seen')
    if len(since) > MAX_JOB_IDS_PER_MESSAGE:
        raise ClientError("bad_message", f'"since" names at most {MAX_JOB_IDS_PER_MESSAGE} jobs')
    for job_id, seq in since.items():
        if not _is_job_id(job_id):
            raise ClientError("bad_message", f'"since" keys are job ids of at most {MAX_JOB_ID_LENGTH} characters')
        if not _is_seq(seq):
            raise ClientError("bad_message", f'"since" of job {job_id} must be an integer seq from 0 to {MAX_SEQ}')
        if not follow_all and job_id not in job_ids:
            raise ClientError("bad_message", f'"since" names job {job_id}, which is not in "job_ids" (nor "all": true)')
    return since


def _query_since(request: web.Request, job_id: str) -> dict[str, int]:
    """`?since=N` of a one-job socket, as a subscribe message's `since`."""
    raw = request.query.get("since")
    if raw is None:
        return {}
    seq = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 16 else -1
    if not _is_seq(seq):
        raise ClientError("bad_message", f"?since must be an integer seq from 0 to {MAX_SEQ}, not {raw!r}")
    return {job_id: seq}


def _query_batch(request: web.Request) -> bool | None:
    """`?batch=1`: the client takes batched "events" frames; None for a value that is neither 1 nor 0."""
    return _BATCH_VALUES.get(request.query.get("batch", "0").lower())


def _is_seq(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEQ


def _is_job_id(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_JOB_ID_LENGTH


def _error(error: str, detail: str) -> dict[str, Any]:
    return {"type": "error", "error": error, "detail": detail}
