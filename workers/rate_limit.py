"""A rate limit as users write it: "N/s", "N/m" or "N/h" (tasks started per second, minute or hour)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from workers.errors import ConfigurationError

PERIOD_SECONDS: Final[dict[str, int]] = {"s": 1, "m": 60, "h": 3600}
_RATE_RE: Final = re.compile(r"\s*([0-9]+)\s*/\s*([smh])\s*")


@dataclass(frozen=True)
class RateLimit:
    count: int
    period_seconds: int

    @property
    def interval_seconds(self) -> float:
        """The spacing of starts: the limiter lets one start through per interval."""
        return self.period_seconds / self.count

    def __str__(self) -> str:
        unit = next(u for u, seconds in PERIOD_SECONDS.items() if seconds == self.period_seconds)
        return f"{self.count}/{unit}"


def parse_rate_limit(text: str) -> RateLimit:
    """`"100/m"` -> RateLimit(100, 60); anything else raises ConfigurationError."""
    match = _RATE_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) < 1:
        raise ConfigurationError(f"rate limit {text!r} must be N/s, N/m or N/h with N at least 1, e.g. '100/m'")
    return RateLimit(int(match.group(1)), PERIOD_SECONDS[match.group(2)])
