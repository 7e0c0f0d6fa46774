"""GET /docs: Swagger UI served offline, every script and stylesheet from the orchestrator itself
(tests/browser/test_docs_page.py renders it in Debian's chromium)."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from orchestrator.http.docs_routes import ASSETS, swagger_static_folder
from tests.api_server import Api


class _Resources(HTMLParser):
    """The URLs a page loads: script src and link href."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


async def test_docs_serves_a_page_whose_scripts_and_styles_are_all_local(api: Api) -> None:
    response = await api.client.get("/docs")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    parser = _Resources()
    parser.feed(page)
    assert len(parser.urls) >= 4
    types = {}
    for url in parser.urls:
        assert not urlsplit(url).scheme and not url.startswith("//"), url
        loaded = await api.client.get(urljoin("/docs", url))
        assert loaded.status == 200, url
        types[url.rsplit("/", 1)[-1]] = loaded.content_type
        assert len(await loaded.read()) > 0
    assert types["swagger-ui.css"] == "text/css"
    assert types["swagger-ui-bundle.js"] == types["baton-docs.js"] == "text/javascript"
    bundle = await (await api.client.get("/docs/swagger-ui-bundle.js")).text()
    assert "SwaggerUIBundle" in bundle and len(bundle) > 500_000
    init = await (await api.client.get("/docs/baton-docs.js")).text()
    # The document the page reads, and no validator badge fetched from swagger.io.
    assert 'url: "openapi.json"' in init and "validatorUrl: null" in init
    # The page reads /openapi.json; both need no key.
    assert (await api.client.get(urljoin("/docs", "openapi.json"))).status == 200


async def test_only_the_pages_files_are_served(api: Api) -> None:
    for name in ("swagger-editor-bundle.js", "LICENSE", "index.css", "..%2Fcore.py", "nothing"):
        response = await api.client.get(f"/docs/{name}")
        assert response.status == 404, name
        assert (await response.json())["error"] == "not_found"
    folder = swagger_static_folder()
    assert folder is not None and all((folder / name).is_file() for name in ASSETS)
