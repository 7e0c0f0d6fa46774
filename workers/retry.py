"""RetryPolicy: how often a failed task is tried again, and how long it waits in between.

A retry is a new attempt of the same task (`envelope.next_attempt()`), parked in one of the
service's delay queues on `baton.retry` until its TTL sends it back to the work queue. The
backoff doubles from `initial_delay_seconds` up to `max_delay_seconds`, with ±`jitter` so a
burst of failures does not come back as a burst; the broker then rounds it to a delay tier.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from protocol.services import RetryDefaults
from workers.errors import ConfigurationError

BACKOFF_MULTIPLIER: Final[float] = 2.0
DEFAULT_JITTER: Final[float] = 0.2


@dataclass(frozen=True)
class RetryPolicy:
    """`max_retries` retries after the first attempt, so at most `max_retries + 1` attempts."""

    max_retries: int = 3
    initial_delay_seconds: float = 0.5
    max_delay_seconds: float = 10.0
    jitter: float = DEFAULT_JITTER

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigurationError(f"max_retries must be 0 or more, got {self.max_retries}")
        if not self.initial_delay_seconds > 0:
            raise ConfigurationError(f"initial_delay_seconds must be positive, got {self.initial_delay_seconds}")
        if self.max_delay_seconds < self.initial_delay_seconds:
            raise ConfigurationError(
                f"max_delay_seconds ({self.max_delay_seconds}) is below initial_delay_seconds "
                f"({self.initial_delay_seconds})"
            )
        if not 0 <= self.jitter < 1:
            raise ConfigurationError(f"jitter must be in [0, 1), got {self.jitter}")

    @classmethod
    def from_defaults(cls, defaults: RetryDefaults) -> RetryPolicy:
        """A built-in service's policy from its protocol profile."""
        return cls(
            max_retries=defaults.max_retries,
            initial_delay_seconds=defaults.initial_delay_seconds,
            max_delay_seconds=defaults.max_delay_seconds,
        )

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    def allows_another_attempt(self, attempt: int) -> bool:
        """Whether the attempt numbered `attempt` (1 = first) may be followed by another one."""
        return attempt < self.max_attempts

    def delay_seconds(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The wait before the attempt after `attempt`: initial * 2^(attempt-1), capped, ±jitter."""
        exponent = max(0, attempt - 1)
        # Bound the exponent so a huge attempt number cannot overflow a float before the cap applies.
        base = min(self.max_delay_seconds, self.initial_delay_seconds * BACKOFF_MULTIPLIER ** min(exponent, 64))
        return base * (1 + self.jitter * (2 * rand() - 1))
