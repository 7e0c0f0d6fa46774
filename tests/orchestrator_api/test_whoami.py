"""GET /whoami: the role and tenant of each kind of key, and 401 for none; on the real RabbitMQ and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.api_server import Api, serve_api


@pytest.fixture
async def api(rabbitmq_url: str, redis_url: str, redis_client: aioredis.Redis, unique: str) -> AsyncIterator[Api]:
    async with serve_api(
        rabbitmq_url, redis_url, redis_client, unique, service_tokens={f"token-{unique}": f"svc-{unique}"}
    ) as api:
        yield api


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def whoami(api: Api, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    answer = await api.client.get("/whoami", headers=headers)
    return answer.status, await answer.json()


async def test_a_tenant_key_names_its_tenant(api: Api) -> None:
    assert await whoami(api, api.headers_a) == (200, {"role": "tenant", "tenant_id": api.tenant_a})
    assert await whoami(api, api.headers_b) == (200, {"role": "tenant", "tenant_id": api.tenant_b})


async def test_the_admin_key_and_a_service_token_have_no_tenant(api: Api, unique: str) -> None:
    assert await whoami(api, bearer(f"admin-{unique}")) == (200, {"role": "admin", "tenant_id": None})
    assert await whoami(api, bearer(f"token-{unique}")) == (200, {"role": "service", "tenant_id": None})


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic eDp5"}])
async def test_no_valid_key_is_401(api: Api, headers: dict[str, str]) -> None:
    answer = await api.client.get("/whoami", headers=headers)
    assert answer.status == 401
    assert (await answer.json())["error"] == "unauthorized"
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="baton"'


async def test_a_key_in_the_query_is_not_taken(api: Api) -> None:
    # Keys in URLs end up in logs: only WebSocket upgrades read ?token=.
    key = api.headers_a["Authorization"].removeprefix("Bearer ")
    assert (await api.client.get("/whoami", params={"token": key})).status == 401
