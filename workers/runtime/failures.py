"""What a failure is, and what to do about it: the one place that decides a failed task's fate.

Today every failure is final (a task_failed event). Retries slot in here: a RetryPolicy
turns a retryable Failure of an attempt below its limit into a republish plus a
`retrying` status event, and nothing else in the runtime changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from pydantic import ValidationError

from protocol.envelope import TaskEnvelope
from protocol.events import JobStatus, TaskEvent, failed_event
from workers.errors import PermanentError

_MAX_ERROR_CHARS: Final[int] = 2000
_MAX_VALIDATION_ITEMS: Final[int] = 5

VALIDATION_ERROR: Final[str] = "ValidationError"
DEADLINE_EXCEEDED: Final[str] = "DeadlineExceeded"


@dataclass(frozen=True)
class Failure:
    error: str
    error_type: str
    status: Literal[JobStatus.FAILED, JobStatus.TIMED_OUT] = JobStatus.FAILED
    retryable: bool = True

    @classmethod
    def from_exception(cls, exc: BaseException) -> Failure:
        """A handler's exception; PermanentError (and its subclasses) are never retryable."""
        message = str(exc) or repr(exc)
        return cls(_clip(message), type(exc).__name__, retryable=not isinstance(exc, PermanentError))

    @classmethod
    def invalid_payload(cls, model: object, exc: ValidationError) -> Failure:
        name = getattr(model, "__name__", None) or repr(model)
        return cls(f"payload does not match {name}: {summarise_validation(exc)}", VALIDATION_ERROR, retryable=False)

    @classmethod
    def deadline(cls, detail: str) -> Failure:
        return cls(detail, DEADLINE_EXCEEDED, JobStatus.TIMED_OUT, retryable=False)

    @classmethod
    def permanent(cls, error: str, error_type: str) -> Failure:
        return cls(_clip(error), error_type, retryable=False)


class FailurePolicy:
    """Turns a Failure into the event that reports it."""

    def outcome(self, envelope: TaskEnvelope, failure: Failure, seq: int) -> TaskEvent:
        return failed_event(
            envelope, error=failure.error, error_type=failure.error_type, seq=seq, status=failure.status
        )


def summarise_validation(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors(include_url=False)[:_MAX_VALIDATION_ITEMS]
    ]
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _clip(message: str) -> str:
    return message if len(message) <= _MAX_ERROR_CHARS else message[: _MAX_ERROR_CHARS - 1] + "…"
