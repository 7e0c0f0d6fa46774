"""Whose is a parked message whose body cannot be read? Only the registry can say.

Its tenant then comes from a header (`x-baton-tenant`, set by Baton's publishers and copied by
the worker that parked it) or from a hint the worker read in a body that was not an envelope.
Anyone who can publish to the broker can write either, so neither is proof: a tenant is shown
such a message only when the registry holds the job it names (correlation id or
`x-baton-job-id`) under that tenant, with the message's task id as the job's root task or one of
its delegated tasks. Task and job ids are random uuids, so a message cannot be attributed to a
tenant by someone who does not know that tenant's job; anything unattributable is the admin's.
"""

from __future__ import annotations

import json
from typing import Any, Final

import redis.asyncio as aioredis

from orchestrator.store import keys
from orchestrator.store.codec import text
from orchestrator.store.registry import redis_errors
from protocol.names import is_tenant_id

_MAX_ID_CHARS: Final[int] = 128  # as TaskEnvelope's ids


class TaskOwners:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def owns(self, tenant_id: str, job_id: str | None, task_id: str | None) -> bool:
        """True when the registry has `task_id` as a task of the tenant's job `job_id`."""
        if job_id is None or task_id is None or not (is_tenant_id(tenant_id) and _is_id(job_id) and _is_id(task_id)):
            return False
        with redis_errors("reading a job"):
            root, delegated = await self._redis.hmget(
                keys.job(tenant_id, job_id), ["root_task_id", "delegated_services"]
            )
        if root is None:
            return False
        if text(root) == task_id:
            return True
        return task_id in _task_ids(delegated)


def _is_id(value: str) -> bool:
    return 0 < len(value) <= _MAX_ID_CHARS


def _task_ids(raw: Any) -> set[str]:
    try:
        entries = json.loads(text(raw)) if raw is not None else []
    except ValueError:
        return set()
    if not isinstance(entries, list):
        return set()
    return {str(e.get("task_id")) for e in entries if isinstance(e, dict)}
