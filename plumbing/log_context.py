"""The ids a log record is about (tenant, job, task, request, service, worker), kept in a context variable.

Set where a request, a task or an event is handled (`log_context(...)` around the work) and read by
`plumbing.logs` when a record is formatted. A context variable, not a logging filter holding state:
asyncio copies it into every task, so concurrent tasks each log their own ids, and a task started
inside a `log_context` block keeps the ids it was started with.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Final

# The ids a record may carry, in the order they are written.
CONTEXT_IDS: Final[tuple[str, ...]] = ("service", "worker_id", "tenant_id", "job_id", "task_id", "request_id")

_KNOWN: Final[frozenset[str]] = frozenset(CONTEXT_IDS)
_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_ids: ContextVar[Mapping[str, str]] = ContextVar("baton_log_ids", default=_EMPTY)


def current_ids() -> Mapping[str, str]:
    """The ids of the code running now (read-only)."""
    return _ids.get()


def _merged(ids: Mapping[str, str | None]) -> Mapping[str, str]:
    # Called several times per request and per job: no sets built when every name is known.
    if not _KNOWN.issuperset(ids):
        unknown = sorted(set(ids) - _KNOWN)
        raise ValueError(f"not a log context id: {unknown} (known: {', '.join(CONTEXT_IDS)})")
    merged = dict(_ids.get())
    for name, value in ids.items():
        if value:
            merged[name] = value
    return MappingProxyType(merged)


@contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Records logged inside the block carry `ids` (None and empty ones left out), on top of the outer ones."""
    token = _ids.set(_merged(ids))
    try:
        yield
    finally:
        _ids.reset(token)


def bind_log_context(**ids: str | None) -> None:
    """Add `ids` for the rest of the current task (and the tasks it starts from now on): for a process's
    own ids (its service and worker id), set once where it starts."""
    _ids.set(_merged(ids))
