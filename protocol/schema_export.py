"""The wire contract as documents: JSON Schema of every message model and an AsyncAPI 2.6 document of
the AMQP topology, generated from the models and `protocol.topology` and checked in under `docs/`.

    python -m protocol.schema_export --write   # regenerate docs/schemas/*.json and docs/asyncapi.json
    python -m protocol.schema_export --check   # exit 1, naming each file that differs, when they are stale

Everything is derived, nothing is typed twice: a field added to a model, a header or an exchange
renamed, and `--check` (run by the test suite) fails until the documents are regenerated.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel

from protocol.codec import JSON, MSGPACK
from protocol.control import CancelCommand, CircuitBreakerReport, LaneOpened, WorkerHeartbeat, WorkflowAnnouncement
from protocol.envelope import PROTOCOL_VERSION, TaskEnvelope
from protocol.event_batch import BATCH_HEADER, MAX_BATCH_EVENTS
from protocol.events import EventType, TaskEvent
from protocol.topology import (
    ATTEMPTS_HEADER,
    CONTROL_EXCHANGE,
    DEAD_AT_HEADER,
    DEAD_LETTER_EXCHANGE,
    ERROR_HEADER,
    ERROR_TYPE_HEADER,
    EVENTS_EXCHANGE,
    EXCHANGES,
    JOB_ID_HEADER,
    LANE_INFIX,
    ORCHESTRATOR_EVENTS_QUEUE,
    REASON_HEADER,
    RETRY_DELAY_TIERS_MS,
    RETRY_EXCHANGE,
    SYSTEM_ROUTING_PREFIX,
    TASKS_EXCHANGE,
    TENANT_HEADER,
    DeadLetterReason,
)

REGENERATE: Final[str] = "python -m protocol.schema_export --write"
ASYNCAPI_FILE: Final[str] = "asyncapi.json"
SCHEMAS_DIR: Final[str] = "schemas"
# The W3C trace context header (plumbing.tracing), present only when the sender traces.
TRACEPARENT_HEADER: Final[str] = "traceparent"

# File stem -> model: every message Baton puts on the broker.
MODELS: Final[Mapping[str, type[BaseModel]]] = {
    "task-envelope": TaskEnvelope,
    "task-event": TaskEvent,
    "worker-heartbeat": WorkerHeartbeat,
    "workflow-announcement": WorkflowAnnouncement,
    "circuit-breaker-report": CircuitBreakerReport,
    "cancel-command": CancelCommand,
    "lane-opened": LaneOpened,
}


def json_schema(stem: str, model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema (what a reader accepts), standalone."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:baton:protocol:v{PROTOCOL_VERSION}:{stem}",
        **model.model_json_schema(mode="validation"),
    }


def _component_schemas() -> dict[str, Any]:
    """Every model and nested model under components.schemas, its references pointing there."""
    found: dict[str, Any] = {}
    for model in MODELS.values():
        schema = model.model_json_schema(mode="validation", ref_template="#/components/schemas/{model}")
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return dict(sorted(found.items()))


def _header(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "description": description}


_TRACE: Final = {TRACEPARENT_HEADER: _header("W3C trace context, when the sender traces", {"type": "string"})}
_TASK_HEADER_PROPERTIES: Final = {
    TENANT_HEADER: _header("the task's tenant (a claim, checked against the registry)", {"type": "string"}),
    ATTEMPTS_HEADER: _header("the task's attempt", {"type": "integer", "minimum": 1}),
    **_TRACE,
}
_TASK_HEADERS: Final = {"type": "object", "properties": _TASK_HEADER_PROPERTIES}
_DEAD_LETTER_HEADERS: Final = {
    "type": "object",
    "properties": {
        **_TASK_HEADER_PROPERTIES,
        REASON_HEADER: _header("why Baton parked it", {"type": "string", "enum": [r.value for r in DeadLetterReason]}),
        ERROR_HEADER: _header("the error, clipped", {"type": "string"}),
        ERROR_TYPE_HEADER: _header("the error's type", {"type": "string"}),
        JOB_ID_HEADER: _header("the job of the task", {"type": "string"}),
        DEAD_AT_HEADER: _header("when it was parked (ISO 8601)", {"type": "string"}),
    },
}
_EVENT_HEADERS: Final = {"type": "object", "properties": dict(_TRACE)}
_EVENT_BATCH_HEADERS: Final = {
    "type": "object",
    "required": [BATCH_HEADER],
    "properties": {
        BATCH_HEADER: _header(
            "how many events it carries", {"type": "integer", "minimum": 1, "maximum": MAX_BATCH_EVENTS}
        ),
    },  # no trace context: with tracing on a worker sends each event alone, its context in its headers
}


def _message(name: str, model: type[BaseModel], summary: str, headers: Mapping[str, Any] | None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": name,
        "title": model.__name__,
        "summary": summary,
        "contentType": MSGPACK,
        "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
    }
    if headers is not None:
        message["headers"] = headers
    return message


def _event_batch_message() -> dict[str, Any]:
    """protocol.event_batch: its payload is not a model but an array of encoded TaskEvents."""
    return {
        "name": "task_event_batch",
        "title": "TaskEvent batch",
        "summary": "Several outcomes of one tenant, service and event kind that a worker finished together.",
        "description": f"The body is a msgpack ({MSGPACK}) array whatever the content type, which is that of "
        "each item: a TaskEvent encoded as a single event's body would be. The routing key is theirs.",
        "contentType": MSGPACK,
        "headers": _EVENT_BATCH_HEADERS,
        "payload": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_BATCH_EVENTS,
            "items": {"type": "string", "format": "binary", "description": "an encoded TaskEvent (a byte string)"},
        },
    }


def _exchange_binding(exchange: str, queue: str | None = None) -> dict[str, Any]:
    kind = next(spec.kind for spec in EXCHANGES if spec.name == exchange)
    binding: dict[str, Any] = {
        "is": "routingKey",
        "exchange": {"name": exchange, "type": kind, "durable": True, "autoDelete": False, "vhost": "/"},
        "bindingVersion": "0.2.0",
    }
    if queue is not None:
        binding["queue"] = {"name": queue, "durable": True, "exclusive": False, "autoDelete": False, "vhost": "/"}
    return {"amqp": binding}


_PARAMETERS: Final = {
    "service": {"description": "a service name", "schema": {"type": "string"}},
    "tenant_id": {"description": "a tenant id", "schema": {"type": "string"}},
    "event": {"description": "the event type", "schema": {"type": "string", "enum": [e.value for e in EventType]}},
    "delay_ms": {
        "description": "a retry delay tier in milliseconds",
        "schema": {"type": "integer", "enum": list(RETRY_DELAY_TIERS_MS)},
    },
}


def _params(*names: str) -> dict[str, Any]:
    return {name: _PARAMETERS[name] for name in names}


def _ref(message: str) -> dict[str, str]:
    return {"$ref": f"#/components/messages/{message}"}


def asyncapi() -> dict[str, Any]:
    """The AMQP contract: one channel per (exchange, routing key pattern), from the worker's or the
    orchestrator's side as AsyncAPI 2 reads it (`subscribe`: what a consumer of the channel receives)."""
    channels: dict[str, Any] = {
        "{service}": {
            "description": f"`{TASKS_EXCHANGE}` -> queue `baton.{{service}}`: retries, replays and child tasks.",
            "parameters": _params("service"),
            "bindings": _exchange_binding(TASKS_EXCHANGE, "baton.{service}"),
            "subscribe": {"operationId": "receiveTask", "message": _ref("TaskEnvelope")},
        },
        f"{{service}}.{LANE_INFIX}.{{tenant_id}}": {
            "description": f"`{TASKS_EXCHANGE}` -> a tenant's lane `baton.{{service}}.{LANE_INFIX}.{{tenant_id}}`.",
            "parameters": _params("service", "tenant_id"),
            "bindings": _exchange_binding(TASKS_EXCHANGE, f"baton.{{service}}.{LANE_INFIX}.{{tenant_id}}"),
            "subscribe": {"operationId": "receiveLaneTask", "message": _ref("TaskEnvelope")},
        },
        "{service}.{delay_ms}": {
            "description": f"`{RETRY_EXCHANGE}`: a delayed retry, back on `{TASKS_EXCHANGE}` when its TTL ends.",
            "parameters": _params("service", "delay_ms"),
            "bindings": _exchange_binding(RETRY_EXCHANGE, "baton.{service}.retry.{delay_ms}"),
            "publish": {"operationId": "scheduleRetry", "message": _ref("TaskEnvelope")},
        },
        f"{DEAD_LETTER_EXCHANGE}/{{service}}": {
            "description": f"`{DEAD_LETTER_EXCHANGE}` -> `baton.{{service}}.dead`: parked tasks, as received.",
            "parameters": _params("service"),
            "bindings": _exchange_binding(DEAD_LETTER_EXCHANGE, "baton.{service}.dead"),
            "subscribe": {"operationId": "receiveDeadLetter", "message": _ref("DeadLetter")},
        },
        "{tenant_id}.{service}.{event}": {
            "description": f"`{EVENTS_EXCHANGE}` -> `{ORCHESTRATOR_EVENTS_QUEUE}`: task events.",
            "parameters": _params("tenant_id", "service", "event"),
            "bindings": _exchange_binding(EVENTS_EXCHANGE, ORCHESTRATOR_EVENTS_QUEUE),
            "subscribe": {
                "operationId": "receiveTaskEvent",
                "message": {"oneOf": [_ref("TaskEvent"), _ref("TaskEventBatch")]},
            },
        },
        f"{SYSTEM_ROUTING_PREFIX}.{{service}}.worker_heartbeat": {
            "description": f"`{EVENTS_EXCHANGE}`: a worker's heartbeat (not persistent).",
            "parameters": _params("service"),
            "bindings": _exchange_binding(EVENTS_EXCHANGE, ORCHESTRATOR_EVENTS_QUEUE),
            "subscribe": {"operationId": "receiveHeartbeat", "message": _ref("WorkerHeartbeat")},
        },
        f"{SYSTEM_ROUTING_PREFIX}.{{service}}.workflows": {
            "description": f"`{EVENTS_EXCHANGE}`: the workflows a service declares, announced again periodically.",
            "parameters": _params("service"),
            "bindings": _exchange_binding(EVENTS_EXCHANGE, ORCHESTRATOR_EVENTS_QUEUE),
            "subscribe": {"operationId": "receiveWorkflowAnnouncement", "message": _ref("WorkflowAnnouncement")},
        },
        f"{SYSTEM_ROUTING_PREFIX}.{{service}}.circuit_breakers": {
            "description": f"`{EVENTS_EXCHANGE}`: a worker's circuit breakers, reported with its heartbeat.",
            "parameters": _params("service"),
            "bindings": _exchange_binding(EVENTS_EXCHANGE, ORCHESTRATOR_EVENTS_QUEUE),
            "subscribe": {"operationId": "receiveBreakerReport", "message": _ref("CircuitBreakerReport")},
        },
        CONTROL_EXCHANGE: {
            "description": f"`{CONTROL_EXCHANGE}` (fanout) -> each worker's `baton.control.<worker_id>` queue.",
            "bindings": _exchange_binding(CONTROL_EXCHANGE),
            "subscribe": {
                "operationId": "receiveControl",
                "message": {"oneOf": [_ref("CancelCommand"), _ref("LaneOpened")]},
            },
        },
    }
    messages = {
        "TaskEnvelope": _message("task", TaskEnvelope, "One unit of work on a service queue.", _TASK_HEADERS),
        "DeadLetter": _message("dead_letter", TaskEnvelope, "A task Baton parked, with why.", _DEAD_LETTER_HEADERS),
        "TaskEvent": _message("task_event", TaskEvent, "A state change of one task.", _EVENT_HEADERS),
        "TaskEventBatch": _event_batch_message(),
        "WorkerHeartbeat": _message("worker_heartbeat", WorkerHeartbeat, "A worker is alive.", None),
        "WorkflowAnnouncement": _message(
            "workflow_announcement", WorkflowAnnouncement, "Workflows a service declares.", None
        ),
        "CircuitBreakerReport": _message(
            "circuit_breakers", CircuitBreakerReport, "A worker's circuit breakers.", None
        ),
        "CancelCommand": _message("cancel", CancelCommand, "Stop a job's running tasks.", None),
        "LaneOpened": _message("lane_opened", LaneOpened, "Consume a tenant's new lane.", None),
    }
    return {
        "asyncapi": "2.6.0",
        "info": {
            "title": "Baton AMQP contract",
            "version": f"{PROTOCOL_VERSION}",
            "description": f"Generated by `{REGENERATE}` from protocol/; do not edit. Bodies are msgpack "
            f"({MSGPACK}) or JSON ({JSON}), chosen by the AMQP content type.",
        },
        "defaultContentType": MSGPACK,
        "servers": {"rabbitmq": {"url": "amqp://localhost:5672/", "protocol": "amqp", "protocolVersion": "0-9-1"}},
        "channels": channels,
        "components": {"messages": messages, "schemas": _component_schemas()},
    }


def documents() -> dict[str, str]:
    """Path under docs/ -> the text it must hold."""
    found = {f"{SCHEMAS_DIR}/{stem}.json": _text(json_schema(stem, model)) for stem, model in MODELS.items()}
    found[ASYNCAPI_FILE] = _text(asyncapi())
    return found


def _text(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def stale(docs: Path) -> list[str]:
    """The documents under `docs` that differ from what the code generates (or are missing)."""
    differing = []
    for relative, text in documents().items():
        path = docs / relative
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            differing.append(relative)
    return differing


def write(docs: Path) -> list[str]:
    """Write every document that differs; the ones written."""
    written = stale(docs)
    for relative, text in documents().items():
        if relative in written:
            path = docs / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m protocol.schema_export", description="JSON Schema and AsyncAPI of Baton's messages."
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 when the checked-in documents are stale")
    mode.add_argument("--write", action="store_true", help="regenerate the documents")
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="the docs directory (default: docs)")
    args = parser.parse_args(argv)
    if args.write:
        for relative in write(args.docs):
            print(f"wrote {args.docs / relative}")
        return 0
    differing = stale(args.docs)
    if differing:
        print(f"stale in {args.docs}: {', '.join(differing)}; regenerate with: {REGENERATE}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
