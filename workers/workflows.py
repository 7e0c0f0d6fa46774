"""Workflows declared in Python beside a worker's handlers, announced like its job types.

    worker.workflow(
        "document_pipeline",
        name="Split, embed, index",
        steps=[
            step("split", "document_split", payload={"text": "$input.text"}),
            step("embed", "embedding_request", payload={"texts": "$steps.split.result.texts"}),
        ],
    )

The definition is the body `PUT /workflows/{id}` takes. The worker announces its declarations when it
starts and every few heartbeats; the orchestrator validates each against the job types it knows and
offers the valid ones to every tenant (a tenant's own definition of the same id wins). Only the shape
is checked here: the workflow rules (order, references, job types) are the orchestrator's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from protocol.control import WORKFLOW_ID_PATTERN, DeclaredWorkflow
from protocol.names import JOB_TYPE_PATTERN, is_job_type
from workers.errors import ConfigurationError

_WORKFLOW_ID_RE = re.compile(WORKFLOW_ID_PATTERN)


def step(
    name: str,
    type: str,
    *,
    payload: Mapping[str, Any] | None = None,
    after: Sequence[str] | None = None,
    kind: Literal["worker", "external"] = "worker",
    retry: int | None = None,
    timeout_ms: int | None = None,
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One step of a declared workflow, as the definition's JSON has it (unset fields left out)."""
    if not is_job_type(type):
        raise ConfigurationError(f"step {name!r}: job type {type!r} must match {JOB_TYPE_PATTERN}")
    entry: dict[str, Any] = {"name": name, "type": type}
    if payload is not None:
        entry["payload"] = dict(payload)
    if after is not None:
        entry["after"] = list(after)
    if kind != "worker":
        entry["kind"] = kind
    if retry is not None:
        entry["retry"] = retry
    if timeout_ms is not None:
        entry["timeout_ms"] = timeout_ms
    if config is not None:
        entry["config"] = dict(config)
    return entry


@dataclass(frozen=True)
class WorkflowDeclaration:
    workflow_id: str
    name: str
    steps: tuple[Mapping[str, Any], ...]
    on_failure: Literal["stop", "continue"] = "stop"
    output: str | None = None

    def definition(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "steps": [dict(s) for s in self.steps],
            "on_failure": self.on_failure,
        }
        if self.output is not None:
            body["output"] = self.output  # absent otherwise: what orchestrators without the field accept
        return body

    def announced(self) -> DeclaredWorkflow:
        return DeclaredWorkflow(workflow_id=self.workflow_id, definition=self.definition())


def declaration(
    workflow_id: str,
    *,
    name: str,
    steps: Sequence[Mapping[str, Any]],
    on_failure: Literal["stop", "continue"],
    output: str | None = None,
) -> WorkflowDeclaration:
    """A declaration whose shape can be announced; ConfigurationError otherwise."""
    if _WORKFLOW_ID_RE.fullmatch(workflow_id) is None:
        raise ConfigurationError(f"workflow id {workflow_id!r} must match {WORKFLOW_ID_PATTERN}")
    if not name:
        raise ConfigurationError(f"workflow {workflow_id!r} needs a name")
    if not steps:
        raise ConfigurationError(f"workflow {workflow_id!r} needs at least one step")
    for entry in steps:
        if not isinstance(entry.get("name"), str) or not isinstance(entry.get("type"), str):
            raise ConfigurationError(f"workflow {workflow_id!r}: every step needs a `name` and a `type`: {entry!r}")
    if on_failure not in ("stop", "continue"):
        raise ConfigurationError(f"workflow {workflow_id!r}: on_failure must be 'stop' or 'continue'")
    if output is not None and not output.startswith(("$steps.", "$input")):
        raise ConfigurationError(f"workflow {workflow_id!r}: output must be a $steps.<step>.result or $input reference")
    return WorkflowDeclaration(workflow_id, name, tuple(dict(entry) for entry in steps), on_failure, output)
