"""Surviving a lost broker link (a TCP proxy between the worker and RabbitMQ is cut mid-task),
and giving up on a broker that accepts the connection but never answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from aio_pika.abc import AbstractChannel

from protocol.events import EventType
from protocol.topology import task_queue
from tests.services import relocated_url
from tests.workers.helpers import Tap, envelope, publish_task, running, settings
from workers import TaskContext, Worker
from workers.runtime import run_worker


class Proxy:
    """Forwards TCP to the broker; `cut()` drops every open link, as a broker restart would."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()
        self._writers.discard(writer)

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def proxy(rabbitmq_url: str) -> AsyncIterator[Proxy]:
    parts = urlsplit(rabbitmq_url)
    server = Proxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    await server.start()
    yield server
    await server.close()


async def test_a_cut_link_is_restored_and_the_task_completes_once(
    rabbitmq_url: str, channel: AbstractChannel, service: str, proxy: Proxy
) -> None:
    release = asyncio.Event()
    calls: list[str] = []
    worker = Worker(service)

    @worker.handler("gated")
    async def gated(payload: dict[str, Any], ctx: TaskContext) -> str:
        calls.append(ctx.task_id)
        await release.wait()
        return "done"

    via_proxy = relocated_url(rabbitmq_url, proxy.port, reconnect_interval="0.3")
    tap = await Tap.open(channel, f"*.{service}.*")
    async with running(worker, via_proxy):
        first = envelope(service, "gated", {})
        await publish_task(channel, first)
        assert (await tap.next_event()).data["status"] == "running"

        proxy.cut()  # the broker requeues the unacked task and redelivers it after the reconnect
        await asyncio.sleep(1.0)
        release.set()
        events = await tap.task_events(first.task_id, within=20)
        assert events[-1].event is EventType.TASK_COMPLETED

        second = envelope(service, "gated", {})
        await publish_task(channel, second)
        assert (await tap.task_events(second.task_id, within=20))[-1].event is EventType.TASK_COMPLETED

    assert calls == [first.task_id, second.task_id]  # the redelivered copy did not run the handler again
    assert [e.event for e in tap.drain_events()] == []  # and published nothing more
    queue = await channel.declare_queue(task_queue(service), passive=True)
    assert queue.declaration_result.message_count == 0  # every copy was acked


async def test_start_gives_up_on_a_broker_that_never_answers(service: str, caplog: pytest.LogCaptureFixture) -> None:
    """A socket that is accepted and then left silent (a wedged broker, a black-holing proxy)."""
    silent: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    worker = Worker(service)

    @worker.handler("never")
    async def never(payload: dict[str, Any], ctx: TaskContext) -> None:
        return None

    try:
        with caplog.at_level(logging.ERROR, logger="workers.runtime.app"):
            code = await asyncio.wait_for(
                run_worker(worker, settings(f"amqp://guest:guest@127.0.0.1:{port}/", connect_timeout_seconds=0.3)),
                10,
            )
    finally:
        for writer in silent:
            writer.close()
        server.close()
        await server.wait_closed()

    assert code == 1  # the process exits with a clear reason instead of hanging
    assert f"no answer from RabbitMQ at amqp://guest:***@127.0.0.1:{port}/ within 0.3 s" in caplog.text
