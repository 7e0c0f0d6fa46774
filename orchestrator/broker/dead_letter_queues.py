"""Reading a service's dead-letter queue `baton.<service>.dead` without losing a message.

AMQP has no "peek": messages are taken with basic.get (manual ack) on a channel of their own,
looked at, and every one not acked is handed back (nack with requeue, then the channel closes,
which would requeue anything left anyway). One browse per service at a time in this process,
and each browse is bounded in messages and time, so a huge queue cannot hold a request forever.

What a parked message says about itself comes from Baton's headers (set by the worker that
parked it), from RabbitMQ's own dead-lettering headers (`x-first-death-reason`), and from the
envelope in its body when that decodes. Anything can be parked (garbage from any publisher): a
body that does not decode, whatever the way it fails, makes an undecodable entry with the reason,
never an error of the listing; header values are shown bounded and as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import aiormq
import aiormq.abc
from pamqp.commands import Basic

from orchestrator.broker.publisher import TaskPublisher
from orchestrator.errors import BrokerUnavailable
from plumbing.amqp import AMQP_ERRORS
from protocol.codec import CodecSet
from protocol.envelope import TaskEnvelope
from protocol.errors import DecodeError
from protocol.topology import (
    ATTEMPTS_HEADER,
    DEAD_AT_HEADER,
    ERROR_HEADER,
    ERROR_TYPE_HEADER,
    JOB_ID_HEADER,
    REASON_HEADER,
    TENANT_HEADER,
    dead_letter_queue,
)

DEFAULT_MAX_SCAN: Final[int] = 10_000
DEFAULT_SCAN_SECONDS: Final[float] = 10.0
# Bounds on what one entry shows of a message's headers and header-borne text (a forged header
# can be as large as a frame, and a page holds up to a thousand entries).
MAX_SHOWN_TEXT: Final[int] = 1000
MAX_SHOWN_ITEMS: Final[int] = 32
MAX_SHOWN_DEPTH: Final[int] = 3
_MAX_COUNT: Final[int] = 2**31 - 1
_GET_TIMEOUT_SECONDS: Final[float] = 5.0
_LINK_ERRORS = (*AMQP_ERRORS, TimeoutError)


@dataclass(frozen=True)
class DeadLetter:
    """One parked message, as far as it can be understood."""

    delivery_tag: int
    envelope: TaskEnvelope | None  # None when the body does not decode
    decode_error: str | None
    size: int  # of the body, in bytes
    headers: Mapping[str, Any]  # as received
    reply_to: str | None
    task_id: str | None
    job_id: str | None
    tenant_id: str | None
    type: str | None
    reason: str | None
    attempts: int | None
    error: str | None
    error_type: str | None
    dead_at: str | None

    @property
    def decodable(self) -> bool:
        return self.envelope is not None

    def public(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "job_id": self.job_id,
            "tenant_id": self.tenant_id,
            "type": self.type,
            "reason": self.reason,
            "attempts": self.attempts,
            "error": self.error,
            "error_type": self.error_type,
            "dead_at": self.dead_at,
            "decodable": self.decodable,
            "decode_error": self.decode_error,
            "size": self.size,
            "headers": shown_headers(self.headers),
        }


def parse_dead_letter(delivery_tag: int, properties: Any, body: bytes, codecs: CodecSet) -> DeadLetter:
    headers: Mapping[str, Any] = properties.headers if isinstance(properties.headers, Mapping) else {}
    envelope, decode_error = decode_body(body, properties.content_type, codecs)
    return DeadLetter(
        delivery_tag=delivery_tag,
        envelope=envelope,
        decode_error=decode_error,
        size=len(body),
        headers=headers,
        reply_to=properties.reply_to,
        task_id=envelope.task_id if envelope else _str(properties.message_id),
        job_id=envelope.global_task_id if envelope else _str(headers.get(JOB_ID_HEADER) or properties.correlation_id),
        # The decoded envelope is what a replay would run, so its tenant decides; the header
        # speaks only for bodies that do not decode, and only as a claim (see dead_letter_owners).
        tenant_id=envelope.tenant_id if envelope else _str(headers.get(TENANT_HEADER)),
        type=envelope.type if envelope else _str(properties.message_type),
        reason=_str(headers.get(REASON_HEADER)) or _str(headers.get("x-first-death-reason")),
        # The envelope's attempt is the one a replay follows; the header (a claim, like every
        # header) only describes a body that does not decode.
        attempts=envelope.attempt if envelope else _int(headers.get(ATTEMPTS_HEADER)),
        error=_str(headers.get(ERROR_HEADER)),
        error_type=_str(headers.get(ERROR_TYPE_HEADER)),
        dead_at=_str(headers.get(DEAD_AT_HEADER)) or _death_time(headers),
    )


def decode_body(body: bytes, content_type: str | None, codecs: CodecSet) -> tuple[TaskEnvelope | None, str | None]:
    """The envelope, or None and why not. Never raises: the body may be anything at all."""
    try:
        return codecs.decode(TaskEnvelope, body, content_type), None
    except DecodeError as exc:
        return None, _clip(str(exc))
    except Exception as exc:  # a decoder's own failure on hostile input is still "undecodable"
        return None, _clip(f"the body could not be decoded ({type(exc).__name__}: {exc})")


def shown_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The headers as bounded JSON: text clipped, few items, shallow; what does not fit is elided."""
    shown = _shown(dict(headers), 0)
    return shown if isinstance(shown, dict) else {}


