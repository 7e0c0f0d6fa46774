"""The dashboard's files: plain ES modules that load only each other and the JS client, all served by
GET /static/{name}, and nothing from another origin (no CDN, no framework)."""

from __future__ import annotations

import re
from importlib import resources

from orchestrator.http.static_files import StaticFiles

IMPORT = re.compile(r"""^import\s[^;]*?from\s+"([^"]+)";""", re.MULTILINE | re.DOTALL)
LINKED = re.compile(r"""(?:src|href)="([^"#]+)\"""")


def dashboard_text(name: str) -> str:
    return resources.files("orchestrator").joinpath("static", name).read_text(encoding="utf-8")


def dashboard_files() -> list[str]:
    return sorted(
        entry.name
        for entry in resources.files("orchestrator").joinpath("static").iterdir()
        if entry.name.startswith("dashboard")
    )


def test_every_module_the_dashboard_imports_is_served() -> None:
    served = StaticFiles.packaged().names
    modules = [name for name in dashboard_files() if name.endswith(".js")]
    assert "dashboard-app.js" in modules
    for name in modules:
        for target in IMPORT.findall(dashboard_text(name)):
            assert target.startswith("/static/"), f"{name} imports {target}: only /static/ files load"
            assert target.removeprefix("/static/") in served, f"{name} imports {target}, which is not served"


def test_the_page_links_only_served_files() -> None:
    served = StaticFiles.packaged().names
    linked = LINKED.findall(dashboard_text("dashboard.html"))
    assert linked == ["data:,", "/static/dashboard.css", "/static/dashboard-app.js"]
    for target in linked[1:]:
        assert target.removeprefix("/static/") in served


def test_nothing_comes_from_another_origin() -> None:
    for name in dashboard_files():
        text = dashboard_text(name).replace('"http://www.w3.org/2000/svg"', "")  # a namespace, never fetched
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text), f"{name} names another origin"
        assert "@import" not in text and "url(" not in text, f"{name} loads a resource from its CSS"


def test_the_dashboard_talks_to_the_server_only_through_the_js_client() -> None:
    for name in dashboard_files():
        text = dashboard_text(name)
        assert "fetch(" not in text and "new WebSocket" not in text and "XMLHttpRequest" not in text, name
