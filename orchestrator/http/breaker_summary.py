"""One line per upstream target out of the breaker states every live worker of a service reported."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from orchestrator.http.schemas import BreakerHealth
from protocol.control import BreakerStatus

CLOSED: Final[str] = "closed"
# The value of baton_circuit_breaker_state: the worse the state, the higher.
STATE_LEVELS: Final[dict[str, int]] = {CLOSED: 0, "half_open": 1, "open": 2}


@dataclass(frozen=True)
class TargetBreakers:
    target: str
    state: str  # the worst over the workers
    failures: int  # the most any worker counted
    opened_at: datetime | None  # the latest
    opened_total: int  # summed over the workers
    not_closed: int  # workers whose breaker is open or half-open

    @property
    def level(self) -> int:
        return STATE_LEVELS[self.state]

    def health(self) -> BreakerHealth:
        return BreakerHealth(
            target=self.target,
            state="open" if self.state == "open" else "half_open",
            failures=self.failures,
            opened_at=self.opened_at,
            workers=self.not_closed,
        )


def by_target(statuses: Iterable[BreakerStatus]) -> list[TargetBreakers]:
    merged: dict[str, TargetBreakers] = {}
    for status in statuses:
        seen = merged.get(status.target)
        opened = [t for t in (status.opened_at, seen.opened_at if seen else None) if t is not None]
        merged[status.target] = TargetBreakers(
            target=status.target,
            state=max(status.state, seen.state if seen else CLOSED, key=STATE_LEVELS.__getitem__),
            failures=max(status.failures, seen.failures if seen else 0),
            opened_at=max(opened) if opened else None,
            opened_total=status.opened_total + (seen.opened_total if seen else 0),
            not_closed=(status.state != CLOSED) + (seen.not_closed if seen else 0),
        )
    return sorted(merged.values(), key=lambda summary: summary.target)
