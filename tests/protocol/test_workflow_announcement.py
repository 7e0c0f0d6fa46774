"""WorkflowAnnouncement: a message of its own beside the heartbeat (protocol v1 addition)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from protocol.codec import JSON, MSGPACK, CodecSet
from protocol.control import DeclaredWorkflow, WorkerHeartbeat, WorkflowAnnouncement
from protocol.errors import DecodeError

CODECS = CodecSet()
ANNOUNCEMENT = WorkflowAnnouncement(
    worker_id="w-1",
    service="ingestion",
    workflows=[DeclaredWorkflow(workflow_id="document_processing", definition={"name": "d", "steps": []})],
)


@pytest.mark.parametrize("content_type", [MSGPACK, JSON])
def test_it_round_trips_through_both_codecs(content_type: str) -> None:
    body = CODECS.encode(ANNOUNCEMENT, CODECS.for_content_type(content_type))
    assert CODECS.decode(WorkflowAnnouncement, body, content_type) == ANNOUNCEMENT


def test_an_orchestrator_that_only_knows_heartbeats_drops_it_as_undecodable() -> None:
    with pytest.raises(DecodeError):
        CODECS.decode(WorkerHeartbeat, CODECS.encode(ANNOUNCEMENT), MSGPACK)


@pytest.mark.parametrize("workflow_id", ["", "a/b", "a:b", "a b", "_hidden", "x" * 129, "a\n"])
def test_a_workflow_id_fit_for_urls_and_redis_fields(workflow_id: str) -> None:
    with pytest.raises(ValidationError):
        DeclaredWorkflow(workflow_id=workflow_id, definition={})


def test_an_announcement_names_at_least_one_workflow() -> None:
    with pytest.raises(ValidationError):
        WorkflowAnnouncement(worker_id="w-1", service="ingestion", workflows=[])
