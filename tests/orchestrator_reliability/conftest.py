"""Fixtures of the reliability tests: the API fixture of tests/orchestrator_api, and helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from tests.orchestrator_api.conftest import api  # noqa: F401  (the fixture, shared)


async def until(predicate: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
