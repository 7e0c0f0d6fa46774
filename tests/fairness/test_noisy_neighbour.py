"""Issue 12's noisy neighbour: tenant B's jobs start within seconds behind tenant A's 10,000-job backlog
on the same service, one worker process, concurrency 10, a 5 ms handler (real RabbitMQ and Redis)."""

from __future__ import annotations

import pytest

from tests.fairness.scenario import Neighbours, run_neighbours


@pytest.mark.timeout(120)
async def test_a_small_tenant_is_served_within_seconds_behind_a_large_backlog(
    rabbitmq_url: str, redis_url: str, unique: str
) -> None:
    run = Neighbours(service=f"t-noisy-{unique}", tenant_a=f"noisy-{unique}", tenant_b=f"quiet-{unique}")
    figures = await run_neighbours(rabbitmq_url, redis_url, run)
    print(*figures.lines("with lanes"), sep="\n")
    assert figures.b_p95_s < 5.0
