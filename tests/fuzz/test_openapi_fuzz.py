"""A bounded schemathesis run over /openapi.json against a real orchestrator (RabbitMQ and Redis).

Every check schemathesis has, positive and negative cases of every operation, a fixed seed
(derandomized). The full run (10,000+ cases) is the CLI command in tests/fuzz/README.md.

Left out: the WebSocket routes (schemathesis speaks plain HTTP; their 400 is checked in
test_openapi) and POST /jobs/agent/{agent_id}/execute (its job type is always the built-in
agent_execution, whose jobs would pile up in the machine's baton.agent queue; the CLI run covers it
on a vhost of its own). Every other job is of the test's own announced type (tests.fuzz.cases).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Final

import redis.asyncio as aioredis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks

from tests.api_server import serve_api
from tests.fuzz.cases import adjust

EXAMPLES_PER_OPERATION_AND_MODE: Final[int] = 25
MAX_WAIT_SECONDS: Final[float] = 0.05
SKIPPED_PATHS: Final[tuple[str, ...]] = ("/ws/", "/jobs/agent/")


@dataclass
class FuzzReport:
    cases: int = 0
    failures: list[str] = field(default_factory=list)


def fuzz(base_url: str, headers: dict[str, str], job_type: str, examples: int) -> FuzzReport:
    """Every operation's cases, each sent and checked by every check; the first failure per operation and mode."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    load_all_checks()
    checks: list[Any] = CHECKS.get_all()  # all 14, as --checks all
    report = FuzzReport()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.path.startswith(SKIPPED_PATHS):
                continue
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                # No shrinking: each step would be another request; the first failing case is reported as sent.
                @settings(
                    max_examples=examples,
                    derandomize=True,
                    database=None,
                    deadline=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=operation.as_strategy(generation_mode=mode))
                def send(case: schemathesis.Case[Any]) -> None:
                    report.cases += 1
                    adjust(case, job_type, MAX_WAIT_SECONDS)
                    case.call_and_validate(base_url=base_url, headers=headers, session=session, checks=checks)

                try:
                    send()
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE, operation.label  # no input: nothing can be invalid
                except Exception as exc:  # one operation's failure must not hide the others'
                    report.failures.append(f"{operation.label} ({mode.value}): {exc}")
    return report


async def test_fuzz_finds_no_server_error_and_no_undocumented_answer(
    rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str
) -> None:
    async with serve_api(rabbitmq_url, redis_url, redis_client, unique) as api:
        base_url = str(api.client.make_url("")).rstrip("/")
        # The server runs on this loop; schemathesis's blocking client runs in a thread beside it.
        report = await asyncio.to_thread(fuzz, base_url, api.headers_a, api.job_type, EXAMPLES_PER_OPERATION_AND_MODE)
    assert not report.failures, "\n\n".join(report.failures)
    assert report.cases >= 200
