"""What the scripts that append to a job's history need from Python: an event's "tail" (`scripts`
module docstring), and the history's bounds."""

from __future__ import annotations

from typing import Any, Final

from orchestrator.models import announcement, event_tail
from protocol.codec import compact_json
from protocol.events import EventType

DEFAULT_HISTORY_MAX: Final[int] = 500
# Upper bound of BATON_EVENT_HISTORY_MAX: a resume from seq 0 reads (and a client receives) it whole.
MAX_HISTORY_MAX: Final[int] = 10_000
# The orchestrator's events name the job's root task, which FINISH_JOB reads itself (its caller has only the id).
_PLACEHOLDER_SERVICE: Final[str] = "orchestrator"


def tail(event: dict[str, Any]) -> str:
    """An event as the scripts take it: compact JSON without `seq` and `job_status`."""
    return compact_json(event_tail(event))


def finish_tail(kind: EventType, data: dict[str, Any], *, tenant_id: str, job_id: str, at: str) -> str:
    """The tail of FINISH_JOB's announcement (`models.record_update`'s event), also without `service`
    and `task_id`: the script adds the root task's."""
    event = announcement(
        kind, data, tenant_id=tenant_id, job_id=job_id, task_id=job_id, service=_PLACEHOLDER_SERVICE, at=at, seq=0
    )
    return compact_json(event_tail(event, without=("service", "task_id")))


def entry_seq(entry: str) -> int:
    """The seq a history entry starts with (`{"seq":N,...`)."""
    return int(entry[7 : entry.index(",")])
