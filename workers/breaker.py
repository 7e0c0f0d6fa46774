"""Circuit breakers: one per upstream target (scheme://host:port), shared by every task of the process.

closed --N consecutive failures--> open --cooldown--> half-open --probe succeeds--> closed
                                    ^                     |
                                    +---probe fails-------+

While open, a call fails at once with CircuitOpenError instead of adding to an upstream's trouble;
in half-open one probe call at a time goes through. Only the probe's verdict moves a half-open
breaker, and results of calls that started before the breaker opened change nothing once it is open.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from yarl import URL

from protocol.control import BreakerStatus
from workers.errors import CircuitOpenError, ConfigurationError

DEFAULT_FAILURE_THRESHOLD: Final[int] = 5
DEFAULT_COOLDOWN_SECONDS: Final[float] = 30.0
# Every target gets a breaker and the heartbeat reports them all: a handler calling a new host per
# task must not grow either without bound.
DEFAULT_MAX_TARGETS: Final[int] = 50


class BreakerState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS
    max_targets: int = DEFAULT_MAX_TARGETS

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ConfigurationError(f"failure_threshold must be 1 or more, got {self.failure_threshold}")
        if not self.cooldown_seconds > 0:
            raise ConfigurationError(f"cooldown_seconds must be positive, got {self.cooldown_seconds}")
        if self.max_targets < 1:
            raise ConfigurationError(f"max_targets must be 1 or more, got {self.max_targets}")


def target_of(url: str) -> str:
    """The breaker's key for a URL: scheme://host:port, the port made explicit."""
    parsed = URL(url)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port}"


class CircuitBreaker:
    def __init__(
        self,
        target: str,
        policy: BreakerPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self._policy = policy
        self._clock = clock
        self._wall_clock = wall_clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at: float | None = None  # on `clock`
        self._opened_wall: float | None = None  # on `wall_clock`, for reports
        self._probing = False
        self.opened_total = 0

    @property
    def state(self) -> BreakerState:
        """The state as a caller would find it now: open turns half-open once the cooldown is over."""
        if self._state is BreakerState.OPEN and self._cooled_down():
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def failures(self) -> int:
        return self._failures

    def admit(self) -> bool:
        """Let a call through, or raise CircuitOpenError; True when the call is the half-open probe,
        whose verdict (`record`, or `release` when it ended without one) the breaker then waits for."""
        if self._state is BreakerState.OPEN and self._cooled_down():
            self._state = BreakerState.HALF_OPEN
        if self._state is BreakerState.CLOSED:
            return False
        if self._state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        raise CircuitOpenError(self.target, self._half_open_at(), probing=self._state is BreakerState.HALF_OPEN)

    def record(self, *, success: bool, probe: bool) -> None:
        """The verdict on a call `admit` let through."""
        if self._state is BreakerState.HALF_OPEN:
            if not probe:
                return
            self._probing = False
            if success:
                self._close()
            else:
                self._open()
        elif self._state is BreakerState.CLOSED:
            if success:
                self._failures = 0
            else:
                self._failures += 1
                if self._failures >= self._policy.failure_threshold:
                    self._open()

    def release(self, *, probe: bool) -> None:
        """The call ended without a verdict (cancelled): a probe lets the next caller probe instead."""
        if probe and self._state is BreakerState.HALF_OPEN:
            self._probing = False

    def status(self) -> BreakerStatus:
        opened_at = None if self._opened_wall is None else datetime.fromtimestamp(self._opened_wall, UTC)
        return BreakerStatus(
            target=self.target,
            state=self.state.value,
            failures=self._failures,
            opened_at=opened_at,
            opened_total=self.opened_total,
        )

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._opened_wall = self._wall_clock()
        self.opened_total += 1

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = self._opened_wall = None

    def _cooled_down(self) -> bool:
        return self._opened_at is not None and self._clock() - self._opened_at >= self._policy.cooldown_seconds

    def _half_open_at(self) -> datetime:
        """When a probe may go (now, when one is already under way)."""
        remaining = 0.0
        if self._opened_at is not None:
            remaining = max(0.0, self._policy.cooldown_seconds - (self._clock() - self._opened_at))
        return datetime.fromtimestamp(self._wall_clock() + remaining, UTC)


class CircuitBreakers:
    """The process's breakers by target, built once by the runtime. At most `max_targets` are kept: a new
    target past the cap evicts the least recently used closed breaker (the oldest of all when none is)."""

    def __init__(
        self,
        policy: BreakerPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._policy = policy or BreakerPolicy()
        self._clock = clock
        self._wall_clock = wall_clock
        self._breakers: OrderedDict[str, CircuitBreaker] = OrderedDict()

    def __len__(self) -> int:
        return len(self._breakers)

    def for_url(self, url: str) -> CircuitBreaker:
        return self.for_target(target_of(url))

    def for_target(self, target: str) -> CircuitBreaker:
        breaker = self._breakers.get(target)
        if breaker is not None:
            self._breakers.move_to_end(target)
            return breaker
        if len(self._breakers) >= self._policy.max_targets:
            self._evict()
        breaker = CircuitBreaker(target, self._policy, clock=self._clock, wall_clock=self._wall_clock)
        self._breakers[target] = breaker
        return breaker

    def statuses(self) -> list[BreakerStatus]:
        return [breaker.status() for breaker in self._breakers.values()]

    def _evict(self) -> None:
        closed = next((t for t, b in self._breakers.items() if b.state is BreakerState.CLOSED), None)
        del self._breakers[closed if closed is not None else next(iter(self._breakers))]
