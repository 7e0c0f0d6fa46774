"""The files served at GET /static/{name}: the dashboard's (orchestrator/static/) and the JS client's
(baton.js and baton.d.ts of the `clients` package's js/, read as package data: no clients code is imported).

Only names found in those two folders are served, so a name can never reach outside them (no path is
ever built from the request). Each file is read once, with a strong ETag of its bytes; answers say
`no-cache` (revalidate every time), so a new release is picked up at once and an unchanged file costs a 304.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import PurePosixPath
from typing import Final

CONTENT_TYPES: Final[dict[str, str]] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".ts": "text/plain; charset=utf-8",  # baton.d.ts: readable in the browser; there is no registered type
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"
JS_CLIENT_FILES: Final = ("baton.js", "baton.d.ts")


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str  # quoted, as sent in the ETag header


def content_type_for(name: str) -> str:
    return CONTENT_TYPES.get(PurePosixPath(name).suffix.lower(), DEFAULT_CONTENT_TYPE)


def _loaded(name: str, source: Traversable) -> StaticFile:
    body = source.read_bytes()
    return StaticFile(body, content_type_for(name), f'"{hashlib.sha256(body).hexdigest()[:32]}"')


class StaticFiles:
    """Every servable file by name, read when made."""

    def __init__(self, files: dict[str, StaticFile]) -> None:
        self._files = files

    @classmethod
    def packaged(cls) -> StaticFiles:
        """orchestrator/static/* and the JS client (whose names win: baton.js is always the client)."""
        files: dict[str, StaticFile] = {}
        dashboard = resources.files("orchestrator").joinpath("static")
        if dashboard.is_dir():
            for entry in dashboard.iterdir():
                if entry.is_file() and not entry.name.startswith("."):
                    files[entry.name] = _loaded(entry.name, entry)
        client = resources.files("clients").joinpath("js")
        for name in JS_CLIENT_FILES:
            source = client.joinpath(name)
            if source.is_file():
                files[name] = _loaded(name, source)
        return cls(files)

    def get(self, name: str) -> StaticFile | None:
        return self._files.get(name)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._files)
