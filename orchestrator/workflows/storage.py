"""Workflow definitions and execution states in Redis.

Definitions: one hash per tenant, workflow id -> the definition's JSON (no expiry: a definition
is the tenant's until deleted). Executions: one hash per execution holding its state JSON and
`version`; a list of the actions its transitions still owe (the outbox); a per-tenant index
scored by creation time; an owner key per execution naming its tenant (a service token reporting
for an external step has no tenant of its own); one global sorted set of executions with owed
actions, scored by when they were owed, which the recovery loop reads; and one global sorted set of
the executions not finished, scored by their last change, which the running-executions gauge counts.

A transition is stored with compare-and-set on `version`, its actions appended to the outbox in
the same script: a state is never stored without what it asks to be done, and never twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol, cast

import redis.asyncio as aioredis

from orchestrator.store.keys import PREFIX
from orchestrator.store.registry import redis_errors
from orchestrator.workflows.definition import WorkflowDefinition
from orchestrator.workflows.state import ExecutionState

DEFAULT_EXECUTION_TTL_SECONDS: Final[int] = 24 * 3600
# A performer's claim on an execution's owed actions; performing takes milliseconds, a broker stall
# seconds (bounded by the publisher's timeouts). A dead performer holds the execution this long.
PERFORM_LOCK_SECONDS: Final[int] = 10
# Not under `workflows:`, where the next part is a tenant id (a tenant may be called "outbox").
OUTBOX: Final[str] = f"{PREFIX}:workflow-outbox"
UNFINISHED: Final[str] = f"{PREFIX}:workflow-unfinished"  # not under workflows:<tenant> either

# KEYS: state hash, outbox list, tenant index, outbox index, owner key, unfinished set, [idempotency key]
# ARGV: state JSON, version, ttl, score (ms), outbox member, now (s), execution id, tenant, action JSON...
_CREATE: Final[str] = """
if KEYS[7] then
  local held = redis.call('GET', KEYS[7])
  if held then return {'existing', held} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'duplicate', ARGV[7]} end
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'version', ARGV[2])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[7])
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('SET', KEYS[5], ARGV[8], 'EX', ttl)
redis.call('ZADD', KEYS[6], ARGV[6], ARGV[5])
if #ARGV > 8 then
  redis.call('RPUSH', KEYS[2], unpack(ARGV, 9))
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[5])
end
if KEYS[7] then redis.call('SET', KEYS[7], ARGV[7], 'EX', ttl) end
return {'created', ARGV[7]}
"""

# KEYS: state hash, outbox list, outbox index, owner key, unfinished set
# ARGV: expected version, new version, state JSON, ttl, outbox member, now (s), finished (0/1), action JSON...
_SWAP: Final[str] = """
local version = redis.call('HGET', KEYS[1], 'version')
if not version then return 'missing' end
if version ~= ARGV[1] then return 'conflict' end
local ttl = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'version', ARGV[2])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[4], ttl)
if ARGV[7] == '1' then
  redis.call('ZREM', KEYS[5], ARGV[5])
else
  redis.call('ZADD', KEYS[5], ARGV[6], ARGV[5])
end
if #ARGV > 7 then
  redis.call('RPUSH', KEYS[2], unpack(ARGV, 8))
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('ZADD', KEYS[3], 'NX', ARGV[6], ARGV[5])
end
return 'stored'
"""

# KEYS: outbox list, outbox index, lock. ARGV: how many actions were performed, outbox member, lock token.
# Drops the performed actions from the head; once nothing is owed, the execution leaves the index.
_DONE: Final[str] = """
if tonumber(ARGV[1]) > 0 then redis.call('LTRIM', KEYS[1], tonumber(ARGV[1]), -1) end
local left = redis.call('LLEN', KEYS[1])
if left == 0 then redis.call('ZREM', KEYS[2], ARGV[2]) end
if redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
return left
"""


def _member(tenant_id: str, execution_id: str) -> str:
    return f"{tenant_id}:{execution_id}"


def split_member(member: str) -> tuple[str, str]:
    tenant_id, _, execution_id = member.partition(":")
    return tenant_id, execution_id


class StoreConflict(Exception):
    """The execution changed since it was read: read it again and redo the transition."""


@dataclass(frozen=True)
class StoredDefinition:
    workflow_id: str
    definition: WorkflowDefinition
    created_at: str
    updated_at: str
    declared_by: str | None = None  # the service whose workers declared it; None: the tenant's own

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            **self.definition.model_dump(mode="json", exclude_none=True),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            **({"declared_by": self.declared_by} if self.declared_by is not None else {}),
        }


class DeclaredSource(Protocol):
    """Workflows declared by workers for every tenant (`orchestrator.workflows.declared`)."""

    async def get(self, workflow_id: str) -> StoredDefinition | None: ...

    async def all(self) -> list[StoredDefinition]: ...


class DefinitionStore:
    """The tenant's definitions; where it has none of an id, the declared one (if `declared` is given)."""

    def __init__(self, redis: aioredis.Redis, declared: DeclaredSource | None = None) -> None:
        self._redis = redis
        self._declared = declared

    @staticmethod
    def _key(tenant_id: str) -> str:
        return f"{PREFIX}:workflows:{tenant_id}"

    async def put(self, tenant_id: str, workflow_id: str, definition: WorkflowDefinition, now: datetime) -> bool:
        """Store (or replace) a definition; True when it is new."""
        key = self._key(tenant_id)
        with redis_errors("reading a workflow"):
            previous = await self._redis.hget(key, workflow_id)
        created_at = json.loads(previous)["created_at"] if previous else now.isoformat()
        body = {**definition_fields(definition), "created_at": created_at, "updated_at": now.isoformat()}
        with redis_errors("storing a workflow"):
            await self._redis.hset(key, workflow_id, json.dumps(body))
        return previous is None

    async def get(self, tenant_id: str, workflow_id: str) -> StoredDefinition | None:
        with redis_errors("reading a workflow"):
            raw = await self._redis.hget(self._key(tenant_id), workflow_id)
        if raw is None:
            return None if self._declared is None else await self._declared.get(workflow_id)
        return stored_definition(workflow_id, raw)

    async def delete(self, tenant_id: str, workflow_id: str) -> bool:
        with redis_errors("deleting a workflow"):
            return bool(await self._redis.hdel(self._key(tenant_id), workflow_id))

    async def all(self, tenant_id: str) -> list[StoredDefinition]:
        with redis_errors("listing workflows"):
            raw = await self._redis.hgetall(self._key(tenant_id))
        found = {_text(workflow_id): stored_definition(_text(workflow_id), body) for workflow_id, body in raw.items()}
        for declared in await self._declared.all() if self._declared is not None else []:
            found.setdefault(declared.workflow_id, declared)  # the tenant's own of the same id wins
        return sorted(found.values(), key=lambda stored: stored.workflow_id)


