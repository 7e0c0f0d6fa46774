"""Fixtures of the CLI tests: an orchestrator on a real port (tests/api_server.py) with a real worker
runtime for its test service, and the `baton` command pointed at it with tenant a's key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.api_server import Api, serve_api
from tests.cli.helpers import Baton, cli_worker
from tests.workers.helpers import running


@pytest.fixture
async def api(rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[Api]:
    async with serve_api(rabbitmq_url, redis_url, redis_client, unique) as api:
        yield api


@pytest.fixture
def gate() -> asyncio.Event:
    """What the worker's `gated` jobs wait for: the test sets it once the CLI has shown what came before."""
    return asyncio.Event()


@pytest.fixture
async def worker(api: Api, rabbitmq_url: str, redis_url: str, gate: asyncio.Event) -> AsyncIterator[None]:
    async with running(cli_worker(api.service, api.job_type, gate), rabbitmq_url, redis_url=redis_url):
        yield


@pytest.fixture
def baton(api: Api) -> Baton:
    key = api.headers_a["Authorization"].removeprefix("Bearer ")
    return Baton(str(api.client.make_url("")).rstrip("/"), key)
