"""Token-bucket rates: `200/s:2000` is 200 tokens a second, at most 2,000 held (the burst).

One notation for every flow-control setting of the orchestrator (job creation quotas per tenant,
WebSocket messages per connection); `off` means no limit. The bucket itself lives where its state
does: in Redis for job quotas (`orchestrator.store.token_bucket`, shared by every replica), in
memory here for what one process alone decides.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

OFF: Final[str] = "off"
_UNIT_SECONDS: Final[dict[str, float]] = {"s": 1.0, "m": 60.0, "h": 3600.0}
RATE_SHAPE: Final[str] = "<count>/<s|m|h>:<burst>, e.g. 200/s:2000, or off"


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_second) and self.per_second > 0) or self.burst < 1:
            raise ValueError(f"a rate needs a positive count and a burst of at least 1 ({RATE_SHAPE})")

    def __str__(self) -> str:
        return f"{self.per_second:g}/s:{self.burst}"

    def seconds_until(self, tokens: float) -> float:
        """How long refilling `tokens` takes."""
        return max(tokens, 0.0) / self.per_second


def parse_rate(text: str) -> Rate | None:
    """`200/s:2000` -> Rate(200, 2000); `off` -> None; ValueError naming the expected shape otherwise."""
    text = text.strip()
    if text.lower() == OFF:
        return None
    count, slash, rest = text.partition("/")
    unit, colon, burst = rest.partition(":")
    if not (slash and colon) or unit.strip().lower() not in _UNIT_SECONDS:
        raise ValueError(f"a rate is {RATE_SHAPE}")
    try:
        per_unit, most = float(count), int(burst)
    except ValueError:
        raise ValueError(f"a rate is {RATE_SHAPE}") from None
    return Rate(per_unit / _UNIT_SECONDS[unit.strip().lower()], most)


class TokenBucket:
    """An in-memory bucket, full at first: `take()` spends a token if one is there."""

    __slots__ = ("_clock", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._clock = clock
        self._tokens = float(rate.burst)
        self._stamp = clock()

    def take(self) -> bool:
        now = self._clock()
        rate = self._rate
        self._tokens = min(float(rate.burst), self._tokens + (now - self._stamp) * rate.per_second)
        self._stamp = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
