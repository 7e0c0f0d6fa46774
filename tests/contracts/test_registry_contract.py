"""What the job side relies on from a TaskRegistry, checked on FakeTaskRegistry and RedisTaskRegistry."""

from __future__ import annotations

from datetime import timedelta

from orchestrator.jobs.ports import TaskRegistry
from orchestrator.models import CancelStatus, CreateStatus
from protocol.envelope import new_id, utc_now
from protocol.events import ATTEMPT_SEQ_STRIDE, EventType
from tests.records import event_for, make_record

FIRST = ATTEMPT_SEQ_STRIDE  # seqs of a task's first attempt start here


async def test_a_created_job_reads_back_with_its_root_task_for_its_tenant_only(
    registry: TaskRegistry, tenant: str
) -> None:
    record = make_record(tenant, session_id="s-1")
    created = await registry.create(record)
    assert created.status is CreateStatus.CREATED
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored == created.record
    assert stored.model_dump(exclude={"delegated_services"}) == record.model_dump(exclude={"delegated_services"})
    assert stored.delegated_services == [{"service": "query", "task_id": record.root_task_id, "status": "queued"}]
    assert await registry.get(tenant + "x", record.job_id) is None
    assert await registry.get(tenant, new_id()) is None


async def test_the_stored_envelope_is_read_only_when_asked_for(registry: TaskRegistry, tenant: str) -> None:
    envelope = {"task_id": "t-1", "payload": {"text": "hello"}}
    record = make_record(tenant).model_copy(update={"envelope": envelope})
    await registry.create(record)
    plain = await registry.get(tenant, record.job_id)
    assert plain is not None and plain.envelope is None  # it holds the whole payload: plain reads leave it out
    whole = await registry.get_with_envelope(tenant, record.job_id)
    assert whole is not None and whole.envelope == envelope
    assert whole.model_copy(update={"envelope": None}) == plain
    without = make_record(tenant)
    await registry.create(without)
    found = await registry.get_with_envelope(tenant, without.job_id)
    assert found is not None and found.envelope is None
    assert await registry.get_with_envelope(tenant + "x", record.job_id) is None
    assert await registry.get_with_envelope(tenant, new_id()) is None


async def test_an_idempotency_key_finds_the_same_request_and_refuses_a_different_one(
    registry: TaskRegistry, tenant: str
) -> None:
    first = make_record(tenant)
    assert (await registry.create(first, idempotency_key="k", fingerprint="f1")).status is CreateStatus.CREATED
    again = await registry.create(make_record(tenant), idempotency_key="k", fingerprint="f1")
    assert again.status is CreateStatus.EXISTING and again.record.job_id == first.job_id
    other = await registry.create(make_record(tenant), idempotency_key="k", fingerprint="f2")
    assert other.status is CreateStatus.CONFLICT and other.record.job_id == first.job_id
    # Another tenant's key of the same name is its own.
    elsewhere = await registry.create(make_record(tenant + "x"), idempotency_key="k", fingerprint="f2")
    assert elsewhere.status is CreateStatus.CREATED
    await registry.discard(tenant + "x", elsewhere.record.job_id)


async def test_a_discarded_job_is_gone_and_frees_its_idempotency_key(registry: TaskRegistry, tenant: str) -> None:
    first = make_record(tenant, session_id="s-1")
    await registry.create(first, idempotency_key="k", fingerprint="f")
    await registry.discard(tenant, first.job_id)
    assert await registry.get(tenant, first.job_id) is None
    assert await registry.list_jobs(tenant) == ([], 0)
    assert await registry.list_jobs(tenant, session_id="s-1") == ([], 0)
    retry = make_record(tenant)
    created = await registry.create(retry, idempotency_key="k", fingerprint="f")
    assert created.status is CreateStatus.CREATED and created.record.job_id == retry.job_id
    await registry.discard(tenant, new_id())  # an unknown job: nothing to do, no error


async def test_listing_is_newest_first_filtered_and_paged(registry: TaskRegistry, tenant: str) -> None:
    start = utc_now() - timedelta(seconds=100)
    records = [
        make_record(tenant, created_at=start + timedelta(seconds=i), session_id="s-1" if i % 2 else None)
        for i in range(5)
    ]
    embedding = make_record(tenant, job_type="embedding_request", service="embedding", created_at=start)
    for record in [*records, embedding]:
        await registry.create(record)
    newest_first = [r.job_id for r in reversed(records)]

    page, total = await registry.list_jobs(tenant, type="llm_request", offset=1, limit=2)
    assert total == 5 and [r.job_id for r in page] == newest_first[1:3]
    session, total = await registry.list_jobs(tenant, session_id="s-1")
    assert total == 2 and [r.job_id for r in session] == [records[3].job_id, records[1].job_id]
    assert (await registry.list_jobs(tenant, limit=0))[1] == 6

    await registry.apply(event_for(records[0], EventType.TASK_COMPLETED, FIRST + 1, result=1))
    completed, total = await registry.list_jobs(tenant, status="completed")
    assert total == 1 and [r.job_id for r in completed] == [records[0].job_id]
    assert (await registry.list_jobs(tenant, status="queued"))[1] == 5
    assert (await registry.list_jobs(tenant + "x")) == ([], 0)


