"""Fixtures of the flow-control tests: an orchestrator on the real services with the limits a test asks for."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import redis.asyncio as aioredis

from orchestrator.settings import QuotaSettings, WebSocketSettings
from tests.api_server import Api, serve_api

QuotasOf = Callable[[str, str], QuotaSettings]  # (tenant a, tenant b) -> the job quotas
ServeApi = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def serve(rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str) -> ServeApi:
    """`async with serve(quotas=..., websockets=...) as api`: an orchestrator with those limits (and
    serve_api's other options)."""

    def start(
        quotas: QuotasOf | None = None, websockets: WebSocketSettings | None = None, **options: Any
    ) -> AbstractAsyncContextManager[Api]:
        return serve_api(rabbitmq_url, redis_url, redis_client, unique, quotas=quotas, websockets=websockets, **options)

    return start
