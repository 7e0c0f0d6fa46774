"""The POST /jobs and POST /jobs/batch answers are made as dicts: each equals what its schema model
(JobAccepted, BatchItem: the OpenAPI document's) dumps, key order included."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.errors import PublishFailed, PublishUncertain, QuotaExceeded, UnknownJobType
from orchestrator.http.job_routes import accepted_body, batch_item
from orchestrator.http.schemas import BatchItem, JobAccepted
from orchestrator.jobs.service import Submission
from tests.records import make_record

RESULT = {"answer": [1, None, {"x": None}], "text": "é"}
ERROR = {"error": "boom", "error_type": "ValueError", "attempts": 1}


def submissions() -> list[Submission]:
    queued = make_record("t-a")
    completed = queued.model_copy(update={"status": "completed", "result": RESULT})
    failed = queued.model_copy(update={"status": "failed", "error": ERROR})
    return [
        Submission(queued, created=True),
        Submission(queued, created=False),
        Submission(queued, created=False, coalesced=True),
        Submission(completed, created=False, from_cache=True),
        Submission(completed.model_copy(update={"result": None}), created=False, from_cache=True),
        Submission(completed, created=True),
        Submission(failed, created=True),
    ]


def as_listed(body: dict[str, Any]) -> list[tuple[str, Any]]:
    return list(body.items())


@pytest.mark.parametrize("submission", submissions())
def test_the_accepted_body_is_the_models_dump(submission: Submission) -> None:
    body = accepted_body(submission)
    assert as_listed(body) == as_listed(JobAccepted.model_validate(body).model_dump(mode="json"))


@pytest.mark.parametrize(
    "outcome",
    [
        *submissions(),
        UnknownJobType("nope", {"llm_request": "query"}),
        PublishUncertain("job-9", PublishFailed("no confirm", "timeout")),
        QuotaExceeded("t-a", 3, 1, 10, 0.5),
        RuntimeError("a bug"),
    ],
)
def test_a_batch_item_is_the_models_dump_without_nones(outcome: Submission | Exception) -> None:
    item = batch_item(7, outcome)
    expected = BatchItem.model_validate(item).model_dump(mode="json", exclude_none=True)
    assert as_listed(item) == as_listed(expected)
    assert item["index"] == 7
    if isinstance(outcome, Submission):
        assert item["job_id"] == outcome.record.job_id and "error" not in item
        assert ("result" in item) == (outcome.from_cache and outcome.record.result is not None)
    else:
        assert item["error"] and ("job_id" in item) == isinstance(outcome, PublishUncertain)
