"""CoalescingTransport over a real loopback socket: fewer sends, the same bytes in the same order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from plumbing.coalescing import CoalescingTransport, coalesce_writes


@dataclass
class Sink:
    """A loopback server that keeps every byte it receives."""

    received: bytearray = field(default_factory=bytearray)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                self.received += chunk
        except ConnectionResetError:
            pass  # the client aborted
        finally:
            self.closed.set()
            writer.close()
            await writer.wait_closed()


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Sink, asyncio.StreamWriter]]:
    sink = Sink()
    server = await asyncio.start_server(sink.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    coalescing = coalesce_writes(reader, writer)
    yield sink, coalescing
    coalescing.close()
    await asyncio.wait_for(sink.closed.wait(), 2)
    await asyncio.sleep(0.01)  # the server's handler closes its side
    server.close()
    await server.wait_closed()


def transport_of(writer: asyncio.StreamWriter) -> CoalescingTransport:
    transport = writer.transport
    assert isinstance(transport, CoalescingTransport)
    return transport


async def test_writes_of_one_loop_turn_go_out_as_one_send_in_order(pair: tuple[Sink, asyncio.StreamWriter]) -> None:
    sink, writer = pair
    frames = [f"frame-{i};".encode() for i in range(50)]
    for frame in frames:
        writer.write(frame)
    writer.write(bytearray(b"reused-buffer;"))
    assert sink.received == b""  # nothing sent yet: the send waits for the end of the turn
    await writer.drain()
    await asyncio.sleep(0.05)
    assert transport_of(writer).sends == 1
    writer.write(b"next-turn;")
    await asyncio.sleep(0.05)
    assert transport_of(writer).sends == 2
    assert bytes(sink.received) == b"".join(frames) + b"reused-buffer;next-turn;"


async def test_close_sends_what_is_held_first(pair: tuple[Sink, asyncio.StreamWriter]) -> None:
    sink, writer = pair
    writer.write(b"last words")
    writer.close()
    await asyncio.wait_for(sink.closed.wait(), 2)
    assert bytes(sink.received) == b"last words"


async def test_abort_drops_what_is_held(pair: tuple[Sink, asyncio.StreamWriter]) -> None:
    sink, writer = pair
    writer.write(b"never sent")
    writer.transport.abort()
    await asyncio.wait_for(sink.closed.wait(), 2)
    assert sink.received == b""


async def test_the_buffer_size_counts_what_is_held(pair: tuple[Sink, asyncio.StreamWriter]) -> None:
    _, writer = pair
    writer.write(b"x" * 1000)
    assert writer.transport.get_write_buffer_size() >= 1000
    await asyncio.sleep(0.05)
    assert writer.transport.get_write_buffer_size() == 0


async def test_writes_after_the_link_closed_are_dropped_quietly(pair: tuple[Sink, asyncio.StreamWriter]) -> None:
    _, writer = pair
    writer.transport.close()
    writer.transport.write(b"too late")  # what the real transport would also drop
    await asyncio.sleep(0.05)
    assert transport_of(writer).sends == 0
