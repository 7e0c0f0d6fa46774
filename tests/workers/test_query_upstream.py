"""The query service's LLM call against a fake OpenAI-compatible server that is overloaded at first."""

from __future__ import annotations

from aio_pika.abc import AbstractChannel

from protocol.events import EventType
from tests.workers.helpers import Tap, envelope, publish_task, running
from tests.workers.upstream import Answer, serve_upstream
from workers import LlmSettings, RetryPolicy, Worker
from workers.services import query

COMPLETION = {
    "model": "m",
    "usage": {"total_tokens": 3},
    "choices": [{"message": {"role": "assistant", "content": "42"}, "finish_reason": "stop"}],
}


def query_worker(service: str, retries: int = 0) -> Worker:
    worker = Worker(service, retry=RetryPolicy(max_retries=retries, initial_delay_seconds=0.1))
    query.register(worker)
    return worker


async def test_an_llm_429_is_retried_after_retry_after_and_the_request_completes(
    channel: AbstractChannel, service: str, rabbitmq_url: str
) -> None:
    tap = await Tap.open(channel, f"*.{service}.*")
    async with serve_upstream(Answer(429, {"Retry-After": "1"}), Answer(200, body=COMPLETION)) as llm:
        llm_settings = LlmSettings(base_url=f"{llm.url}/v1", model="m")
        async with running(query_worker(service), rabbitmq_url, llm=llm_settings):
            task = envelope(service, "llm_request", {"prompt": "meaning of life?"})
            await publish_task(channel, task)
            events = await tap.task_events(task.task_id, within=15)
    assert events[-1].event is EventType.TASK_COMPLETED and events[-1].data["result"]["answer"] == "42"
    assert len(llm.arrivals) == 2 and llm.arrivals[1] - llm.arrivals[0] >= 1.0


async def test_an_llm_that_stays_at_5xx_fails_the_task_retryably_naming_status_and_attempts(
    channel: AbstractChannel, service: str, rabbitmq_url: str
) -> None:
    tap = await Tap.open(channel, f"*.{service}.*")
    async with serve_upstream(Answer(503)) as llm:
        llm_settings = LlmSettings(base_url=f"{llm.url}/v1", model="m")
        async with running(query_worker(service, retries=1), rabbitmq_url, llm=llm_settings, http_retries=1):
            task = envelope(service, "llm_request", {"prompt": "x"})
            await publish_task(channel, task)
            events = await tap.task_events(task.task_id, within=15)
    retrying = [e.data for e in events if e.data.get("status") == "retrying"]
    assert [r["error_type"] for r in retrying] == ["UpstreamError"]  # a task attempt of its own follows
    failed = events[-1]
    assert failed.event is EventType.TASK_FAILED and failed.data["error_type"] == "UpstreamError"
    assert "answered 503 after 2 attempts" in failed.data["error"]
    assert len(llm.arrivals) == 4  # each attempt's POST was retried once: a completion has no side effect
