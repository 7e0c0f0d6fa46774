"""The `baton` commands, a module per subject; each module's `register` adds its commands to the app."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from clients.cli.config import Target
from clients.cli.http import BatonHttp, connect
from clients.cli.output import Output


def run_with(target: Target, action: Callable[[BatonHttp, Output], Awaitable[int]]) -> int:
    """Run `action` with an HTTP client for `target` and the output for its --json; its exit code."""

    async def main() -> int:
        async with connect(target) as http:
            return await action(http, Output.make(target.as_json))

    return asyncio.run(main())


def optional(**fields: Any) -> dict[str, Any]:
    """The fields that are set (a request body leaves the others to the server's defaults)."""
    return {name: value for name, value in fields.items() if value is not None}