def _shown(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping | list | tuple):
        if depth >= MAX_SHOWN_DEPTH:
            return "…"
        if isinstance(value, Mapping):
            items = list(value.items())
            shown = {_clip(str(k)): _shown(v, depth + 1) for k, v in items[:MAX_SHOWN_ITEMS]}
            if len(items) > MAX_SHOWN_ITEMS:
                shown["…"] = f"{len(items) - MAX_SHOWN_ITEMS} more"
            return shown
        return [_shown(v, depth + 1) for v in value[:MAX_SHOWN_ITEMS]] + (["…"] if len(value) > MAX_SHOWN_ITEMS else [])
    return _str(value)


class DeadLetterBrowse:
    """One pass over a dead-letter queue: take messages one by one, ack the ones dealt with."""

    def __init__(self, channel: aiormq.abc.AbstractChannel, queue: str, codecs: CodecSet, limit: int, until: float):
        self._channel = channel
        self._queue = queue
        self._codecs = codecs
        self._limit = limit
        self._until = until
        self.scanned = 0
        self.truncated = False  # stopped at the message or time bound with messages left
        self._last_tag = 0

    async def letters(self) -> AsyncIterator[DeadLetter]:
        while True:
            if self.scanned >= self._limit or time.monotonic() >= self._until:
                self.truncated = True
                return
            try:
                got = await self._channel.basic_get(self._queue, no_ack=False, timeout=_GET_TIMEOUT_SECONDS)
            except _LINK_ERRORS as exc:
                raise BrokerUnavailable(f"reading {self._queue} failed: {exc}") from exc
            delivery = got.delivery
            if not isinstance(delivery, Basic.GetOk):
                return  # GetEmpty: nothing left
            tag = delivery.delivery_tag or 0
            self.scanned += 1
            self._last_tag = tag
            yield parse_dead_letter(tag, got.header.properties, got.body, self._codecs)

    async def ack(self, letter: DeadLetter) -> None:
        try:
            await self._channel.basic_ack(letter.delivery_tag)
        except _LINK_ERRORS as exc:
            raise BrokerUnavailable(f"acking a message of {self._queue} failed: {exc}") from exc

    async def hand_back(self) -> None:
        """Requeue every message taken and not acked (they keep their place in the queue)."""
        if self._last_tag and not self._channel.is_closed:
            with contextlib.suppress(*_LINK_ERRORS):
                await self._channel.basic_nack(self._last_tag, multiple=True, requeue=True)


class DeadLetterQueues:
    def __init__(
        self,
        publisher: TaskPublisher,
        codecs: CodecSet,
        *,
        max_scan: int = DEFAULT_MAX_SCAN,
        scan_seconds: float = DEFAULT_SCAN_SECONDS,
    ) -> None:
        self._publisher = publisher
        self._codecs = codecs
        self._max_scan = max_scan
        self._scan_seconds = scan_seconds
        # A service's entry lives while a browse holds or awaits its lock, then goes: any name
        # can come in a URL, and a map of every name ever asked for would only grow.
        self._turns: dict[str, _Turn] = {}

    @asynccontextmanager
    async def browse(self, service: str) -> AsyncIterator[DeadLetterBrowse | None]:
        """A browse of the service's dead letters (None when the queue does not exist).

        Browses of one service wait for each other: a message held by one browse is invisible
        to another, which would then list a partial queue.
        """
        queue = dead_letter_queue(service)
        async with self._turn(service), self._publisher.raw_channel() as channel:
            try:
                await channel.queue_declare(queue, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                yield None
                return
            except _LINK_ERRORS as exc:
                raise BrokerUnavailable(f"cannot inspect {queue}: {exc}") from exc
            browse = DeadLetterBrowse(
                channel, queue, self._codecs, self._max_scan, time.monotonic() + self._scan_seconds
            )
            try:
                yield browse
            finally:
                await browse.hand_back()

    @asynccontextmanager
    async def _turn(self, service: str) -> AsyncIterator[None]:
        """Hold the service's browse lock; the last one out removes it."""
        turn = self._turns.setdefault(service, _Turn())
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if turn.users == 0:
                del self._turns[service]


@dataclass
class _Turn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # browses holding or awaiting the lock


def _str(value: Any) -> str | None:
    """Header text for display: clipped, whatever type the header came as."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return _clip(bytes(value[: MAX_SHOWN_TEXT * 4]).decode("utf-8", errors="replace"))
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return _clip(value)
    return _clip(repr(value) if isinstance(value, Mapping | list | tuple) else str(value))


def _clip(text: str) -> str:
    # Lone surrogates (from a JSON error message quoting its input) would not encode as UTF-8.
    text = text if len(text) <= MAX_SHOWN_TEXT else text[: MAX_SHOWN_TEXT - 1] + "…"
    return text.encode("utf-8", errors="replace").decode("utf-8")


def _int(value: Any) -> int | None:
    """A header's count, when it is a plausible one."""
    if isinstance(value, bool):
        return None
    try:
        number = value if isinstance(value, int) else int(_str(value) or "")
    except ValueError:
        return None
    return number if 0 <= number <= _MAX_COUNT else None


def _death_time(headers: Mapping[str, Any]) -> str | None:
    """When RabbitMQ itself dead-lettered the message (its x-death header), if it did."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
        return _str(deaths[0].get("time"))
    return None
