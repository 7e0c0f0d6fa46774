"""The built-in services, the job types they serve, and their queue settings.

Concurrency, prefetch, rate limits and retry defaults come from the queue settings of
the reference documents (llm 10 / embedding 20 / ingestion 5 concurrent, retries 3/5/10).
A rate limit is only where a service calls something that limits it: query's LLM calls (100 a
minute, the default of LLM_RATE_LIMIT). Embedding and ingestion compute locally and agent's model
calls go through query, so a rate of their own would only slow them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class RetryDefaults:
    max_retries: int
    initial_delay_seconds: float
    delay_step_seconds: float
    max_delay_seconds: float


@dataclass(frozen=True)
class ServiceProfile:
    name: str
    job_types: tuple[str, ...]
    concurrency: int
    prefetch: int  # unacked messages per worker process
    rate_limit_per_minute: int | None  # calls to an external API per minute, over every process
    retry: RetryDefaults
    time_limit_seconds: float  # a handler running longer is cancelled, and the attempt fails


BUILTIN_SERVICES: Final[dict[str, ServiceProfile]] = {
    profile.name: profile
    for profile in (
        ServiceProfile("query", ("llm_request",), 10, 10, 100, RetryDefaults(3, 0.5, 0.5, 5.0), 120.0),
        ServiceProfile("embedding", ("embedding_request",), 20, 40, None, RetryDefaults(5, 0.2, 0.3, 3.0), 60.0),
        ServiceProfile("ingestion", ("document_processing",), 5, 5, None, RetryDefaults(10, 1.0, 2.0, 30.0), 1800.0),
        ServiceProfile("agent", ("agent_execution",), 10, 10, None, RetryDefaults(3, 0.5, 0.5, 5.0), 600.0),
    )
}

BUILTIN_JOB_TYPES: Final[dict[str, str]] = {
    job_type: profile.name for profile in BUILTIN_SERVICES.values() for job_type in profile.job_types
}

# Result-cache TTL (seconds) of the built-in job types whose result is a pure function of the payload:
# an embedding of the same text by the same model is the same vector. An LLM answer is not (sampling,
# a changing knowledge base), nor are an agent run or a document's indexing (side effects): off.
BUILTIN_CACHE_TTLS: Final[dict[str, int]] = {"embedding_request": 3600}

# Workflow executions are jobs of this reserved type and service: their events come from the
# orchestrator's workflow engine, never from a worker, and no worker may announce either name.
WORKFLOW_SERVICE: Final[str] = "workflows"
WORKFLOW_JOB_TYPE: Final[str] = "workflow"
