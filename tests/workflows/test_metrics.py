"""The workflow series on /metrics: executions started and finished by workflow and status, step
durations by workflow and step, and the executions running over every replica (read from Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.app import WORKFLOWS
from orchestrator.workflows.storage import UNFINISHED
from tests.api_server import Api
from tests.polling import poll
from tests.workflows.gated_steps import GatedSteps, define, finished, gated_steps

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def steps(api: Api, rabbitmq_url: str, redis_url: str) -> AsyncIterator[GatedSteps]:
    async with gated_steps(api, rabbitmq_url, redis_url) as steps:
        yield steps


async def scrape(api: Api) -> Samples:
    response = await api.client.get("/metrics")
    assert response.status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(await response.text())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_executions_and_steps_are_counted_and_timed(api: Api, steps: GatedSteps) -> None:
    t = api.job_type
    await define(
        api,
        "metered",
        [
            {"name": "a", "type": t, "payload": {"name": "a", "sleep": 0.2}},
            {"name": "b", "type": t, "payload": {"name": "b"}},
        ],
    )
    await define(api, "broken", [{"name": "bad", "type": t, "payload": {"name": "bad", "fail": True}}])
    executions = [(await api.app[WORKFLOWS].execute(api.tenant_a, "metered", {}))[0] for _ in range(2)]
    broken, _ = await api.app[WORKFLOWS].execute(api.tenant_a, "broken", {})
    done = [await finished(api, state.execution_id) for state in executions]
    assert (await finished(api, broken.execution_id)).status.value == "failed"

    samples = await scrape(api)
    assert value(samples, "baton_workflow_executions_started_total", workflow="metered") == 2
    assert value(samples, "baton_workflow_executions_started_total", workflow="broken") == 1
    assert value(samples, "baton_workflow_executions_finished_total", workflow="metered", status="completed") == 2
    assert value(samples, "baton_workflow_executions_finished_total", workflow="broken", status="failed") == 1
    assert value(samples, "baton_workflow_executions_finished_total", workflow="metered", status="failed") is None

    a = {"workflow": "metered", "step": "a", "status": "completed"}
    assert value(samples, "baton_workflow_step_duration_seconds_count", **a) == 2
    assert (
        value(samples, "baton_workflow_step_duration_seconds_count", step="b", workflow="metered", status="completed")
        == 2
    )
    assert (
        value(samples, "baton_workflow_step_duration_seconds_count", step="bad", workflow="broken", status="failed")
        == 1
    )
    # The histogram holds the same durations the status view shows (both from began_at to finished_at).
    total = value(samples, "baton_workflow_step_duration_seconds_sum", **a)
    shown = sum(state.steps["a"].duration_seconds or 0 for state in done)
    assert total is not None and total >= 0.3 and total == pytest.approx(shown, abs=0.01)
    assert value(samples, "baton_workflow_step_duration_seconds_bucket", **a, le="0.1") == 0
    assert value(samples, "baton_workflow_step_duration_seconds_bucket", **a, le="+Inf") == 2


async def test_running_executions_are_read_from_redis(
    api: Api, steps: GatedSteps, redis_client: aioredis.Redis
) -> None:
    """The gauge counts every replica's executions (others' included, since Redis is shared): it is at
    least the ones held here, which are in the set while running and out of it once finished."""
    t = api.job_type
    await define(api, "held", [{"name": "wait", "type": t, "payload": {"name": "wait", "block": True}}])
    held = [(await api.app[WORKFLOWS].execute(api.tenant_a, "held", {}))[0] for _ in range(3)]
    members = [f"{api.tenant_a}:{state.execution_id}" for state in held]
    await steps.started("wait", 3)
    assert all([await redis_client.zscore(UNFINISHED, member) is not None for member in members])
    await poll(
        lambda: scrape(api),
        lambda samples: (value(samples, "baton_workflow_executions_running") or 0) >= 3,
        what="the gauge to count the held executions",
    )

    steps.release.set()
    for state in held:
        await finished(api, state.execution_id)
    assert [await redis_client.zscore(UNFINISHED, member) for member in members] == [None, None, None]
    unfinished = await api.app[WORKFLOWS].executions.count_unfinished()
    assert unfinished == await redis_client.zcard(UNFINISHED)
