"""Settlements: acks and nacks of a consumer's deliveries, a settled set in as few frames as possible.

A delivery window of events settles together. One `basic.ack` with `multiple` on the highest delivery
tag settles every unsettled delivery of the channel up to it, so it is sent only when each of those is
part of the set being settled; otherwise each is acked on its own. A delivery stays tracked until its
own ack or nack has been written: a `multiple` ack sent meanwhile would settle it first, and the
broker closes the channel on an ack of a tag it no longer knows.

Delivery tags are per channel: after the robust connection reopens the channel they start again,
and the deliveries of the closed one are redelivered by the broker. Those are settled by nothing:
a message's `channel` raises once its channel is closed, so each delivery is filed under the channel
it came on when it arrives, and what is still filed under a closed one is merely forgotten.
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
        # Per channel, the unsettled deliveries by tag, in delivery order (ascending tags).
        self._unsettled: dict[object, dict[int, AbstractIncomingMessage]] = {}

    def delivered(self, message: AbstractIncomingMessage) -> None:
        """Track a delivery until it is settled; call in delivery order, as it arrives (its channel open)."""
        channel: object = message.channel
        tags = self._unsettled.get(channel)
        if tags is None:
            self._forget_closed()
            tags = self._unsettled[channel] = {}
        if message.delivery_tag is not None:
            tags[message.delivery_tag] = message

    def unsettled(self) -> int:
        """How many deliveries wait for their ack or nack (on open channels)."""
        return sum(len(tags) for channel, tags in self._unsettled.items() if not _closed(channel))

    def pending(self, messages: Iterable[AbstractIncomingMessage]) -> list[AbstractIncomingMessage]:
        """The messages still to settle: neither settled nor of a closed channel (the broker redelivers those)."""
        return [message for group in self._tracked(messages).values() for message in group]

    async def ack(self, messages: Sequence[AbstractIncomingMessage]) -> None:
        """Ack every message: with one `multiple` ack per channel where that settles exactly these."""
        for channel, group in self._tracked(messages).items():
            highest = max(group, key=_tag)
            if self._covers(channel, {_tag(m) for m in group}, _tag(highest)):
                await self._settle(channel, group, highest.ack(multiple=True))
            else:
                for message in group:
                    await self._settle(channel, (message,), message.ack())

    async def nack(self, messages: Iterable[AbstractIncomingMessage]) -> None:
        """Return each message to the queue (one by one: a rare path, a system message that could not be handled)."""
        for channel, group in self._tracked(messages).items():
            for message in group:
                await self._settle(channel, (message,), message.nack(requeue=True))

    def _tracked(self, messages: Iterable[AbstractIncomingMessage]) -> dict[object, list[AbstractIncomingMessage]]:
        """The messages still unsettled by their open channel: settling one twice would close the channel
        (its tag unknown). Those of a closed channel are forgotten: the broker redelivers them."""
        groups: dict[object, list[AbstractIncomingMessage]] = {}
        for message in messages:
            channel = self._channel_of(message)
            if channel is None:
                continue
            if _closed(channel):
                del self._unsettled[channel][_tag(message)]
                continue
            groups.setdefault(channel, []).append(message)
        return groups

    def _channel_of(self, message: AbstractIncomingMessage) -> object | None:
        """The channel the message is unsettled on, if it is (a consumer has one channel, two across a reconnect)."""
        tag = _tag(message)
        for channel, tags in self._unsettled.items():
            if tags.get(tag) is message:
                return channel
        return None

    def _covers(self, channel: object, tags: set[int], highest: int) -> bool:
        """Whether every unsettled delivery of the channel up to `highest` is one of `tags`."""
        for tag in self._unsettled.get(channel, {}):
            if tag > highest:
                break
            if tag not in tags:
                return False
        return True

    async def _settle(
        self, channel: object, messages: Sequence[AbstractIncomingMessage], settlement: Awaitable[None]
    ) -> None:
        """Await the frame's write, then stop tracking what it settled; if the channel is gone the
        broker redelivers the messages, and their events are then stale."""
        try:
            await settlement
        except (AMQPError, aio_pika.exceptions.ChannelInvalidStateError) as exc:
            log.warning("could not settle %d message(s): %s", len(messages), exc)
        finally:
            tags = self._unsettled.get(channel)
            if tags is not None:
                for message in messages:
                    tags.pop(_tag(message), None)

    def _forget_closed(self) -> None:
        for channel in [c for c in self._unsettled if _closed(c)]:
            del self._unsettled[channel]


def _closed(channel: object) -> bool:
    return bool(getattr(channel, "is_closed", False))


def _tag(message: AbstractIncomingMessage) -> int:
    return message.delivery_tag or 0
