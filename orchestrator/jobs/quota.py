"""Job creation quotas: every tenant's requests to create jobs spend tokens of its bucket.

One token per job a request would create: POST /jobs and the agent route cost 1, a batch its item
count (refused whole, never cut short), a workflow execution 1. The bucket is shared by every
replica (`TokenBuckets`), so N replicas do not give a tenant N quotas. The rate is the tenant's own
(BATON_TENANT_JOB_QUOTAS) or the default (BATON_JOB_QUOTA); `off` means no bucket and no round trip.
"""

from __future__ import annotations

import math
from enum import StrEnum

from orchestrator.errors import QuotaExceeded
from orchestrator.jobs.ports import TokenBuckets
from orchestrator.metrics import OrchestratorMetrics
from orchestrator.settings import QuotaSettings
from orchestrator.store import keys


class Creation(StrEnum):
    """What a request creates: the `kind` label of refusals."""

    JOB = "job"
    BATCH = "batch"
    WORKFLOW = "workflow"


class JobQuota:
    def __init__(self, buckets: TokenBuckets, settings: QuotaSettings, metrics: OrchestratorMetrics) -> None:
        self._buckets = buckets
        self._settings = settings
        self._metrics = metrics

    async def charge(self, tenant_id: str, kind: Creation, cost: int = 1) -> None:
        """Spend `cost` tokens of the tenant's bucket; QuotaExceeded (nothing spent) when it holds fewer."""
        rate = self._settings.rate_for(tenant_id)
        if rate is None or cost <= 0:
            return
        taken = await self._buckets.take(keys.job_quota(tenant_id), rate, cost)
        if not taken.granted:
            self._metrics.quota_rejections.labels(tenant=tenant_id, kind=kind.value).inc()
            # More than the burst never fits: waiting would not help.
            retry_after = taken.wait_for(cost, rate) if cost <= rate.burst else None
            raise QuotaExceeded(tenant_id, cost, math.floor(taken.tokens), rate.burst, retry_after)
