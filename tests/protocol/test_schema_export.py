"""The checked-in JSON Schemas and AsyncAPI document are what the code generates, and say what the wire holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from protocol.control import CancelCommand, WorkerHeartbeat
from protocol.envelope import TaskEnvelope
from protocol.event_batch import BATCH_HEADER, MAX_BATCH_EVENTS
from protocol.events import JobStatus, Progress, status_event
from protocol.schema_export import ASYNCAPI_FILE, MODELS, REGENERATE, main
from protocol.topology import EXCHANGES

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_checked_in_documents_are_what_the_code_generates(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--check", "--docs", str(DOCS)])
    assert status == 0, capsys.readouterr().err  # the message names the files and the command to regenerate


def test_a_stale_or_missing_document_fails_the_check_naming_it_and_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--write", "--docs", str(tmp_path)]) == 0
    assert main(["--check", "--docs", str(tmp_path)]) == 0
    (tmp_path / "schemas" / "task-event.json").write_text("{}\n")
    (tmp_path / ASYNCAPI_FILE).unlink()
    capsys.readouterr()
    assert main(["--check", "--docs", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "schemas/task-event.json" in err and ASYNCAPI_FILE in err and REGENERATE in err


def test_check_or_write_must_be_chosen() -> None:
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2


def load(relative: str) -> Any:
    return json.loads((DOCS / relative).read_text())


@pytest.mark.parametrize(
    ("stem", "message"),
    [
        ("task-envelope", TaskEnvelope(global_task_id="j", tenant_id="t1", type="echo", service="svc")),
        (
            "task-event",
            status_event(
                TaskEnvelope(global_task_id="j", tenant_id="t1", type="echo", service="svc"),
                JobStatus.RUNNING,
                1_000_001,
                Progress(percentage=50),
            ),
        ),
        ("cancel-command", CancelCommand(tenant_id="t1", global_task_id="j", reason="r")),
    ],
)
def test_a_real_message_is_valid_against_its_schema(stem: str, message: Any) -> None:
    validator = jsonschema_rs.validator_for(load(f"schemas/{stem}.json"))
    validator.validate(message.model_dump(mode="json"))
    with pytest.raises(jsonschema_rs.ValidationError):
        validator.validate({**message.model_dump(mode="json"), "unexpected": 1})  # extra="forbid" is in the schema


def test_every_message_model_has_its_schema_file() -> None:
    assert sorted(p.stem for p in (DOCS / "schemas").glob("*.json")) == sorted(MODELS)
    assert load("schemas/worker-heartbeat.json")["title"] == WorkerHeartbeat.__name__


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def test_the_asyncapi_document_is_well_formed_and_covers_the_topology() -> None:
    doc = load(ASYNCAPI_FILE)
    assert doc["asyncapi"] == "2.6.0"
    assert doc["info"]["title"] and doc["info"]["version"] == "1"
    assert doc["servers"]["rabbitmq"]["protocol"] == "amqp"
    for name, channel in doc["channels"].items():
        operations = [op for op in ("publish", "subscribe") if op in channel]
        assert operations, f"channel {name} has no operation"
        assert all("message" in channel[op] and channel[op]["operationId"] for op in operations)
        assert channel["bindings"]["amqp"]["is"] == "routingKey"
        for parameter in (part[1:-1] for part in name.replace(".", " ").split() if part.startswith("{")):
            assert parameter in channel["parameters"], f"{name}: parameter {parameter} undescribed"
    every_ref = refs(doc)
    assert every_ref and all(resolve(doc, ref) is not None for ref in every_ref)  # no dangling reference
    bound = {channel["bindings"]["amqp"]["exchange"]["name"] for channel in doc["channels"].values()}
    assert bound == {exchange.name for exchange in EXCHANGES}
    kinds = {channel["bindings"]["amqp"]["exchange"]["type"] for channel in doc["channels"].values()}
    assert kinds <= {"direct", "topic", "fanout"}
    task_headers = doc["components"]["messages"]["TaskEnvelope"]["headers"]["properties"]
    assert {"x-baton-tenant", "x-baton-attempts", "traceparent"} <= task_headers.keys()
    assert set(doc["components"]["schemas"]) >= {model.__name__ for model in MODELS.values()}


def test_the_task_event_channel_carries_single_events_and_batches() -> None:
    doc = load(ASYNCAPI_FILE)
    channel = doc["channels"]["{tenant_id}.{service}.{event}"]["subscribe"]["message"]
    assert [resolve(doc, ref["$ref"])["name"] for ref in channel["oneOf"]] == ["task_event", "task_event_batch"]
    batch = doc["components"]["messages"]["TaskEventBatch"]
    headers = jsonschema_rs.validator_for(batch["headers"])
    assert headers.is_valid({BATCH_HEADER: 3})
    assert "traceparent" not in batch["headers"]["properties"]  # with tracing on each event goes alone
    assert not headers.is_valid({}) and not headers.is_valid({BATCH_HEADER: 0})
    assert not headers.is_valid({BATCH_HEADER: MAX_BATCH_EVENTS + 1})
    payload = jsonschema_rs.validator_for(batch["payload"])  # an array of byte strings, as the JSON data model has it
    assert payload.is_valid(["event 1", "event 2"])
    assert not payload.is_valid([]) and not payload.is_valid(["e"] * (MAX_BATCH_EVENTS + 1))
