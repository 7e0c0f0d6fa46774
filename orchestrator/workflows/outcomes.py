"""How a step attempt ended, as the advance step takes it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StepSucceeded:
    """`context` merges into the execution's dynamic_properties; `next` names the branch to take
    (one or more direct successors of the step), None for all of them."""

    result: Any = None
    context: Mapping[str, Any] | None = None
    next: tuple[str, ...] | None = None

    @classmethod
    def from_result(cls, result: Any) -> StepSucceeded:
        """A handler's return value: when it is an object, its `context` and `next` keys (as in reference
        004, `{"context": {...}, "next": "step"}`) are read out of it; the whole value stays the result."""
        if not isinstance(result, Mapping):
            return cls(result)
        context = result.get("context")
        next_ = result.get("next")
        return cls(
            result,
            context if isinstance(context, Mapping) else None,
            (next_,) if isinstance(next_, str) else tuple(next_) if isinstance(next_, list | tuple) else None,
        )


@dataclass(frozen=True)
class StepFailed:
    """`retryable` False ends the step at once, whatever attempts it has left."""

    error: str
    retryable: bool = True
    error_type: str | None = None


StepOutcome = StepSucceeded | StepFailed
