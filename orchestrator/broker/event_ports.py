"""What the event consumer hands its events and announcements to, as it sees them (orchestrator.broker
imports no jobs or workflows code: orchestrator.app wires in the real ones)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from protocol.control import WorkflowAnnouncement
from protocol.events import TaskEvent

# Entered around each event's own part of its window's handling: its log context and tracing span.
EventScope = Callable[[TaskEvent], AbstractContextManager[object]]


class WindowOutcome(Protocol):
    @property
    def failed(self) -> Mapping[int, Exception]:
        """The window's events (by position) whose handling failed after the registry applied them."""
        ...


class EventSink(Protocol):
    """Where decoded events go: `orchestrator.jobs.event_sink.EventSink` applies and announces them."""

    async def accept_many(self, events: Sequence[TaskEvent], scope: EventScope | None = None) -> WindowOutcome: ...

    def refuse(self, reason: str, event: TaskEvent, routing_key: str | None = None) -> None: ...


class WorkflowAnnouncements(Protocol):
    """Where a workflow announcement goes: `orchestrator.workflows.declared.WorkflowDeclarations`."""

    async def record(self, announcement: WorkflowAnnouncement) -> object: ...
