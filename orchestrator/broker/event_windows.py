"""How the event consumer cuts what waits into windows: one window is one registry call (one Lua script).

Every delivery waiting when the consumer gets to run goes in the next window, in delivery order, up to
MAX_WINDOW_EVENTS events: a Lua call holds Redis for its whole length, and batch messages
(protocol.event_batch, up to 256 events each) could otherwise make a window of prefetch x 256 events.
"""

from __future__ import annotations

from typing import Final

from aio_pika.abc import AbstractIncomingMessage

from protocol.event_batch import BATCH_HEADER, MAX_BATCH_EVENTS

# About twice what a window of single events holds at the default prefetch (256).
MAX_WINDOW_EVENTS: Final[int] = 512


def next_window(
    waiting: list[AbstractIncomingMessage],
) -> tuple[list[AbstractIncomingMessage], list[AbstractIncomingMessage]]:
    """The deliveries of the next window, in order, and those left for the one after: every waiting
    delivery, up to MAX_WINDOW_EVENTS events (a batch counts as the events its header declares)."""
    events = 0
    for n, message in enumerate(waiting):
        events += _declared_events(message)
        if events > MAX_WINDOW_EVENTS and n > 0:
            return waiting[:n], waiting[n:]
    return waiting, []


def _declared_events(message: AbstractIncomingMessage) -> int:
    if not message.headers:
        return 1
    declared = message.headers.get(BATCH_HEADER, 1)
    return declared if isinstance(declared, int) and 1 <= declared <= MAX_BATCH_EVENTS else 1
