"""Redis keys that workers and the orchestrator share to keep the delivery promises.

At-least-once delivery means a task can come back after a crash; these small keys let any
worker tell, before running it, that it must not run:
- `baton:ledger:done:{task_id}`: the highest attempt of the task whose outcome a worker published,
  set just before it acks. A delivery of that attempt or an older one is acked without running
  again; a replay (a newer attempt) runs.
- `baton:ledger:cancelled:{tenant_id}:{global_task_id}`: set by the orchestrator when a job is
  cancelled, before it broadcasts the cancel; a delivered task of that job is never started,
  also after a worker or broker restart (the broadcast alone is lost on restart).
Both expire with the registry's job TTL.
"""

from __future__ import annotations

from typing import Final

from protocol.names import check_tenant_id

LEDGER_PREFIX: Final[str] = "baton:ledger"
LEDGER_TTL_SECONDS: Final[int] = 24 * 3600


def done_key(task_id: str) -> str:
    return f"{LEDGER_PREFIX}:done:{task_id}"


def cancelled_key(tenant_id: str, global_task_id: str) -> str:
    return f"{LEDGER_PREFIX}:cancelled:{check_tenant_id(tenant_id)}:{global_task_id}"
