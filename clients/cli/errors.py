"""The CLI's errors, each with the exit code it ends the process with; aiohttp's errors are translated
into them at the boundary (clients.cli.http, clients.cli.follow), so no traceback ever reaches a user.

    CliError                 exit_code
    ├── BadInput             2  usage errors, bad JSON, the server's 400 / 413 / 422
    ├── JobEndedBadly        1  a followed job failed, timed out or was cancelled
    ├── ServerRefused        1  any other error answer (409 conflict, 429 quota, ...)
    │   ├── AuthFailed       3  401, 403, a WebSocket closed for its key
    │   ├── NotFound         4  404, a WebSocket closed with 4404
    │   └── Unavailable      5  503: the orchestrator's broker or Redis is down
    └── Unreachable          5  no connection to the orchestrator at all
"""

from __future__ import annotations

from typing import Any, Final

OK: Final[int] = 0
JOB_FAILED: Final[int] = 1
USAGE: Final[int] = 2
AUTH: Final[int] = 3
NOT_FOUND: Final[int] = 4
UNREACHABLE: Final[int] = 5
INTERRUPTED: Final[int] = 130


class CliError(Exception):
    exit_code: int = JOB_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(CliError):
    exit_code = USAGE


class JobEndedBadly(CliError):
    exit_code = JOB_FAILED


class Unreachable(CliError):
    exit_code = UNREACHABLE


class ServerRefused(CliError):
    """An error answer {error, detail} of the API."""

    def __init__(self, status: int, error: str, detail: Any) -> None:
        super().__init__(f"{status} {error}: {describe_detail(detail)}")
        self.status = status
        self.error = error
        self.detail = detail


class AuthFailed(ServerRefused):
    exit_code = AUTH


class NotFound(ServerRefused):
    exit_code = NOT_FOUND


class Unavailable(ServerRefused):
    exit_code = UNREACHABLE


class InvalidRequest(ServerRefused):
    exit_code = USAGE


_BY_STATUS: Final[dict[int, type[ServerRefused]]] = {
    400: InvalidRequest,
    401: AuthFailed,
    403: AuthFailed,
    404: NotFound,
    413: InvalidRequest,
    422: InvalidRequest,
    503: Unavailable,
}


def refusal(status: int, error: str, detail: Any) -> ServerRefused:
    """The error for an API answer with this status."""
    return _BY_STATUS.get(status, ServerRefused)(status, error, detail)


def describe_detail(detail: Any) -> str:
    """One line from a detail: a string as it is, pydantic's error list as `loc: msg; loc: msg`."""
    if isinstance(detail, list) and all(isinstance(item, dict) for item in detail):
        parts = []
        for item in detail:
            loc = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
            message = str(item.get("msg", item))
            parts.append(f"{loc}: {message}" if loc else message)
        return "; ".join(parts)
    text = detail if isinstance(detail, str) else repr(detail)
    return " ".join(text.split())
