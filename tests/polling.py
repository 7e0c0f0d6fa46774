"""Waiting for something the test cannot be told about: call a probe until its answer will do.

Every test waits through these, so a wait that runs out always says what it waited for and the last
answer it got. `poll` returns the answer that did; `eventually` waits for a condition;
`eventually_blocking` is `eventually` for code that runs in a thread (no event loop).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

NOTHING_YET = "nothing (the first probe had not answered)"


class NotReached(AssertionError):
    """The probe's answer never did within the time; `last` is the last answer seen."""

    def __init__(self, what: str, within: float, last: object) -> None:
        super().__init__(f"{what}: not reached within {within:g} s; last seen: {last!r}")
        self.last = last


def describe(check: Callable[..., Any]) -> str:
    """A lambda by its source line, a function by its name: what a test waited for, in its own words."""
    if getattr(check, "__name__", "") == "<lambda>":
        try:
            return inspect.getsource(check).strip()
        except (OSError, TypeError):
            pass
    return getattr(check, "__qualname__", repr(check))


async def poll(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    within: float = 10.0,
    every: float = 0.05,
    what: str | None = None,
) -> T:
    """Awaits `probe()` every `every` seconds until `done(answer)`; returns that answer.

    After `within` seconds (a probe still under way is cancelled) fails with NotReached.
    """
    last: object = NOTHING_YET
    deadline = asyncio.timeout(within)
    try:
        async with deadline:
            while True:
                answer = await probe()
                last = answer
                if done(answer):
                    return answer
                await asyncio.sleep(every)
    except TimeoutError:
        if not deadline.expired():
            raise  # the probe's own timeout, not ours
        raise NotReached(what or describe(probe), within, last) from None


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], *, within: float = 10.0, every: float = 0.05, what: str | None = None
) -> None:
    """Waits until `check()` (plain or async) holds; fails with NotReached after `within` seconds."""

    async def holds() -> bool:
        outcome = check()
        if inspect.isawaitable(outcome):
            return bool(await outcome)
        return bool(outcome)

    await poll(holds, bool, within=within, every=every, what=what or describe(check))


def eventually_blocking(check: Callable[[], bool], *, within: float = 10.0, every: float = 0.2, what: str) -> None:
    """`eventually` for code that runs in a thread: sleeps between checks instead of awaiting."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() >= deadline:
            raise NotReached(what, within, False)
        time.sleep(every)
