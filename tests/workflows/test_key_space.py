"""The workflow keys shared by every tenant never sit where a tenant's own key could: a tenant may be
called "outbox" or "unfinished" (tenant ids are [A-Za-z0-9][A-Za-z0-9_-]*)."""

from __future__ import annotations

from orchestrator.workflows.declared import DECLARED_KEY
from orchestrator.workflows.storage import OUTBOX, UNFINISHED, DefinitionStore, ExecutionStore
from protocol.names import is_tenant_id


def test_shared_workflow_keys_are_outside_every_tenant_key_space() -> None:
    for shared in (OUTBOX, UNFINISHED, DECLARED_KEY):
        tenant = shared.rsplit(":", 1)[1]
        if is_tenant_id(tenant):
            assert shared != DefinitionStore._key(tenant)
            assert not shared.startswith(ExecutionStore._index_key(tenant))
        _, _, rest = shared.partition(":")
        # Any key of the form <prefix>:workflows:<x> or <prefix>:executions:<x> is a tenant's when x is one.
        namespace, _, tail = rest.partition(":")
        assert namespace not in {"workflows", "executions"} or not is_tenant_id(tail.split(":")[0]), shared
