"""GET /static/{name}: the JS client and the dashboard's files, by plain name only, with revalidation."""

from __future__ import annotations

import asyncio
from importlib import resources

import pytest

from orchestrator.http.static_files import StaticFiles, content_type_for
from tests.api_server import Api


async def raw_get(api: Api, target: str, headers: str = "") -> tuple[int, bytes]:
    """A request line sent byte for byte (no client normalises or re-quotes the path)."""
    port = api.client.port
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n".encode())
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_the_packaged_files_are_the_client_and_the_dashboard() -> None:
    files = StaticFiles.packaged()
    assert {"baton.js", "baton.d.ts", "dashboard.html"} <= files.names
    client = resources.files("clients").joinpath("js/baton.js").read_bytes()
    found = files.get("baton.js")
    assert found is not None and found.body == client
    assert files.get("../app.py") is None and files.get("") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("baton.js", "text/javascript; charset=utf-8"),
        ("app.MJS", "text/javascript; charset=utf-8"),
        ("baton.d.ts", "text/plain; charset=utf-8"),
        ("dashboard.html", "text/html; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("logo.svg", "image/svg+xml"),
        ("data.bin", "application/octet-stream"),
        ("README", "application/octet-stream"),
    ],
)
def test_content_types_by_extension(name: str, expected: str) -> None:
    assert content_type_for(name) == expected


async def test_the_client_is_served_as_javascript_with_an_etag_and_revalidated(api: Api) -> None:
    answer = await api.client.get("/static/baton.js")  # no API key: the page loads it before it has one
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert answer.headers["Cache-Control"] == "no-cache"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    body = await answer.read()
    assert body == resources.files("clients").joinpath("js/baton.js").read_bytes()
    assert b"export class Baton" in body and b"export class BatonError" in body
    etag = answer.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')

    again = await api.client.get("/static/baton.js", headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b"" and again.headers["ETag"] == etag
    weak = await api.client.get("/static/baton.js", headers={"If-None-Match": f'"other", W/{etag}'})
    assert weak.status == 304
    stale = await api.client.get("/static/baton.js", headers={"If-None-Match": '"stale"'})
    assert stale.status == 200 and await stale.read() == body

    types = await api.client.get("/static/baton.d.ts")
    assert types.status == 200 and "export declare class Baton" in await types.text()
    page = await api.client.get("/static/dashboard.html")
    assert page.status == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    head = await api.client.head("/static/baton.js")
    assert head.status == 200 and head.headers["ETag"] == etag


@pytest.mark.parametrize(
    "target",
    [
        "/static/nope.js",
        "/static/BATON.JS",
        "/static/baton.js.bak",
        "/static/__init__.py",
        "/static/..%2fapp.py",
        "/static/..%2Fhttp%2Froutes.py",
        "/static/%2e%2e%2fsettings.py",
        "/static/%2E%2E%2F%2E%2E%2Fpyproject.toml",
        "/static/..%5capp.py",
        "/static/..%252fapp.py",
        "/static/%2fetc%2fpasswd",
        "/static/js%2fbaton.js",
        "/static/.",
        "/static/..",
        "/static/../orchestrator/app.py",
        "/static/../../pyproject.toml",
        "/static/baton.js%00.html",
        "/static/",
    ],
)
async def test_unknown_names_and_path_tricks_are_404(api: Api, target: str) -> None:
    status, body = await raw_get(api, target)
    assert status == 404, (target, body[:200])
    assert b"import " not in body and b"[project]" not in body and b"root:" not in body


async def test_an_unknown_name_answers_the_api_error_shape(api: Api) -> None:
    answer = await api.client.get("/static/nope.js")
    assert answer.status == 404
    assert await answer.json() == {"error": "static_file_not_found", "detail": "no static file 'nope.js'"}
