"""Settling a delivery: what became of it decides (a pure `decide`), one `settle` carries it out.

At-least-once: a delivery is acked only once what replaces it downstream (its outcome event, its
next attempt, its dead letter, its handed-back copy) is confirmed by the broker, or when nothing
needs to replace it (its attempt was finished before). When that publish fails it is requeued;
when even parking it with its reason fails, it is rejected to the queue's dead-letter exchange.

A failed settle means the channel is gone: the broker redelivers the message to a consumer on a
live channel, so it is logged and not raised.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from enum import StrEnum

from aio_pika.abc import AbstractIncomingMessage

from plumbing.amqp import AMQP_ERRORS

log = logging.getLogger(__name__)


class Happened(StrEnum):
    """What became of a delivery, as far as settling it goes."""

    ALREADY_FINISHED = "already_finished"  # its attempt's outcome was published before: a duplicate
    OUTCOME_PUBLISHED = "outcome_published"  # completed, cancelled or failed: the terminal event is confirmed
    NEXT_ATTEMPT_PUBLISHED = "next_attempt_published"  # a retry after a backoff, or a redelivery republished
    DEAD_LETTERED = "dead_lettered"  # parked with its reason, and no job to tell
    HANDED_BACK = "handed_back"  # never started before a graceful stop: published again as it came
    PUBLISH_FAILED = "publish_failed"  # what would replace it was not confirmed: keep it
    INTERRUPTED = "interrupted"  # a graceful stop cut its run short, or it came flagged to a hand back
    PARK_FAILED = "park_failed"  # parking it with its reason failed: the queue's own dead-letter route parks it


class Settlement(StrEnum):
    ACK = "ack"  # done with here
    REQUEUE = "requeue"  # back to its queue, flagged redelivered: the next attempt (or WorkerLost)
    REJECT = "reject"  # to the queue's dead-letter exchange, without Baton's reason headers


def decide(happened: Happened) -> Settlement:
    match happened:
        case (
            Happened.ALREADY_FINISHED
            | Happened.OUTCOME_PUBLISHED
            | Happened.NEXT_ATTEMPT_PUBLISHED
            | Happened.DEAD_LETTERED
            | Happened.HANDED_BACK
        ):
            return Settlement.ACK
        case Happened.PUBLISH_FAILED | Happened.INTERRUPTED:
            return Settlement.REQUEUE
        case Happened.PARK_FAILED:
            return Settlement.REJECT


async def settle(message: AbstractIncomingMessage, settlement: Settlement) -> bool:
    """Carry out `settlement`; False when the channel refused it (the broker then redelivers)."""
    match settlement:
        case Settlement.ACK:
            return await ack(message)
        case Settlement.REQUEUE:
            return await requeue(message)
        case Settlement.REJECT:
            return await reject(message)


# The three broker operations, called by `settle` only (module functions so a test can wrap one).


async def ack(message: AbstractIncomingMessage) -> bool:
    return await _confirmed(message, message.ack(), "ack")


async def requeue(message: AbstractIncomingMessage) -> bool:
    return await _confirmed(message, message.nack(requeue=True), "requeue")


async def reject(message: AbstractIncomingMessage) -> bool:
    return await _confirmed(message, message.reject(requeue=False), "reject")


async def _confirmed(message: AbstractIncomingMessage, operation: Awaitable[None], what: str) -> bool:
    try:
        await operation
    except AMQP_ERRORS as exc:
        log.warning("%s of message %s failed (%r); the broker will redeliver it", what, message.message_id, exc)
        return False
    return True
