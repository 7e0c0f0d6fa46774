"""WebSocketHub: fans JobUpdates out to this replica's WebSocket clients.

Each client has a bounded queue and one writer task, so a slow client only fills its own
queue; when it is full the client is cut off (close code 4008, "slow consumer") and nobody
else waits. An update is encoded once and the same text goes to every subscriber.

Per client and job the hub remembers the last seq sent and drops anything not newer: for every
job the client subscribed to by id (their number is capped by the routes), and for the most
recent few thousand jobs it follows only through "all" (their number is not capped, and a job
whose terminal update never came would otherwise stay for the connection's lifetime). When a
client subscribes to a job, that job's live updates are held until its snapshot is queued,
then only those newer than the snapshot are released: no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import WSCloseCode, web

from orchestrator.metrics import OrchestratorMetrics
from orchestrator.models import JobUpdate

log = logging.getLogger(__name__)

SLOW_CONSUMER_CODE: Final[int] = 4008
SLOW_CONSUMER_REASON: Final[bytes] = b"slow consumer: message buffer full"
_CLOSE_TIMEOUT_SECONDS: Final[float] = 5.0
FINISHED_JOBS_REMEMBERED: Final[int] = 100_000  # ~10 MB at most; a stale update trails its job by milliseconds
# Per client: last seqs of jobs followed only through "all" (~200 KB at most; an idle client holds none).
# A job pushed out is one nothing was heard of for thousands of other jobs' updates.
ALL_JOBS_REMEMBERED: Final[int] = 2048


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class _Close:
    """Queued after the messages a client must still get before its socket is closed."""

    code: int
    reason: bytes


class ClientConnection:
    """One client socket: its queue, writer, subscriptions and per-job last seq."""

    def __init__(
        self,
        hub: WebSocketHub,
        ws: web.WebSocketResponse,
        tenant_id: str | None,
        buffer: int,
        all_jobs_remembered: int = ALL_JOBS_REMEMBERED,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.tenant_id = tenant_id
        self.ws = ws
        self.jobs: set[str] = set()
        self.all_jobs = False
        self.closed = False
        self._hub = hub
        self._buffer = buffer
        self._queue: asyncio.Queue[str | _Close] = asyncio.Queue(maxsize=buffer)
        self._last_seq: dict[str, int] = {}  # jobs subscribed to by id
        self._all_seq: OrderedDict[str, int] = OrderedDict()  # jobs followed only through "all", oldest first
        self._all_jobs_remembered = all_jobs_remembered
        self._held: dict[str, list[tuple[int, str]]] = {}
        self._writer = asyncio.create_task(self._write(), name=f"baton-ws-writer-{self.id}")
        self._closer: asyncio.Task[Any] | None = None

    def send(self, message: dict[str, Any]) -> None:
        self.send_text(encode(message))

    def send_text(self, text: str) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            self._cut_off()

    def close_after_flush(self, code: int, reason: str) -> None:
        """Close once everything queued so far is sent."""
        if self.closed:
            return
        try:
            self._queue.put_nowait(_Close(code, reason.encode()))
        except asyncio.QueueFull:
            self._cut_off()
        self.closed = True

    def offer(self, update: JobUpdate, text: str) -> None:
        """A live update of a job this client follows."""
        job_id = update.job_id
        held = self._held.get(job_id)
        if held is not None:
            held.append((update.seq, text))
            if len(held) > self._buffer:
                self._cut_off()
            return
        if job_id in self.jobs:
            if update.seq <= self._last_seq.get(job_id, 0):
                return
            self._last_seq[job_id] = update.seq
        else:
            if update.seq <= self._all_seq.get(job_id, 0):
                return
            if update.terminal:
                self._all_seq.pop(job_id, None)  # nothing newer will come, so forget it
            else:
                self._all_seq[job_id] = update.seq
                self._all_seq.move_to_end(job_id)
                if len(self._all_seq) > self._all_jobs_remembered:
                    self._all_seq.popitem(last=False)
        self.send_text(text)

    def hold(self, job_id: str) -> None:
        self._held.setdefault(job_id, [])

    def release(self, job_id: str, seq: int, snapshot: str) -> None:
        """Queue the snapshot at `seq`, then the held updates newer than it, in order."""
        held = self._held.pop(job_id, [])
        last = max(self._last_seq.get(job_id, 0), self._all_seq.pop(job_id, 0), seq)
        self.send_text(snapshot)
        for update_seq, text in sorted(held, key=lambda item: item[0]):
            if update_seq > last:
                last = update_seq
                self.send_text(text)
        self._last_seq[job_id] = last

    def forget(self, job_id: str) -> None:
        self._held.pop(job_id, None)
        self._last_seq.pop(job_id, None)
        self._all_seq.pop(job_id, None)

    async def stop(self, code: int | None = None, reason: bytes = b"") -> None:
        """Stop writing and, with a code, close the socket."""
        self.closed = True
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        if code is not None and not self.ws.closed:
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(self.ws.close(code=code, message=reason), _CLOSE_TIMEOUT_SECONDS)

    def _cut_off(self) -> None:
        if self._closer is not None:
            return
        self.closed = True
        self._hub.client_dropped()
        log.warning("cutting off slow WebSocket client %s", self.id)
        self._closer = asyncio.create_task(self.stop(SLOW_CONSUMER_CODE, SLOW_CONSUMER_REASON))

    async def _write(self) -> None:
        metrics = self._hub.metrics
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, _Close):
                    await self.ws.close(code=item.code, message=item.reason)
                    return
                await self.ws.send_str(item)
                metrics.ws_messages_sent.inc()
        except ConnectionError:
            return  # the client went away; its handler notices and disconnects it


class WebSocketHub:
    def __init__(
        self, metrics: OrchestratorMetrics, client_buffer: int = 1000, all_jobs_remembered: int = ALL_JOBS_REMEMBERED
    ) -> None:
        self.metrics = metrics
        self._client_buffer = client_buffer
        self._all_jobs_remembered = all_jobs_remembered
        self._connections: set[ClientConnection] = set()
        self._by_job: dict[tuple[str, str], set[ClientConnection]] = {}
        self._by_tenant: dict[str, set[ClientConnection]] = {}
        # Final seq of recently finished jobs, shared by every client of this process: an update
        # that arrives after its job's terminal one (the API's "queued" announcement racing a fast
        # worker, a second replica's copy) is older by definition, whoever follows the job.
        self._finished: OrderedDict[tuple[str, str], int] = OrderedDict()

    def connect(self, ws: web.WebSocketResponse, tenant_id: str | None) -> ClientConnection:
        conn = ClientConnection(self, ws, tenant_id, self._client_buffer, self._all_jobs_remembered)
        self._connections.add(conn)
        self.metrics.ws_connections.inc()
        return conn

    async def disconnect(self, conn: ClientConnection) -> None:
        if conn not in self._connections:
            return
        self._connections.discard(conn)
        self.metrics.ws_connections.dec()
        self.unsubscribe_all(conn)
        for job_id in list(conn.jobs):
            self.unsubscribe_job(conn, job_id)
        await conn.stop()

    def begin_snapshot(self, conn: ClientConnection, job_id: str) -> None:
        """Follow a job; its updates are held until finish_snapshot or abort_snapshot."""
        if conn.tenant_id is None:
            return
        conn.hold(job_id)
        conn.jobs.add(job_id)
        self._by_job.setdefault((conn.tenant_id, job_id), set()).add(conn)

    def finish_snapshot(self, conn: ClientConnection, job_id: str, seq: int, snapshot: dict[str, Any]) -> None:
        conn.release(job_id, seq, encode(snapshot))

    def abort_snapshot(self, conn: ClientConnection, job_id: str) -> None:
        self.unsubscribe_job(conn, job_id)

    def unsubscribe_job(self, conn: ClientConnection, job_id: str) -> None:
        conn.jobs.discard(job_id)
        conn.forget(job_id)
        if conn.tenant_id is None:
            return
        followers = self._by_job.get((conn.tenant_id, job_id))
        if followers is not None:
            followers.discard(conn)
            if not followers:
                del self._by_job[(conn.tenant_id, job_id)]

    def subscribe_all(self, conn: ClientConnection) -> None:
        if conn.tenant_id is None:
            return
        conn.all_jobs = True
        self._by_tenant.setdefault(conn.tenant_id, set()).add(conn)

    def unsubscribe_all(self, conn: ClientConnection) -> None:
        conn.all_jobs = False
        if conn.tenant_id is None:
            return
        followers = self._by_tenant.get(conn.tenant_id)
        if followers is not None:
            followers.discard(conn)
            if not followers:
                del self._by_tenant[conn.tenant_id]

    def dispatch(self, update: JobUpdate) -> None:
        """UpdateBus listener: hand the update to every local follower, encoded once."""
        key = (update.tenant_id, update.job_id)
        if update.seq <= self._finished.get(key, 0):
            return
        if update.terminal:
            self._finished[key] = update.seq
            if len(self._finished) > FINISHED_JOBS_REMEMBERED:
                self._finished.popitem(last=False)
        followers = self._by_job.get((update.tenant_id, update.job_id), set()) | self._by_tenant.get(
            update.tenant_id, set()
        )
        if not followers:
            return
        text = encode(update.event)
        for conn in followers:
            conn.offer(update, text)

    def client_dropped(self) -> None:
        self.metrics.ws_clients_dropped.inc()

    async def close_all(self) -> None:
        """Shutdown: close every socket with GOING_AWAY."""
        conns = list(self._connections)
        await asyncio.gather(
            *(conn.stop(WSCloseCode.GOING_AWAY, b"server shutting down") for conn in conns),
            return_exceptions=True,
        )