async def test_a_time_window_keeps_jobs_created_at_or_after_and_strictly_before(
    registry: TaskRegistry, tenant: str
) -> None:
    start = utc_now().replace(microsecond=0) - timedelta(seconds=100)
    records = [
        make_record(tenant, created_at=start + timedelta(seconds=i), session_id="s-1" if i % 2 else None)
        for i in range(5)
    ]
    for record in records:
        await registry.create(record)
    at = [start + timedelta(seconds=i) for i in range(5)]

    window, total = await registry.list_jobs(tenant, created_after=at[1], created_before=at[4])
    assert total == 3 and [r.job_id for r in window] == [records[3].job_id, records[2].job_id, records[1].job_id]
    paged, total = await registry.list_jobs(tenant, created_after=at[1], offset=1, limit=1)
    assert total == 4 and [r.job_id for r in paged] == [records[3].job_id]
    # With another filter the window applies to the intersection.
    session, total = await registry.list_jobs(tenant, session_id="s-1", created_before=at[3])
    assert total == 1 and [r.job_id for r in session] == [records[1].job_id]
    # A time without a zone is UTC.
    naive = at[3].replace(tzinfo=None)
    assert (await registry.list_jobs(tenant, created_after=naive))[1] == 2
    assert await registry.list_jobs(tenant, created_after=at[4] + timedelta(milliseconds=1)) == ([], 0)


async def test_events_apply_in_seq_order_and_renumber_with_the_jobs_own_seq(
    registry: TaskRegistry, tenant: str
) -> None:
    record = make_record(tenant)
    await registry.create(record)
    progress = {"percentage": 50.0, "message": "half"}
    running = await registry.apply(event_for(record, EventType.TASK_STATUS_UPDATE, FIRST + 2, status="running"))
    assert running.dropped is None and running.update is not None
    assert (running.update.seq, running.update.status, running.update.terminal) == (2, "running", False)
    assert running.update.event["seq"] == 2 and running.job_type == record.type

    late = await registry.apply(event_for(record, EventType.TASK_STATUS_UPDATE, FIRST + 1, status="running"))
    assert (late.update, late.dropped) == (None, "stale")
    repeated = await registry.apply(event_for(record, EventType.TASK_STATUS_UPDATE, FIRST + 2, status="running"))
    assert repeated.dropped == "stale"

    moved = await registry.apply(
        event_for(record, EventType.TASK_STATUS_UPDATE, FIRST + 3, status="running", progress=progress)
    )
    assert moved.update is not None and moved.update.seq == 3
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and (stored.status, stored.seq, stored.progress) == ("running", 3, progress)


async def test_a_window_of_events_applies_in_order_as_one_by_one_would(registry: TaskRegistry, tenant: str) -> None:
    record, other = make_record(tenant), make_record(tenant + "x")
    for created in (record, other):
        await registry.create(created)
    window = [
        event_for(record, EventType.TASK_STATUS_UPDATE, FIRST + 1, status="running"),
        event_for(other, EventType.TASK_STATUS_UPDATE, FIRST + 1, status="running"),
        event_for(record, EventType.TASK_STATUS_UPDATE, FIRST + 1, status="running"),  # a repeat
        event_for(record, EventType.TASK_STATUS_UPDATE, FIRST + 1, status="completed"),  # not an outcome's event
        event_for(record, EventType.TASK_COMPLETED, FIRST + 2, result={"answer": 42}),
        event_for(record, EventType.TASK_STATUS_UPDATE, FIRST + 3, status="running"),  # after the end
        event_for(make_record(tenant), EventType.TASK_STATUS_UPDATE, FIRST + 1, status="running"),
    ]
    outcomes = await registry.apply_many(window)
    assert [o.dropped for o in outcomes] == [
        None,
        None,
        "stale",
        "invalid_status",
        None,
        "job_terminal",
        "unknown_job",
    ]
    assert [(o.update.job_id, o.update.seq, o.update.status) for o in outcomes if o.update is not None] == [
        (record.job_id, 2, "running"),
        (other.job_id, 2, "running"),
        (record.job_id, 3, "completed"),
    ]
    assert outcomes[4].job_type == record.type and outcomes[4].created_at == record.created_at
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and (stored.status, stored.seq, stored.result) == ("completed", 3, {"answer": 42})
    assert await registry.apply_many([]) == []
    await registry.discard(tenant + "x", other.job_id)


