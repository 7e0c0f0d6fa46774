"""What a failed attempt is: its error, its type, and whether another attempt could help.

Whether it gets one is the RetryPolicy's call (workers.retry); the runner applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from pydantic import ValidationError

from protocol.envelope import TaskEnvelope
from protocol.events import JobStatus, TaskEvent, failed_event
from workers.errors import PermanentError

MAX_ERROR_CHARS: Final[int] = 2000
_MAX_VALIDATION_ITEMS: Final[int] = 5

VALIDATION_ERROR: Final[str] = "ValidationError"
DEADLINE_EXCEEDED: Final[str] = "DeadlineExceeded"
TIME_LIMIT_EXCEEDED: Final[str] = "TimeLimitExceeded"
WORKER_LOST: Final[str] = "WorkerLost"


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
        return cls(clip(message), type(exc).__name__, retryable=not isinstance(exc, PermanentError))

    @classmethod
    def invalid_payload(cls, model: object, exc: ValidationError) -> Failure:
        name = getattr(model, "__name__", None) or repr(model)
        return cls(f"payload does not match {name}: {summarise_validation(exc)}", VALIDATION_ERROR, retryable=False)

    @classmethod
    def deadline(cls, detail: str) -> Failure:
        return cls(detail, DEADLINE_EXCEEDED, JobStatus.TIMED_OUT, retryable=False)

    @classmethod
    def time_limit(cls, detail: str) -> Failure:
        return cls(detail, TIME_LIMIT_EXCEEDED)

    @classmethod
    def worker_lost(cls, attempt: int) -> Failure:
        """A delivery came back unsettled: its run died with its worker or its connection."""
        return cls(f"attempt {attempt} did not finish (worker crash, lost connection or shutdown)", WORKER_LOST)

    @classmethod
    def permanent(cls, error: str, error_type: str) -> Failure:
        return cls(clip(error), error_type, retryable=False)

    def event(self, envelope: TaskEnvelope, seq: int) -> TaskEvent:
        """The final task_failed event reporting this failure."""
        return failed_event(envelope, error=self.error, error_type=self.error_type, seq=seq, status=self.status)


def summarise_validation(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors(include_url=False)[:_MAX_VALIDATION_ITEMS]
    ]
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def clip(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"
