"""Starts Baton's real processes with the users' commands and talks to them over HTTP and WebSockets.

Used by the end-to-end tests and by the benchmarks; every process it starts is stopped by `close()`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import redis.asyncio as aioredis

from protocol.lanes import LANES_PREFIX, lanes_key
from protocol.topology import lane_queue
from tests.polling import NotReached, poll

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"


@dataclass
class Tenant:
    tenant_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def new_tenants(count: int) -> list[Tenant]:
    return [Tenant(f"e2e-{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(16)) for _ in range(count)]


@dataclass
class BatonSystem:
    rabbitmq_url: str
    redis_url: str
    tenants: list[Tenant]
    extra_env: Mapping[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="baton-e2e-")))

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
        env.update(
            RABBITMQ_URL=self.rabbitmq_url,
            REDIS_URL=self.redis_url,
            BATON_API_KEYS=",".join(f"{t.tenant_id}:{t.key}" for t in self.tenants),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def spawn(self, name: str, args: list[str], **env: str) -> Process:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [sys.executable, *args], cwd=ROOT, env=self.env(**env), stdout=log, stderr=subprocess.STDOUT
            )
        process = Process(name, popen, log_path)
        self.processes.append(process)
        return process

    async def start_orchestrator(self, name: str = "orchestrator", port: int | None = None, **env: str) -> str:
        port = port or free_port()
        process = self.spawn(name, ["-m", "orchestrator"], ORCHESTRATOR_PORT=str(port), **env)
        base_url = f"http://127.0.0.1:{port}"
        await wait_healthy(base_url, process)
        return base_url

    def start_worker(self, target: str, name: str | None = None, **env: str) -> Process:
        return self.spawn(
            name or f"worker-{target.replace(':', '-')}-{len(self.processes)}", ["-m", "workers", target], **env
        )

    def close(self, timeout: float = 20.0) -> None:
        """SIGTERM every process (workers first), then SIGKILL what is left after `timeout`."""
        ordered = sorted(self.processes, key=lambda p: p.name.startswith("orchestrator"))
        for process in ordered:
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in ordered:
            try:
                process.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        self.processes.clear()

    async def forget_lanes(self) -> None:
        """The run's tenants' lanes of every service (the built-in ones and the tests' fixed ones outlive a
        run): its tenants never come back, and every later worker of a service would consume their lanes for
        good. Deleted whatever they still hold (a cancelled job's task, say): that is the run's own garbage."""
        redis = aioredis.Redis.from_url(self.redis_url)
        try:
            services = [
                key.decode().removeprefix(LANES_PREFIX + ":") async for key in redis.scan_iter(f"{LANES_PREFIX}:*")
            ]
            lanes = [(s, t.tenant_id) for s in services for t in self.tenants]
            for service, tenant in lanes:
                await redis.srem(lanes_key(service), tenant)
        finally:
            await redis.aclose()
        try:
            connection = await aio_pika.connect(self.rabbitmq_url)
        except (aio_pika.exceptions.AMQPError, OSError):
            return  # a private broker the test has stopped: its lanes went with it
        async with connection:
            channel = await connection.channel()
            for service, tenant in lanes:
                await channel.queue_delete(lane_queue(service, tenant))

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (exit {p.popen.poll()}) ---\n{p.log_tail()}" for p in self.processes)


async def wait_healthy(base_url: str, process: Process, timeout: float = 30.0) -> None:
    async with aiohttp.ClientSession() as session:

        async def health_status() -> int | str:
            if process.popen.poll() is not None:
                raise RuntimeError(f"{process.name} exited with {process.popen.returncode}:\n{process.log_tail()}")
            try:
                async with session.get(f"{base_url}/health", timeout=aiohttp.ClientTimeout(total=2)) as response:
                    return response.status
            except (aiohttp.ClientError, TimeoutError) as error:
                return repr(error)

        try:
            await poll(
                health_status, lambda status: status == 200, within=timeout, every=0.2, what=f"{process.name} healthy"
            )
        except NotReached as late:
            raise RuntimeError(f"{late}\n{process.log_tail()}") from None  # the log says why


async def wait_for_workers(base_url: str, services: list[str], timeout: float = 30.0) -> None:
    """Until /health shows a live worker for each service (workers announce themselves on start)."""
    async with aiohttp.ClientSession() as session:

        async def health() -> dict[str, Any]:
            async with session.get(f"{base_url}/health") as response:
                body: dict[str, Any] = await response.json()
                return body

        def all_live(health: dict[str, Any]) -> bool:
            known = health.get("services", {})
            return all(known.get(s, {}).get("live_workers", 0) >= 1 for s in services)

        await poll(health, all_live, within=timeout, every=0.3, what=f"a live worker for each of {services}")


@dataclass
class TerminalCollector:
    """A WebSocket client subscribed to all of its tenant's jobs; records every event it receives."""

    ws: aiohttp.ClientWebSocketResponse
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    terminal: dict[str, list[tuple[float, dict[str, Any]]]] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, base_url: str, tenant: Tenant) -> TerminalCollector:
        ws = await session.ws_connect(f"{base_url.replace('http', 'ws', 1)}/ws/task_updates", headers=tenant.headers)
        hello = await ws.receive_json(timeout=10)
        assert hello["type"] == "connection_established", hello
        await ws.send_json({"type": "subscribe", "all": True})
        collector = cls(ws)
        collector._task = asyncio.create_task(collector._read())
        return collector

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            now = time.perf_counter()
            data = message.json()
            self.events.append((now, data))
            if data.get("event") in {"task_completed", "task_failed", "task_cancelled"}:
                self.terminal.setdefault(data["global_task_id"], []).append((now, data))
                self._changed.set()

    async def wait_for(self, job_ids: set[str], timeout: float) -> set[str]:
        """Waits until every job has a terminal event; returns the ones still missing."""
        deadline = time.monotonic() + timeout
        while True:
            missing = job_ids - self.terminal.keys()
            remaining = deadline - time.monotonic()
            if not missing or remaining <= 0:
                return missing
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
            except TimeoutError:
                pass

    async def close(self) -> None:
        await self.ws.close()
        if self._task:
            await self._task


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]