async def test_an_outcome_is_applied_past_progress_that_overtook_it_and_then_nothing_moves_the_job(
    registry: TaskRegistry, tenant: str
) -> None:
    record = make_record(tenant)
    await registry.create(record)
    await registry.apply(event_for(record, EventType.TASK_STATUS_UPDATE, FIRST + 5, status="running"))
    done = await registry.apply(event_for(record, EventType.TASK_COMPLETED, FIRST + 4, result={"answer": 42}))
    assert done.update is not None and done.update.terminal and done.update.status == "completed"

    for late in (
        event_for(record, EventType.TASK_STATUS_UPDATE, FIRST + 9, status="running"),
        event_for(record, EventType.TASK_FAILED, FIRST + 10, error="x", error_type="E"),
        event_for(record, EventType.TASK_STATUS_UPDATE, 2 * FIRST + 1, status="running"),
    ):
        assert (await registry.apply(late)).dropped == "job_terminal"
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and (stored.status, stored.result) == ("completed", {"answer": 42})
    assert stored.delegated_services[0]["status"] == "completed"


async def test_a_failure_records_its_error_and_a_child_task_does_not_move_the_job(
    registry: TaskRegistry, tenant: str
) -> None:
    record = make_record(tenant)
    await registry.create(record)
    child = new_id()
    applied = await registry.apply(
        event_for(record, EventType.TASK_STATUS_UPDATE, FIRST + 1, task_id=child, service="embedding", status="running")
    )
    assert applied.update is not None and applied.update.status == "queued"  # the job's status, unmoved
    trace = 'Traceback (most recent call last):\n  File "app.py", line 3, in handle\nValueError: boom\n'
    failed = await registry.apply(
        event_for(
            record, EventType.TASK_FAILED, FIRST + 1, error="boom", error_type="ValueError", attempts=1, traceback=trace
        )
    )
    assert failed.update is not None and failed.update.status == "failed" and failed.update.seq == 3
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and stored.error == {
        "error": "boom",
        "error_type": "ValueError",
        "attempts": 1,
        "status": "failed",
        "traceback": trace,
    }
    assert {e["task_id"]: e["status"] for e in stored.delegated_services} == {
        record.root_task_id: "failed",
        child: "running",
    }


async def test_events_no_producer_of_the_job_sends_are_refused(registry: TaskRegistry, tenant: str) -> None:
    record = make_record(tenant)
    await registry.create(record)
    refusals = {
        "invalid_status": event_for(record, EventType.TASK_STATUS_UPDATE, FIRST + 1, status="completed"),
        "wrong_service": event_for(record, EventType.TASK_STATUS_UPDATE, FIRST + 1, service="other", status="running"),
        "seq_out_of_range": event_for(record, EventType.TASK_STATUS_UPDATE, 5000 * FIRST, status="running"),
    }
    for reason, event in refusals.items():
        assert (await registry.apply(event)).dropped == reason
    unknown = event_for(make_record(tenant), EventType.TASK_STATUS_UPDATE, FIRST + 1, status="running")
    assert (await registry.apply(unknown)).dropped == "unknown_job"
    stored = await registry.get(tenant, record.job_id)
    assert stored is not None and (stored.status, stored.seq) == ("queued", 1)


async def test_cancel_ends_an_open_job_once_and_never_a_finished_one(registry: TaskRegistry, tenant: str) -> None:
    queued = make_record(tenant)
    await registry.create(queued)
    result, update = await registry.cancel(tenant, queued.job_id, "changed my mind")
    assert result.status is CancelStatus.CANCELLED and result.record is not None
    assert (result.record.status, result.record.seq) == ("cancelled", 2)
    assert result.record.error == {"reason": "changed my mind", "status": "cancelled"}
    assert result.record.delegated_services[0]["status"] == "cancelled"
    assert update is not None and (update.seq, update.status, update.terminal) == (2, "cancelled", True)
    assert update.event["event"] == "task_cancelled" and update.event["data"]["reason"] == "changed my mind"

    again, no_update = await registry.cancel(tenant, queued.job_id, "twice")
    assert again.status is CancelStatus.ALREADY_TERMINAL and no_update is None
    late = event_for(queued, EventType.TASK_COMPLETED, FIRST + 1, result=1)
    assert (await registry.apply(late)).dropped == "job_terminal"

    completed = make_record(tenant)
    await registry.create(completed)
    await registry.apply(event_for(completed, EventType.TASK_COMPLETED, FIRST + 1, result=1))
    lost, _ = await registry.cancel(tenant, completed.job_id, "too late")
    assert lost.status is CancelStatus.ALREADY_TERMINAL
    assert lost.record is not None and lost.record.status == "completed"

    missing, _ = await registry.cancel(tenant, new_id(), "who?")
    assert (missing.status, missing.record) == (CancelStatus.NOT_FOUND, None)
    other_tenant, _ = await registry.cancel(tenant + "x", completed.job_id, "not mine")
    assert other_tenant.status is CancelStatus.NOT_FOUND