def definition_fields(definition: WorkflowDefinition | dict[str, Any]) -> dict[str, Any]:
    """The stored body's `definition`, and its `output` beside it rather than in it: a replica of the
    release before `output` existed (whose definition model refuses unknown fields) still reads every
    stored definition during a rolling upgrade, and runs it with the final context as its result."""
    fields = definition.model_dump(mode="json") if isinstance(definition, WorkflowDefinition) else dict(definition)
    output = fields.pop("output", None)
    return {"definition": fields, **({"output": output} if output is not None else {})}


def stored_definition(workflow_id: str, raw: str | bytes) -> StoredDefinition:
    body = json.loads(raw)
    fields = body["definition"]
    if body.get("output") is not None:
        fields = {**fields, "output": body["output"]}
    return StoredDefinition(
        workflow_id=workflow_id,
        definition=WorkflowDefinition.model_validate(fields),
        created_at=body["created_at"],
        updated_at=body["updated_at"],
        declared_by=body.get("declared_by"),
    )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ExecutionStore:
    def __init__(self, redis: aioredis.Redis, ttl_seconds: int = DEFAULT_EXECUTION_TTL_SECONDS) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._create = redis.register_script(_CREATE)
        self._swap = redis.register_script(_SWAP)
        self._done = redis.register_script(_DONE)

    @staticmethod
    def _state_key(tenant_id: str, execution_id: str) -> str:
        return f"{PREFIX}:executions:{tenant_id}:{execution_id}"

    @staticmethod
    def _outbox_key(tenant_id: str, execution_id: str) -> str:
        return f"{PREFIX}:executions:{tenant_id}:{execution_id}:outbox"

    @staticmethod
    def _lock_key(tenant_id: str, execution_id: str) -> str:
        return f"{PREFIX}:executions:{tenant_id}:{execution_id}:performing"

    @staticmethod
    def _index_key(tenant_id: str) -> str:
        return f"{PREFIX}:executions:{tenant_id}"

    @staticmethod
    def _owner_key(execution_id: str) -> str:
        # Not under executions:{tenant}: the tenant is what it is read to find.
        return f"{PREFIX}:execution_owners:{execution_id}"

    @staticmethod
    def _idempotency_key(tenant_id: str, key: str) -> str:
        return f"{PREFIX}:executions:{tenant_id}:idempotency:{key}"

    async def create(
        self, state: ExecutionState, actions: Sequence[dict[str, Any]], idempotency_key: str | None = None
    ) -> str | None:
        """Store a new execution with its first actions; None when created, else the id of the execution
        the idempotency key already names."""
        tenant, execution = state.tenant_id, state.execution_id
        keys = [
            self._state_key(tenant, execution),
            self._outbox_key(tenant, execution),
            self._index_key(tenant),
            OUTBOX,
            self._owner_key(execution),
            UNFINISHED,
        ]
        if idempotency_key is not None:
            keys.append(self._idempotency_key(tenant, idempotency_key))
        args: list[str | int | float] = [
            state.to_json(),
            state.version,
            self._ttl,
            int(state.created_at.timestamp() * 1000),
            _member(tenant, execution),
            time.time(),
            execution,
            tenant,
            *(json.dumps(action) for action in actions),
        ]
        with redis_errors("creating an execution"):
            outcome, execution_id = await self._create(keys=keys, args=args)
        return None if _text(outcome) == "created" else _text(execution_id)

    async def load(self, tenant_id: str, execution_id: str) -> ExecutionState | None:
        with redis_errors("reading an execution"):
            raw = await self._redis.hget(self._state_key(tenant_id, execution_id), "state")
        return None if raw is None else ExecutionState.from_json(raw)

    async def owner(self, execution_id: str) -> str | None:
        """The tenant of an execution, for callers that have no tenant (a service token)."""
        with redis_errors("reading an execution's owner"):
            raw = await self._redis.get(self._owner_key(execution_id))
        return None if raw is None else _text(raw)

    async def swap(self, expected_version: int, state: ExecutionState, actions: Sequence[dict[str, Any]]) -> None:
        """Store `state` over the version read, with its actions owed; StoreConflict when it moved."""
        tenant, execution = state.tenant_id, state.execution_id
        keys = [
            self._state_key(tenant, execution),
            self._outbox_key(tenant, execution),
            OUTBOX,
            self._owner_key(execution),
            UNFINISHED,
        ]
        args: list[str | int | float] = [
            expected_version,
            state.version,
            state.to_json(),
            self._ttl,
            _member(tenant, execution),
            time.time(),
            1 if state.is_finished else 0,
            *(json.dumps(action) for action in actions),
        ]
        with redis_errors("storing an execution"):
            outcome = _text(await self._swap(keys=keys, args=args))
        if outcome != "stored":
            raise StoreConflict(f"execution {execution} {outcome}")

    async def count_unfinished(self) -> int:
        """Executions of every tenant not finished yet. One whose state expired unfinished (untouched
        for the TTL) is dropped from the count here."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.zremrangebyscore(UNFINISHED, "-inf", time.time() - self._ttl)
        pipe.zcard(UNFINISHED)
        with redis_errors("counting unfinished executions"):
            _, count = await pipe.execute()
        return int(count)

    async def page(
        self, tenant_id: str, *, workflow_id: str | None, status: str | None, offset: int, limit: int
    ) -> tuple[list[ExecutionState], int]:
        """A page of the tenant's executions, newest first. Filters read at most the newest 10,000."""
        index = self._index_key(tenant_id)
        with redis_errors("listing executions"):
            if workflow_id is None and status is None:
                ids = cast(list[bytes], await self._redis.zrevrange(index, offset, offset + limit - 1))
                total = await self._redis.zcard(index)
                return await self._states(tenant_id, ids), int(total)
            ids = cast(list[bytes], await self._redis.zrevrange(index, 0, 9_999))
        states = [
            state
            for state in await self._states(tenant_id, ids)
            if (workflow_id is None or state.workflow_id == workflow_id)
            and (status is None or state.status.value == status)
        ]
        return states[offset : offset + limit], len(states)

    async def _states(self, tenant_id: str, ids: Sequence[str | bytes]) -> list[ExecutionState]:
        if not ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for execution_id in ids:
            pipe.hget(self._state_key(tenant_id, _text(execution_id)), "state")
        with redis_errors("listing executions"):
            raws = await pipe.execute()
        return [ExecutionState.from_json(raw) for raw in raws if raw is not None]

    # The outbox: what stored transitions still owe, performed by one replica at a time.

    async def claim(self, tenant_id: str, execution_id: str, token: str) -> bool:
        with redis_errors("claiming an execution's actions"):
            return bool(
                await self._redis.set(self._lock_key(tenant_id, execution_id), token, nx=True, ex=PERFORM_LOCK_SECONDS)
            )

    async def owed(self, tenant_id: str, execution_id: str) -> list[dict[str, Any]]:
        with redis_errors("reading an execution's actions"):
            raw = await self._redis.lrange(self._outbox_key(tenant_id, execution_id), 0, -1)
        return [json.loads(item) for item in raw]

    async def performed(self, tenant_id: str, execution_id: str, count: int, token: str) -> int:
        """Drop the `count` actions performed and release the claim; how many are still owed."""
        keys = [self._outbox_key(tenant_id, execution_id), OUTBOX, self._lock_key(tenant_id, execution_id)]
        with redis_errors("settling an execution's actions"):
            return int(await self._done(keys=keys, args=[count, _member(tenant_id, execution_id), token]))

    async def overdue(self, older_than_seconds: float, limit: int = 100) -> list[tuple[str, str]]:
        """Executions whose actions have been owed for a while: a replica died before performing them."""
        with redis_errors("reading the workflow outbox"):
            members = cast(
                list[bytes],
                await self._redis.zrangebyscore(OUTBOX, "-inf", time.time() - older_than_seconds, start=0, num=limit),
            )
        return [split_member(_text(member)) for member in members]

    async def postpone(self, tenant_id: str, execution_id: str) -> None:
        """Look at this execution's owed actions again later (the broker or Redis failed meanwhile)."""
        with redis_errors("postponing an execution's actions"):
            await self._redis.zadd(OUTBOX, {_member(tenant_id, execution_id): time.time()})
