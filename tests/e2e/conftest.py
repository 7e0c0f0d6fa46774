from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.e2e.harness import BatonSystem, new_tenants


@pytest.fixture
def system(rabbitmq_url: str, redis_url: str) -> Iterator[BatonSystem]:
    baton = BatonSystem(rabbitmq_url, redis_url, new_tenants(2))
    try:
        yield baton
    finally:
        logs = baton.logs()
        baton.close()
        asyncio.run(baton.forget_lanes())
        print(logs)
