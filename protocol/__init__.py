"""Baton's shared contract: envelope and event models, codecs, topology, priorities.

Imports nothing of Baton's other packages and no transport library.
"""

from protocol.codec import JSON, MSGPACK, CodecSet, JsonCodec, MsgpackCodec
from protocol.control import CancelCommand, DeclaredWorkflow, WorkerHeartbeat, WorkflowAnnouncement
from protocol.envelope import ContextIds, TaskEnvelope, TaskMetadata, new_id, utc_now
from protocol.errors import DecodeError, MessageTooLarge, ProtocolError, UnsupportedContentType
from protocol.events import (
    ATTEMPT_SEQ_STRIDE,
    TERMINAL_STATUSES,
    EventType,
    JobStatus,
    Progress,
    TaskEvent,
    cancelled_event,
    completed_event,
    failed_event,
    status_event,
)
from protocol.priorities import PRIORITIES, resolve_priority
from protocol.services import BUILTIN_JOB_TYPES, BUILTIN_SERVICES, RetryDefaults, ServiceProfile

__all__ = [
    "ATTEMPT_SEQ_STRIDE",
    "BUILTIN_JOB_TYPES",
    "BUILTIN_SERVICES",
    "JSON",
    "MSGPACK",
    "PRIORITIES",
    "TERMINAL_STATUSES",
    "CancelCommand",
    "CodecSet",
    "ContextIds",
    "DeclaredWorkflow",
    "DecodeError",
    "EventType",
    "JobStatus",
    "JsonCodec",
    "MessageTooLarge",
    "MsgpackCodec",
    "Progress",
    "ProtocolError",
    "RetryDefaults",
    "ServiceProfile",
    "TaskEnvelope",
    "TaskEvent",
    "TaskMetadata",
    "UnsupportedContentType",
    "WorkerHeartbeat",
    "WorkflowAnnouncement",
    "cancelled_event",
    "completed_event",
    "failed_event",
    "new_id",
    "resolve_priority",
    "status_event",
    "utc_now",
]
