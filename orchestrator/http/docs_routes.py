"""GET /docs: Swagger UI over /openapi.json, served offline.

Swagger UI's own files come from the `swagger-ui-py` package: its `swagger_ui/static` folder, found
with importlib's find_spec so that none of its code is imported (it would load Jinja2 and PyYAML for
nothing). No CDN: the page works where the orchestrator has no way out. Only the files the page
loads are served. Paths are relative, so the page also works behind a proxy that mounts the
orchestrator under a prefix.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Final

from aiohttp import web

from orchestrator.http.errors import ApiError

SWAGGER_PACKAGE: Final[str] = "swagger_ui"
# name -> content type: what the page loads (the bundle carries the standalone layout it needs).
ASSETS: Final[dict[str, str]] = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
INIT_SCRIPT: Final[str] = "baton-docs.js"
# validatorUrl null: Swagger UI would otherwise show a badge fetched from validator.swagger.io.
_INIT: Final[str] = """window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
});
"""
_PAGE: Final[str] = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Baton API</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
  <link rel="icon" type="image/png" sizes="32x32" href="docs/favicon-32x32.png">
  <link rel="icon" type="image/png" sizes="16x16" href="docs/favicon-16x16.png">
  <style>body { margin: 0; background: #fafafa; }</style>
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/baton-docs.js"></script>
</body>
</html>
"""
_CACHE: Final[str] = "public, max-age=86400"  # the files change only with the package's version


def swagger_static_folder() -> Path | None:
    """The folder of Swagger UI's files, without importing the package; None when it is not installed."""
    spec = importlib.util.find_spec(SWAGGER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if folder.is_dir() else None


class DocsRoutes:
    def __init__(self, folder: Path | None) -> None:
        self._folder = folder
        self._loaded: dict[str, bytes] = {}  # read once: the bundle is over a megabyte

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=_PAGE, content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == INIT_SCRIPT:
            return web.Response(text=_INIT, content_type="text/javascript", headers={"Cache-Control": "no-cache"})
        content_type = ASSETS.get(name)
        if content_type is None:
            raise ApiError(404, "not_found", f"no such file of the API docs: {name[:64]!r}")
        if self._folder is None:
            raise ApiError(503, "docs_unavailable", "Swagger UI's files are not installed (pip install swagger-ui-py)")
        body = self._loaded.get(name)
        if body is None:
            body = self._loaded[name] = (self._folder / name).read_bytes()
        return web.Response(body=body, content_type=content_type, headers={"Cache-Control": _CACHE})
