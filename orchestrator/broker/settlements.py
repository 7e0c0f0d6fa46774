"""Settlements: acks and nacks of a consumer's deliveries, a settled set in as few frames as possible.

A delivery window of events settles together. One `basic.ack` with `multiple` on the highest delivery
tag settles every unsettled delivery of the channel up to it, so it is sent only when each of those is
part of the set being settled; otherwise each is acked on its own. A delivery stays tracked until its
own ack or nack has been written: a `multiple` ack sent meanwhile would settle it first, and the
broker closes the channel on an ack of a tag it no longer knows.

Delivery tags are per channel: after the robust connection reopens the channel they start again,
and the deliveries of the closed one are redelivered by the broker (their settlement fails and is logged).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable, Sequence

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPError

log = logging.getLogger(__name__)


class Settlements:
    def __init__(self) -> None:
        # Per channel, the unsettled delivery tags in delivery order (ascending).
        self._unsettled: dict[object, dict[int, None]] = {}

    def delivered(self, message: AbstractIncomingMessage) -> None:
        """Track a delivery until it is settled; call in delivery order."""
        channel: object = message.channel
        tags = self._unsettled.get(channel)
        if tags is None:
            self._forget_closed()
            tags = self._unsettled[channel] = {}
        if message.delivery_tag is not None:
            tags[message.delivery_tag] = None

    def unsettled(self) -> int:
        """How many deliveries wait for their ack or nack (on open channels)."""
        return sum(len(tags) for tags in self._unsettled.values())

    async def ack(self, messages: Sequence[AbstractIncomingMessage]) -> None:
        """Ack every message: with one `multiple` ack per channel where that settles exactly these."""
        for channel, group in _by_channel(self._tracked(messages)).items():
            highest = max(group, key=_tag)
            if self._covers(channel, {_tag(m) for m in group}, _tag(highest)):
                await self._settle(group, highest.ack(multiple=True))
            else:
                for message in group:
                    await self._settle((message,), message.ack())

    async def nack(self, messages: Iterable[AbstractIncomingMessage]) -> None:
        """Return each message to the queue (one by one: a rare path, Redis down or a bug)."""
        for message in self._tracked(messages):
            await self._settle((message,), message.nack(requeue=True))

    def _tracked(self, messages: Iterable[AbstractIncomingMessage]) -> list[AbstractIncomingMessage]:
        """The messages still unsettled: settling one twice would close the channel (its tag unknown)."""
        return [m for m in messages if _tag(m) in self._unsettled.get(m.channel, {})]

    def _covers(self, channel: object, tags: set[int], highest: int) -> bool:
        """Whether every unsettled delivery of the channel up to `highest` is one of `tags`."""
        for tag in self._unsettled.get(channel, {}):
            if tag > highest:
                break
            if tag not in tags:
                return False
        return True

    async def _settle(self, messages: Sequence[AbstractIncomingMessage], settlement: Awaitable[None]) -> None:
        """Await the frame's write, then stop tracking what it settled; if the channel is gone the
        broker redelivers the messages, and their events are then stale."""
        try:
            await settlement
        except (AMQPError, aio_pika.exceptions.ChannelInvalidStateError) as exc:
            log.warning("could not settle %d message(s): %s", len(messages), exc)
        finally:
            for message in messages:
                tags = self._unsettled.get(message.channel)
                if tags is not None:
                    tags.pop(_tag(message), None)

    def _forget_closed(self) -> None:
        for channel in [c for c in self._unsettled if getattr(c, "is_closed", False)]:
            del self._unsettled[channel]


def _tag(message: AbstractIncomingMessage) -> int:
    return message.delivery_tag or 0


def _by_channel(messages: Sequence[AbstractIncomingMessage]) -> dict[object, list[AbstractIncomingMessage]]:
    groups: dict[object, list[AbstractIncomingMessage]] = {}
    for message in messages:
        groups.setdefault(message.channel, []).append(message)
    return groups
