"""Named priorities and their AMQP values (queues carry x-max-priority=10)."""

from __future__ import annotations

from typing import Final

PRIORITIES: Final[dict[str, int]] = {"high": 9, "medium": 5, "low": 1}
DEFAULT_PRIORITY: Final[int] = PRIORITIES["medium"]
MAX_PRIORITY: Final[int] = 9


def resolve_priority(value: str | int | None) -> int:
    """Map a priority name or number to the AMQP priority 0-9; raises ValueError otherwise."""
    if value is None:
        return DEFAULT_PRIORITY
    if isinstance(value, bool):
        raise ValueError("priority must be a name or an integer 0-9, not a boolean")
    if isinstance(value, int):
        if 0 <= value <= MAX_PRIORITY:
            return value
        raise ValueError(f"priority {value} is outside 0-{MAX_PRIORITY}")
    if value in PRIORITIES:
        return PRIORITIES[value]
    raise ValueError(f"unknown priority {value!r}; use one of {sorted(PRIORITIES)} or 0-{MAX_PRIORITY}")
