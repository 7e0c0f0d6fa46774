"""Workflows declared by workers (`WorkflowAnnouncement`), offered to every tenant.

One Redis hash, workflow id -> {definition, declared_by, created_at, updated_at}. The tenant's own
definitions (`DefinitionStore`) come first: a declared one is what a tenant sees when it has none of
that id. An announcement is validated like a `PUT /workflows/{id}` body, against the job types the
directory knows; an invalid declaration is refused and logged, never stored. Anything that can publish
on `baton.events` can announce, so what it can make is bounded: at most MAX_DECLARED workflows, and an
id declared by one service is not taken over by another while the first is still known. An id that is a
job type belongs to the service serving that type (it is what `POST /jobs` of the type runs).
A declaration stays when its service goes (a workflow may outlive a deploy); the next announcement
of the same id replaces it.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, Final, Protocol

import redis.asyncio as aioredis

from orchestrator.store.keys import PREFIX
from orchestrator.store.registry import redis_errors
from orchestrator.workflows.definition import parse_definition
from orchestrator.workflows.errors import DefinitionError
from orchestrator.workflows.storage import StoredDefinition, definition_fields, stored_definition
from plumbing.burst_log import BurstLog
from protocol.control import WorkflowAnnouncement
from protocol.envelope import utc_now

log = logging.getLogger(__name__)

# `_` cannot start a tenant id, so this key is nobody's per-tenant hash.
DECLARED_KEY: Final[str] = f"{PREFIX}:workflows:_declared"
MAX_DECLARED: Final[int] = 1000
_LOG_INTERVAL_SECONDS: Final[float] = 10.0


class KnownServices(Protocol):
    """The ServiceDirectory's view: the job types it can route, and the services it knows."""

    async def known_job_types(self) -> dict[str, str]: ...

    async def service_for(self, job_type: str) -> str | None: ...

    async def services(self) -> list[str]: ...


class DeclaredDefinitions:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def get(self, workflow_id: str) -> StoredDefinition | None:
        with redis_errors("reading a declared workflow"):
            raw = await self._redis.hget(DECLARED_KEY, workflow_id)
        return None if raw is None else stored_definition(workflow_id, raw)

    async def all(self) -> list[StoredDefinition]:
        with redis_errors("listing declared workflows"):
            raw = await self._redis.hgetall(DECLARED_KEY)
        found = [stored_definition(_text(workflow_id), body) for workflow_id, body in raw.items()]
        return sorted(found, key=lambda stored: stored.workflow_id)

    async def count(self) -> int:
        with redis_errors("counting declared workflows"):
            return int(await self._redis.hlen(DECLARED_KEY))

    async def put(self, workflow_id: str, definition: dict[str, Any], service: str, now: datetime) -> bool:
        """Store the declaration; False when it is unchanged (nothing written)."""
        previous = await self.get(workflow_id)
        if previous is not None and previous.declared_by == service and _same(previous, definition):
            return False
        body = {
            **definition_fields(definition),
            "declared_by": service,
            "created_at": previous.created_at if previous is not None else now.isoformat(),
            "updated_at": now.isoformat(),
        }
        with redis_errors("storing a declared workflow"):
            await self._redis.hset(DECLARED_KEY, workflow_id, json.dumps(body))
        return True

    async def delete(self, workflow_id: str) -> bool:
        with redis_errors("deleting a declared workflow"):
            return bool(await self._redis.hdel(DECLARED_KEY, workflow_id))


class WorkflowDeclarations:
    """What the event consumer hands a WorkflowAnnouncement to."""

    def __init__(self, declared: DeclaredDefinitions, services: KnownServices, *, max_declared: int = MAX_DECLARED):
        self._declared = declared
        self._services = services
        self._max = max_declared
        self._refusals = BurstLog(log, interval=_LOG_INTERVAL_SECONDS)

    async def record(self, announcement: WorkflowAnnouncement) -> list[str]:
        """Validate and store each declared workflow; the ids stored or confirmed (refused ones are logged)."""
        known = set(await self._services.known_job_types())
        accepted: list[str] = []
        for declared in announcement.workflows:
            workflow_id = declared.workflow_id
            try:
                plan = parse_definition(declared.definition, await self._with_fresh_routes(known, declared.definition))
            except DefinitionError as exc:
                self._refuse(announcement, workflow_id, str(exc))
                continue
            reason = await self._conflict(workflow_id, announcement.service)
            if reason is not None:
                self._refuse(announcement, workflow_id, reason)
                continue
            definition = plan.definition.model_dump(mode="json")
            if await self._declared.put(workflow_id, definition, announcement.service, utc_now()):
                log.info("workflow %r declared by service %r", workflow_id, announcement.service)
            accepted.append(workflow_id)
        return accepted

    async def _with_fresh_routes(self, known: set[str], definition: dict[str, Any]) -> set[str]:
        """`known`, plus the step types it lacks that Redis routes already: the directory's copy may be
        a second old, and the worker's heartbeat (just before this) may have reached another replica."""
        steps = definition.get("steps")
        for entry in steps if isinstance(steps, list) else []:
            job_type = entry.get("type") if isinstance(entry, dict) else None
            if not isinstance(job_type, str) or job_type in known:
                continue
            if await self._services.service_for(job_type) is None:
                break  # refused anyway: no more lookups for a forged list of made-up types
            known.add(job_type)
        return known

    async def _conflict(self, workflow_id: str, service: str) -> str | None:
        served_by = await self._services.service_for(workflow_id)
        if served_by is not None:
            # A workflow under a job type's id is what POST /jobs of that type runs, so the id is the type's
            # own service's: it takes the id back from any other, and no other may hold it (a stray worker
            # declaring `document_processing` would otherwise turn every such job into a failing task).
            if served_by != service:
                return f"job type {workflow_id!r} is served by {served_by!r}: only it may declare a workflow of that id"
            return await self._over_the_cap(workflow_id)
        current = await self._declared.get(workflow_id)
        if current is None:
            return await self._over_the_cap(workflow_id)
        owner = current.declared_by
        if owner is not None and owner != service and owner in await self._services.services():
            return f"service {owner!r} declares it"
        return None

    async def _over_the_cap(self, workflow_id: str) -> str | None:
        if await self._declared.get(workflow_id) is None and await self._declared.count() >= self._max:
            return f"at most {self._max} workflows may be declared"
        return None

    def _refuse(self, announcement: WorkflowAnnouncement, workflow_id: str, reason: str) -> None:
        self._refusals.warning(
            f"{announcement.service}:{workflow_id}",
            "refused workflow %r declared by service %r (worker %s): %s",
            workflow_id,
            announcement.service,
            announcement.worker_id,
            reason,
        )


def _same(stored: StoredDefinition, definition: dict[str, Any]) -> bool:
    return stored.definition.model_dump(mode="json") == definition


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
