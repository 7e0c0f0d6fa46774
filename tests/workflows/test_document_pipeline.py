"""The `document_processing` workflow the ingestion service declares: valid against the built-in job
types, and its stages without a broker."""

from __future__ import annotations

from orchestrator.workflows.definition import parse_definition
from protocol.services import BUILTIN_JOB_TYPES
from workers.services import document_pipeline, ingestion


def test_the_ingestion_service_declares_a_valid_fan_out_and_join() -> None:
    declared = ingestion.worker.workflows[document_pipeline.WORKFLOW_ID]
    plan = parse_definition(declared.definition(), BUILTIN_JOB_TYPES)
    embeds = tuple(f"embed_{i}" for i in range(document_pipeline.EMBED_BATCHES))
    assert plan.dependencies["split"] == ()
    assert all(plan.dependencies[name] == ("split",) for name in embeds)
    assert plan.dependencies["index"] == embeds
    # Declared under the job type's own id, with the index step's result as the execution's (and the job's).
    assert declared.workflow_id == "document_processing" and plan.definition.output == "$steps.index.result"
    assert ingestion.worker.job_types == ["document_processing"]  # the stages are that job type's


def test_the_summary_is_the_first_sentences() -> None:
    texts = ["Baton runs jobs. It uses RabbitMQ!", "It keeps state in Redis. And more. Even more."]
    assert document_pipeline.summarise(texts, 3) == "Baton runs jobs. It uses RabbitMQ! It keeps state in Redis."
    assert document_pipeline.summarise(["no full stop here"], 3) == "no full stop here"
