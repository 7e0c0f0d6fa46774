"""WebSocketHub: fans JobUpdates out to this replica's WebSocket clients.

Each client has a bounded outbox, so a slow client only fills its own; when it is full the
client is cut off (close code 4008, "slow consumer") and nobody else waits. An update is
encoded once and the same text goes to every subscriber.

An idle client costs only what it must hold: most of the thousands a replica holds wait for
one job's few events. Its outbox and the task that writes it exist only while there is
something to send, and one hub-wide heartbeat replaces aiohttp's per-socket timers: every
HEARTBEAT_SECONDS / 2 it pings the clients not heard from for HEARTBEAT_SECONDS, and drops
those that did not answer the previous ping (dead peers whose TCP connection never closes).

Per client and job the hub remembers the last seq sent and drops anything not newer: for every
job the client subscribed to by id (their number is capped by the routes), and for the most
recent few thousand jobs it follows only through "all" (their number is not capped, and a job
whose terminal update never came would otherwise stay for the connection's lifetime). When a
client subscribes to a job, that job's live updates are held until what catches the client up
is queued (the job's snapshot, or the events it missed from the job's history), then only those
newer are released: no gap, no duplicate.

A client that asked for batched frames (`?batch=1`) gets whatever text waits in its outbox when
the flusher writes as ONE frame {"type": "events", "events": [...]}: the messages in order, each
exactly as it would have come alone (events, snapshots, pongs, errors alike). Under load that is one
frame and one socket write per delivery window instead of one per update; a message that waits
alone still goes alone. The outbox (and so the slow-consumer bound) still counts messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import KeysView, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from aiohttp import WSCloseCode, web

from orchestrator.metrics import OrchestratorMetrics
from orchestrator.models import JobUpdate
from protocol.codec import compact_json

log = logging.getLogger(__name__)

SLOW_CONSUMER_CODE: Final[int] = 4008
SLOW_CONSUMER_REASON: Final[bytes] = b"slow consumer: message buffer full"
HEARTBEAT_SECONDS: Final[float] = 30.0  # silence after which a client is pinged; it has half that to answer
_CLOSE_TIMEOUT_SECONDS: Final[float] = 5.0
_BEATS_PER_TURN: Final[int] = 256
FINISHED_JOBS_REMEMBERED: Final[int] = 100_000  # ~10 MB at most; a stale update trails its job by milliseconds
# Per client: last seqs of jobs followed only through "all" (~200 KB at most; an idle client holds none).
# A job pushed out is one nothing was heard of for thousands of other jobs' updates.
ALL_JOBS_REMEMBERED: Final[int] = 2048
# No batched frame is larger, in UTF-8 bytes with its framing: under a client's frame size limit (the
# `websockets` library's 1 MiB default, aiohttp's 4 MiB) whenever each message is; one larger message
# still goes, alone.
BATCH_FRAME_BYTES: Final[int] = 1 << 20
_EVENTS_FRAME_HEAD: Final[str] = '{"type":"events","events":['
_EVENTS_FRAME_TAIL: Final[str] = "]}"


@dataclass(frozen=True)
class _Close:
    """Queued after the messages a client must still get before its socket is closed."""

    code: int
    reason: bytes


class _Ping:
    """A ping frame the heartbeat queues; it goes ahead of any message still waiting."""


_PING: Final = _Ping()
_Item: TypeAlias = str | _Close | _Ping


class ClientConnection:
    """One client socket: its outbox, subscriptions, per-job last seq and heartbeat state."""

    # Thousands of these live at once: slots, and every container made only when first needed.
    __slots__ = (
        "_all_seq",
        "_closer",
        "_flusher",
        "_held",
        "_hub",
        "_last_seq",
        "_outbox",
        "_pinged_at",
        "_transport",
        "batch",
        "closed",
        "heard",
        "id",
        "tenant_id",
        "ws",
    )

    def __init__(
        self,
        hub: WebSocketHub,
        ws: web.WebSocketResponse,
        tenant_id: str | None,
        transport: asyncio.Transport | None,
        batch: bool = False,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.tenant_id = tenant_id
        self.ws = ws
        self.batch = batch  # queued messages go out together as one "events" frame
        self.closed = False
        self.heard = time.monotonic()  # when the client last sent anything; the routes keep it current
        self._hub = hub
        self._transport = transport
        self._flusher: asyncio.Task[None] | None = None  # only while there is something to send
        self._outbox: deque[_Item] | None = None  # what waits behind the flusher's write, if anything
        self._closer: asyncio.Task[None] | None = None
        self._pinged_at = 0.0  # of the ping not answered yet, or 0
        self._last_seq: dict[str, int] = {}  # jobs subscribed to by id (0 until the snapshot)
        self._all_seq: OrderedDict[str, int] | None = None  # jobs followed only through "all", oldest first
        self._held: dict[str, list[tuple[int, str]]] | None = None

    @property
    def jobs(self) -> KeysView[str]:
        """The jobs subscribed to by id."""
        return self._last_seq.keys()

    def send(self, message: dict[str, Any]) -> None:
        self.send_text(compact_json(message))

    def send_text(self, text: str) -> None:
        if not self.closed:
            self._put(text)

    def close_after_flush(self, code: int, reason: str) -> None:
        """Close once everything queued so far is sent."""
        if self.closed:
            return
        self._put(_Close(code, reason.encode()))
        self.closed = True

    def offer(self, update: JobUpdate, text: str) -> None:
        """A live update of a job this client follows."""
        job_id = update.job_id
        held = self._held.get(job_id) if self._held is not None else None
        if held is not None:
            held.append((update.seq, text))
            if len(held) > self._hub.client_buffer:
                self._cut_off()
            return
        last = self._last_seq.get(job_id)
        if last is not None:
            if update.seq <= last:
                return
            self._last_seq[job_id] = update.seq
        else:
            all_seq = self._all_seq
            if all_seq is None:
                all_seq = self._all_seq = OrderedDict()
            if update.seq <= all_seq.get(job_id, 0):
                return
            if update.terminal:
                all_seq.pop(job_id, None)  # nothing newer will come, so forget it
            else:
                all_seq[job_id] = update.seq
                all_seq.move_to_end(job_id)
                if len(all_seq) > self._hub.all_jobs_remembered:
                    all_seq.popitem(last=False)
        self.send_text(text)

    def hold(self, job_id: str) -> None:
        """Follow a job by id; its updates wait for `release`."""
        self._last_seq.setdefault(job_id, 0)
        if self._held is None:
            self._held = {}
        self._held.setdefault(job_id, [])

    @property
    def room(self) -> int:
        """How many more messages the outbox takes before the client counts as slow."""
        return self._hub.client_buffer - (len(self._outbox) if self._outbox is not None else 0)

    def release(self, job_id: str, seq: int, snapshot: str | None, events: Sequence[tuple[int, str]] = ()) -> None:
        """Queue what brings the client to `seq` (the snapshot at `seq`, or the events it missed up to it,
        those it has not had yet), then the held updates newer than `seq`, in order."""
        held = self._pop_held(job_id) or []
        from_all = self._all_seq.pop(job_id, 0) if self._all_seq is not None else 0
        had = max(self._last_seq.get(job_id, 0), from_all)
        last = max(had, seq)
        if snapshot is not None:
            self.send_text(snapshot)
        for event_seq, text in events:
            if event_seq > had:
                self.send_text(text)
        for update_seq, text in sorted(held, key=lambda item: item[0]):
            if update_seq > last:
                last = update_seq
                self.send_text(text)
        self._last_seq[job_id] = last

    def follow_through_all(self, job_id: str) -> None:
        """A job caught up by id that the client follows through "all" from now on (no subscription of its own)."""
        last = self._last_seq.pop(job_id, None)
        if last is None:
            return
        if self._all_seq is None:
            self._all_seq = OrderedDict()
        self._all_seq[job_id] = last
        if len(self._all_seq) > self._hub.all_jobs_remembered:
            self._all_seq.popitem(last=False)

    def forget(self, job_id: str) -> None:
        self._pop_held(job_id)
        self._last_seq.pop(job_id, None)
        if self._all_seq is not None:
            self._all_seq.pop(job_id, None)

    def beat(self) -> None:
        """One heartbeat tick: drop the client if the last ping went unanswered, else ping it when silent."""
        if self.closed:
            return
        if self._pinged_at:
            if self.heard < self._pinged_at:
                self._drop_dead()
                return
            self._pinged_at = 0.0
        now = time.monotonic()
        if now - self.heard >= self._hub.heartbeat:
            self._pinged_at = now
            if self._flusher is None:
                self._put(_PING)
            else:
                # Next after the write under way, as aiohttp's own heartbeat would; at most one
                # is outstanding, so it never counts towards the slow-consumer limit.
                self._outbox = self._outbox or deque()
                self._outbox.appendleft(_PING)

    async def stop(self, code: int | None = None, reason: bytes = b"") -> None:
        """Stop writing and, with a code, close the socket."""
        self.closed = True
        flusher = self._flusher
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        self._flusher = self._outbox = None  # a flusher cancelled before it ran never cleared them
        if code is not None and not self.ws.closed:
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(self.ws.close(code=code, message=reason), _CLOSE_TIMEOUT_SECONDS)

    def _pop_held(self, job_id: str) -> list[tuple[int, str]] | None:
        held = self._held.pop(job_id, None) if self._held is not None else None
        self._held = self._held or None
        return held

    def _put(self, item: _Item) -> None:
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(item))
            return
        outbox = self._outbox
        if outbox is None:
            outbox = self._outbox = deque()
        elif len(outbox) >= self._hub.client_buffer:
            self._cut_off()
            return
        outbox.append(item)

    def _cut_off(self) -> None:
        if self._closer is not None:
            return
        self.closed = True
        self._hub.client_dropped()
        log.warning("cutting off slow WebSocket client %s", self.id)
        self._closer = asyncio.create_task(self.stop(SLOW_CONSUMER_CODE, SLOW_CONSUMER_REASON))

    def _drop_dead(self) -> None:
        self.closed = True
        log.info("dropping WebSocket client %s: no pong within %.0f s", self.id, self._hub.heartbeat / 2)
        # Like aiohttp's own heartbeat, but abort: a dead peer never drains what is still buffered.
        # The handler's receive loop then ends, and it disconnects the client.
        if self._transport is not None:
            self._transport.abort()

    async def _flush(self, item: _Item) -> None:
        """Writes `item`, then the outbox until it is empty, and ends: an idle client has no task."""
        metrics = self._hub.metrics
        ws = self.ws
        try:
            while True:
                if isinstance(item, str):
                    count = 1
                    if self.batch and self._outbox:
                        item, count = _events_frame(item, self._outbox)
                    await ws.send_str(item)
                    metrics.ws_messages_sent.inc(count)
                elif isinstance(item, _Ping):
                    await ws.ping()
                else:
                    await ws.close(code=item.code, message=item.reason)
                    return
                if not self._outbox:
                    return
                item = self._outbox.popleft()
        except ConnectionError:
            self.closed = True  # the client went away; its handler notices and disconnects it
        finally:
            self._flusher = self._outbox = None


def _events_frame(first: str, outbox: deque[_Item]) -> tuple[str, int]:
    """`first` and the texts queued right behind it (the frame up to BATCH_FRAME_BYTES), taken off `outbox`,
    as one "events" frame of already encoded messages; and how many messages it carries."""
    texts = [first]
    size = len(_EVENTS_FRAME_HEAD) + _utf8_length(first) + len(_EVENTS_FRAME_TAIL)
    while outbox and isinstance(text := outbox[0], str):
        size += 1 + _utf8_length(text)  # the comma before it, and it
        if size > BATCH_FRAME_BYTES:
            break
        texts.append(text)
        outbox.popleft()
    if len(texts) == 1:
        return first, 1
    return f"{_EVENTS_FRAME_HEAD}{','.join(texts)}{_EVENTS_FRAME_TAIL}", len(texts)


def _utf8_length(text: str) -> int:
    # isascii() reads a flag CPython keeps on every str: only non-ASCII text is encoded to be measured.
    return len(text) if text.isascii() else len(text.encode())


class WebSocketHub:
    def __init__(
        self,
        metrics: OrchestratorMetrics,
        client_buffer: int = 10_000,
        all_jobs_remembered: int = ALL_JOBS_REMEMBERED,
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.metrics = metrics
        self.client_buffer = client_buffer
        self.all_jobs_remembered = all_jobs_remembered
        self.heartbeat = heartbeat
        self._connections: set[ClientConnection] = set()
        self._by_job: dict[tuple[str, str], set[ClientConnection]] = {}
        self._by_tenant: dict[str, set[ClientConnection]] = {}
        # Final seq of recently finished jobs, shared by every client of this process: an update
        # that arrives after its job's terminal one (the API's "queued" announcement racing a fast
        # worker, a second replica's copy) is older by definition, whoever follows the job.
        self._finished: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._heartbeats: asyncio.Task[None] | None = None  # runs while there are clients

    def connect(
        self,
        ws: web.WebSocketResponse,
        tenant_id: str | None,
        transport: asyncio.Transport | None,
        batch: bool = False,
    ) -> ClientConnection:
        conn = ClientConnection(self, ws, tenant_id, transport, batch)
        self._connections.add(conn)
        self.metrics.ws_connections.inc()
        if self._heartbeats is None:
            self._heartbeats = asyncio.create_task(self._beat(), name="baton-ws-heartbeat")
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
        self._by_job.setdefault((conn.tenant_id, job_id), set()).add(conn)

    def finish_snapshot(self, conn: ClientConnection, job_id: str, seq: int, snapshot: dict[str, Any]) -> None:
        conn.release(job_id, seq, compact_json(snapshot))

    def finish_replay(self, conn: ClientConnection, job_id: str, seq: int, events: Sequence[tuple[int, str]]) -> None:
        """Like finish_snapshot, with the events the client missed up to `seq` instead of a snapshot."""
        conn.release(job_id, seq, None, events)

    def follow_through_all(self, conn: ClientConnection, job_id: str) -> None:
        """After a catch-up: the job's updates reach the client through its "all" subscription only."""
        conn.follow_through_all(job_id)
        self._unfollow(conn, job_id)

    def abort_snapshot(self, conn: ClientConnection, job_id: str) -> None:
        self.unsubscribe_job(conn, job_id)

    def unsubscribe_job(self, conn: ClientConnection, job_id: str) -> None:
        conn.forget(job_id)
        self._unfollow(conn, job_id)

    def _unfollow(self, conn: ClientConnection, job_id: str) -> None:
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
        self._by_tenant.setdefault(conn.tenant_id, set()).add(conn)

    def unsubscribe_all(self, conn: ClientConnection) -> None:
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
        text = compact_json(update.event)  # once per update, for all its followers
        for conn in followers:
            conn.offer(update, text)

    def client_dropped(self) -> None:
        self.metrics.ws_clients_dropped.inc()

    async def close_all(self) -> None:
        """Shutdown: close every socket with GOING_AWAY."""
        heartbeats, self._heartbeats = self._heartbeats, None
        if heartbeats is not None:
            heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeats
        conns = list(self._connections)
        await asyncio.gather(
            *(conn.stop(WSCloseCode.GOING_AWAY, b"server shutting down") for conn in conns),
            return_exceptions=True,
        )

    async def _beat(self) -> None:
        """Every heartbeat / 2 s, a tick for each client (ClientConnection.beat); ends with the last client."""
        try:
            while self._connections:
                await asyncio.sleep(self.heartbeat / 2)
                for count, conn in enumerate(list(self._connections), 1):
                    conn.beat()
                    if count % _BEATS_PER_TURN == 0:
                        # Let those pings go out (each flusher ends after one write) before the next
                        # batch: neither thousands of tasks at once nor a long stall of the loop.
                        await asyncio.sleep(0)
        finally:
            if self._heartbeats is asyncio.current_task():
                self._heartbeats = None
