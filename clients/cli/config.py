"""Where the orchestrator is and how to talk to it: from `--url`/`--key` or BATON_URL / BATON_API_KEY,
read by typer once per command into a frozen Target that is passed down."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final
from urllib.parse import urlsplit

import typer

from clients.cli.errors import BadInput

DEFAULT_URL: Final[str] = "http://localhost:8000"

Url = Annotated[
    str,
    typer.Option("--url", envvar="BATON_URL", help="The orchestrator's base URL.", show_envvar=True),
]
Key = Annotated[
    str | None,
    typer.Option("--key", envvar="BATON_API_KEY", help="A tenant's API key.", show_envvar=True, show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the server's raw JSON instead of tables.")]


@dataclass(frozen=True)
class Target:
    url: str  # without a trailing slash
    key: str | None
    as_json: bool = False

    @property
    def websocket_url(self) -> str:
        """The base URL with ws:// or wss:// for http:// or https://."""
        scheme, rest = self.url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}


def target(url: str, key: str | None, as_json: bool = False) -> Target:
    """The Target of these options; BadInput for a URL that is not http(s)://host[:port][/prefix]."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInput(f"--url must look like http://host:port, got {url!r}")
    try:
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise BadInput(f"--url has a bad port: {url!r}") from None
    return Target(url=url.strip().rstrip("/"), key=key or None, as_json=as_json)
