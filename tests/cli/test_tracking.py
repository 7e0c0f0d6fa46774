"""What the CLI makes of a job's messages (no server): status, progress and steps, and when to ask the
record whether the job ended."""

from __future__ import annotations

from clients.cli.errors import describe_detail
from clients.cli.follow import Backoff
from clients.cli.tracking import JobState


def snapshot(status: str, seq: int = 3, **job: object) -> dict[str, object]:
    return {"type": "job_snapshot", "job_id": "j", "seq": seq, "job": {"status": status, "root_task_id": "t", **job}}


def test_job_status_decides_when_the_event_carries_it() -> None:
    state = JobState("j")
    state.apply(snapshot("running"))

    ask = state.apply({"event": "task_completed", "task_id": "child", "seq": 4, "job_status": "running"})
    assert (ask, state.status) == (False, "running")  # a child's completion is not the job's

    ask = state.apply({"event": "task_completed", "task_id": "t", "seq": 5, "job_status": "completed"})
    assert (ask, state.ended) == (False, True)


def test_without_job_status_an_ending_event_asks_the_record() -> None:
    state = JobState("j")
    state.apply(snapshot("queued"))

    assert state.apply({"event": "task_failed", "task_id": "child", "seq": 4, "data": {}}) is True
    assert state.status == "queued"  # the record says how the job is, not the event
    state.apply({"event": "task_status_update", "task_id": "child", "seq": 5, "data": {"status": "retrying"}})
    assert state.status == "queued"
    state.apply(
        {"event": "task_status_update", "task_id": "t", "seq": 6, "data": {"status": "running", "progress": {}}}
    )
    assert state.status == "running"


def test_progress_and_steps() -> None:
    state = JobState("j")
    state.take_steps([{"name": "a", "status": "completed"}, {"name": "b", "status": "pending"}])
    state.apply({"event": "step_started", "seq": 1, "data": {"step": "b"}})
    state.apply(
        {
            "event": "step_progress",
            "seq": 2,
            "data": {
                "step": "b",
                "progress": {"percentage": 40, "message": "m"},
                "execution_progress": {"percentage": 70},
            },
        }
    )
    assert [(s.name, s.status, s.percentage, s.message) for s in state.steps.values()] == [
        ("a", "completed", None, None),
        ("b", "running", 40.0, "m"),
    ]
    assert state.percentage == 70.0
    state.apply({"event": "step_finished", "seq": 3, "data": {"step": "b", "status": "failed"}})
    state.apply({"event": "step_progress", "seq": 4, "data": {"step": "b", "progress": {"percentage": 90}}})
    assert (state.steps["b"].status, state.steps["b"].percentage) == ("failed", 40.0)  # late progress ignored


def test_backoff_grows_to_its_ceiling_with_jitter() -> None:
    backoff = Backoff(initial_seconds=0.5, max_seconds=4.0)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0), (10_000, 4.0)]:
        delays = [backoff.delay(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays), (attempt, delays)


def test_details_become_one_line() -> None:
    pydantic_errors = [{"loc": ["body", "priority"], "msg": "bad"}, {"loc": [], "msg": "worse"}]
    assert describe_detail(pydantic_errors) == "priority: bad; worse"
    assert describe_detail("two\nlines") == "two lines"
    assert describe_detail({"a": 1}) == "{'a': 1}"
