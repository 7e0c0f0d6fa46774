"""A task event's status is derived in one place, TaskEvent.status, and checked against its event type."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.events import EventType, JobStatus, TaskEvent


def _event(kind: EventType, **data: Any) -> TaskEvent:
    return TaskEvent(event=kind, service="query", task_id="task", global_task_id="job", tenant_id="t", seq=1, data=data)


@pytest.mark.parametrize(
    ("kind", "data", "status"),
    [
        (EventType.TASK_STATUS_UPDATE, {}, JobStatus.RUNNING),
        (EventType.TASK_STATUS_UPDATE, {"status": "retrying"}, JobStatus.RETRYING),
        (EventType.TASK_COMPLETED, {"result": 1}, JobStatus.COMPLETED),
        (EventType.TASK_FAILED, {}, JobStatus.FAILED),
        (EventType.TASK_FAILED, {"status": "timed_out"}, JobStatus.TIMED_OUT),
        (EventType.TASK_CANCELLED, {"reason": "user"}, JobStatus.CANCELLED),
        (EventType.STEP_FINISHED, {"step": "a"}, JobStatus.RUNNING),
        (EventType.STEP_FINISHED, {"step": "a", "status": "completed"}, JobStatus.RUNNING),  # a step's, not the job's
        (EventType.WORKFLOW_COMPLETED, {"final_context": {}}, JobStatus.COMPLETED),
        (EventType.WORKFLOW_FAILED, {}, JobStatus.FAILED),
        (EventType.WORKFLOW_FAILED, {"status": "cancelled"}, JobStatus.CANCELLED),
    ],
)
def test_each_event_type_moves_its_task_to_a_status_it_may_carry(
    kind: EventType, data: dict[str, Any], status: JobStatus
) -> None:
    event = _event(kind, **data)
    assert event.status is status
    assert event.checked_status() is status


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        (EventType.TASK_STATUS_UPDATE, {"status": "completed"}),  # would end a job without a result
        (EventType.TASK_FAILED, {"status": "running"}),
        (EventType.WORKFLOW_FAILED, {"status": "completed"}),
        (EventType.STEP_PROGRESS, {"status": "failed"}),  # only step_finished carries a (step's) status
        (EventType.TASK_STATUS_UPDATE, {"status": "bogus"}),
    ],
)
def test_a_status_the_event_type_cannot_carry_is_refused(kind: EventType, data: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _event(kind, **data).checked_status()
