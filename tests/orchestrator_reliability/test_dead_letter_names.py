"""A service name in a /dead-letters URL matches the name rule as a whole, or the answer is a JSON 404."""

from __future__ import annotations

import pytest

from tests.api_server import Api


@pytest.mark.parametrize("suffix", ["%0A", "%0D%0A", "%0A%0A", "%20", ".dead"])
async def test_a_name_with_a_trailing_newline_is_refused(api: Api, suffix: str) -> None:
    admin = {"Authorization": f"Bearer admin-{api.tenant_a.removeprefix('ta-')}"}
    for method, path in (
        ("GET", f"/dead-letters/{api.service}{suffix}"),
        ("POST", f"/dead-letters/{api.service}{suffix}/replay"),
    ):
        for headers in (admin, api.headers_a):
            response = await api.client.request(method, path, json={"all": True}, headers=headers)
            assert response.status == 404, (method, path, await response.text())
            body = await response.json()
            assert body["error"] == "service_not_found"
            assert "must match" in body["detail"]
