"""Opening the orchestrator's robust RabbitMQ connections, the first time included.

aio-pika reconnects a robust connection only once it has connected; the orchestrator must also
start (and report the broker down on /health) while RabbitMQ is not there yet, so both of its
connections (publishing and consuming) retry their first connect with `retry_with_backoff`.
The connection itself is plumbing.amqp's; its errors become BrokerUnavailable here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aio_pika.abc import AbstractRobustConnection

from orchestrator.errors import BrokerUnavailable
from plumbing.amqp import AMQP_ERRORS, open_robust_connection

T = TypeVar("T")


async def connect_robust(
    url: str, connection_name: str, *, timeout: float, reconnect_interval: float | None = None
) -> AbstractRobustConnection:
    """One connect attempt; BrokerUnavailable when the broker does not answer in time."""
    try:
        return await open_robust_connection(
            url, connection_name, timeout=timeout, reconnect_interval=reconnect_interval
        )
    except (*AMQP_ERRORS, TimeoutError) as exc:
        raise BrokerUnavailable(f"cannot connect to RabbitMQ: {exc}") from exc


async def retry_with_backoff(
    attempt: Callable[[], Awaitable[T | None]], *, first_delay: float, max_delay: float, wait_first: bool = False
) -> T:
    """Call `attempt` until it returns something other than None, doubling the pause up to `max_delay`."""
    delay = first_delay
    if wait_first:
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)
    while (result := await attempt()) is None:
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)
    return result
