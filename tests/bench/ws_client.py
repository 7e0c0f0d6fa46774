"""A benchmark WebSocket client of /ws/task_updates: subscribes, then records when each job's terminal event came.

It asks for batched frames (`?batch=1`, as the JS client does): what waits together on the server comes as one
{"type": "events", "events": [...]} frame, unpacked here in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

TERMINAL_EVENTS = frozenset({"task_completed", "task_failed", "task_cancelled"})
HELLO_TIMEOUT_SECONDS = 30.0


def carried(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages of a frame: those of a batched {"type": "events"} frame, in order, or the frame itself."""
    events: list[dict[str, Any]] = frame["events"] if frame.get("type") == "events" else [frame]
    return events


class WebSocketRefused(RuntimeError):
    """The orchestrator did not take the connection or the subscription."""


@dataclass
class JobWatcher:
    ws: aiohttp.ClientWebSocketResponse
    terminal: dict[str, float] = field(default_factory=dict)  # job id -> when its terminal event arrived
    failed: dict[str, str] = field(default_factory=dict)  # job id -> the terminal event, when not completed
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    cut_off: str | None = None
    observe: Callable[[dict[str, Any]], None] | None = None  # called with each event message as it arrives
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        session: aiohttp.ClientSession,
        base_url: str,
        headers: dict[str, str],
        job_ids: list[str] | None = None,
        *,
        batch: bool = True,
        observe: Callable[[dict[str, Any]], None] | None = None,
    ) -> JobWatcher:
        """Subscribes to `job_ids` (waiting for each one's snapshot), or to all the tenant's jobs when None;
        `batch=False` takes one message per frame; `observe` is shown every event message as it arrives."""
        url = f"{base_url.replace('http', 'ws', 1)}/ws/task_updates?batch={int(batch)}"
        try:
            ws = await session.ws_connect(url, headers=headers, heartbeat=None, autoping=True)
        except (aiohttp.ClientError, OSError) as exc:
            raise WebSocketRefused(f"connect: {exc!r}") from exc
        try:
            # Nothing is subscribed yet: the greeting comes alone.
            hello = await ws.receive_json(timeout=HELLO_TIMEOUT_SECONDS)
            if hello.get("type") != "connection_established":
                raise WebSocketRefused(f"unexpected first message {hello}")
            if job_ids is None:
                await ws.send_json({"type": "subscribe", "all": True})
                watcher = cls(ws, observe=observe)
            else:
                await ws.send_json({"type": "subscribe", "job_ids": job_ids})
                watcher = cls(ws, observe=observe)
                await watcher._snapshots(set(job_ids))
        except (aiohttp.ClientError, TimeoutError, TypeError, ValueError) as exc:
            await ws.close()
            raise WebSocketRefused(f"subscribe: {exc!r}") from exc
        except WebSocketRefused:
            await ws.close()
            raise
        watcher._reader = asyncio.create_task(watcher._read())
        return watcher

    async def _snapshots(self, pending: set[str]) -> None:
        while pending:
            for message in carried(await self.ws.receive_json(timeout=HELLO_TIMEOUT_SECONDS)):
                if message.get("type") == "job_snapshot":
                    pending.discard(message["job_id"])
                elif message.get("type") == "error":
                    raise WebSocketRefused(f"subscription refused: {message}")
                else:
                    self._record(message, time.perf_counter())

    def _record(self, data: dict[str, Any], now: float) -> None:
        if self.observe is not None:
            self.observe(data)
        if data.get("event") in TERMINAL_EVENTS:
            job_id = data["global_task_id"]
            self.terminal.setdefault(job_id, now)
            if data["event"] != "task_completed":
                self.failed[job_id] = data["event"]
            self.changed.set()

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            now = time.perf_counter()
            for data in carried(message.json()):
                self._record(data, now)
        if self.ws.close_code not in (None, aiohttp.WSCloseCode.OK):
            self.cut_off = f"closed by the server with code {self.ws.close_code}"  # 4008: slow consumer
        self.changed.set()

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await self._reader
