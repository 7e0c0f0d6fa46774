"""A write transport that sends everything written during one event-loop turn as one write.

AMQP clients write each frame on its own (a publish, an ack, the next publish...). On loopback
and in VMs a socket send costs tens of microseconds of kernel time in the sender and another
wake-up in the receiver, so under load most of a process's CPU can go to sends of a few hundred
bytes. Gathering the frames written in one turn of the loop into one send keeps every byte and
its order; it only moves the send to the end of the turn (microseconds later).

Pure asyncio: both the orchestrator and the workers wrap their broker sockets in it.
"""

from __future__ import annotations

import asyncio
from typing import Any


class CoalescingTransport(asyncio.WriteTransport):
    """Wraps a real transport; buffers `write`s and flushes them with `call_soon`.

    Closing, half-closing or aborting flushes first (abort drops what is buffered, as the real
    transport drops its own buffer). The write buffer size reported includes what is held here.
    """

    def __init__(self, transport: asyncio.WriteTransport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._flush_scheduled = False
        self.sends = 0  # writes handed to the real transport (tests and diagnostics)
        self.replaced_writer: asyncio.StreamWriter | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._held.append(bytes(data))  # the caller may reuse a bytearray after write()
        self._held_bytes += len(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Hand what is held to the real transport now (one write)."""
        self._flush_scheduled = False
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        self._held_bytes = 0
        if self._transport.is_closing():
            return  # the real transport would drop it too (and log a warning per write)
        self.sends += 1
        self._transport.write(data)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held.clear()
        self._held_bytes = 0
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._held_bytes

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)


def coalesce_writes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> asyncio.StreamWriter:
    """A StreamWriter over the same connection whose writes go out once per loop turn."""
    transport = writer.transport
    loop = asyncio.get_running_loop()
    coalescing = CoalescingTransport(transport, loop)
    # Held so it lives as long as the connection: newer Pythons close the transport of a
    # StreamWriter that is garbage-collected while still open.
    coalescing.replaced_writer = writer
    return asyncio.StreamWriter(coalescing, transport.get_protocol(), reader, loop)
