"""Who may hold a WebSocket on this process, and how fast it may talk (DESIGN "Flow control").

- A browser's upgrade (one that carries `Origin`) must come from an allowed origin: the request's own
  host by default, the BATON_ALLOWED_ORIGINS list when set (`*`: any). Refused with 403 before the
  upgrade, so a page elsewhere cannot ride on a user's `?token=`. No Origin: not a browser, allowed.
- Caps per process on open sockets, in all and per tenant, and on sockets still waiting for their
  first-message auth (each holds a slot for up to the auth timeout). Over a cap the socket is
  accepted, told which cap in an error message, and closed with 1013 (try again later): a browser
  cannot read the status of a refused upgrade, only a close frame.
- Client messages per connection through an in-memory token bucket; past it, an error message and
  a close with 1008 (policy violation).

Every refusal is counted in `baton_websocket_refusals_total{reason}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from aiohttp import WSCloseCode, web
from yarl import URL

from orchestrator.metrics import OrchestratorMetrics
from orchestrator.rates import TokenBucket
from orchestrator.settings import ANY_ORIGIN, WebSocketSettings, normal_origin


@dataclass(frozen=True)
class Refusal:
    reason: str  # the metric label, and the message's "cap"
    code: int
    close_reason: str
    detail: str

    def message(self) -> dict[str, Any]:
        error = "rate_limited" if self.reason == MESSAGE_RATE else "too_many_connections"
        return {"type": "error", "error": error, "cap": self.reason, "detail": self.detail}


TENANT_CAP: Final[str] = "tenant_cap"
PROCESS_CAP: Final[str] = "process_cap"
UNAUTHENTICATED_CAP: Final[str] = "unauthenticated_cap"
MESSAGE_RATE: Final[str] = "message_rate"
ORIGIN: Final[str] = "origin"


class SocketAdmission:
    """This process's open and waiting sockets, counted against the caps of `WebSocketSettings`."""

    def __init__(self, limits: WebSocketSettings, metrics: OrchestratorMetrics) -> None:
        self._limits = limits
        self._metrics = metrics
        self._open = 0
        self._by_tenant: dict[str, int] = {}
        self._waiting = 0

    def origin_allowed(self, request: web.Request) -> bool:
        """Whether the upgrade may go on; a refusal is counted here."""
        origin = request.headers.get("Origin")
        if origin is None or _allowed(origin, request.host, self._limits.allowed_origins):
            return True
        self.refused(ORIGIN)
        return False

    def wait_for_auth(self) -> Refusal | None:
        """Take a slot for a socket that authenticates by its first message; `done_waiting` frees it."""
        limit = self._limits.max_unauthenticated
        if self._waiting >= limit:
            return self._refuse(
                UNAUTHENTICATED_CAP,
                WSCloseCode.TRY_AGAIN_LATER,
                "too many sockets waiting to authenticate",
                f"{limit} sockets are already waiting to authenticate on this server: send the key with the "
                "upgrade (Authorization header or ?token=), or retry later",
            )
        self._waiting += 1
        return None

    def done_waiting(self) -> None:
        self._waiting -= 1

    def admit(self, tenant_id: str | None) -> Refusal | None:
        """Take a slot for an authenticated socket (tenant None: a service); `leave` frees it."""
        limits = self._limits
        if self._open >= limits.max_connections:
            return self._refuse(
                PROCESS_CAP,
                WSCloseCode.TRY_AGAIN_LATER,
                "server WebSocket cap reached",
                f"this server holds its maximum of {limits.max_connections} WebSockets: retry later",
            )
        held = self._by_tenant.get(tenant_id, 0) if tenant_id is not None else 0
        if tenant_id is not None and held >= limits.max_per_tenant:
            return self._refuse(
                TENANT_CAP,
                WSCloseCode.TRY_AGAIN_LATER,
                "tenant WebSocket cap reached",
                f"tenant {tenant_id!r} already holds {held} WebSockets on this server, its maximum: close one "
                "(one socket can follow many jobs) or retry later",
            )
        self._open += 1
        if tenant_id is not None:
            self._by_tenant[tenant_id] = held + 1
        return None

    def leave(self, tenant_id: str | None) -> None:
        self._open -= 1
        if tenant_id is not None:
            left = self._by_tenant[tenant_id] - 1
            if left:
                self._by_tenant[tenant_id] = left
            else:
                del self._by_tenant[tenant_id]

    def message_bucket(self) -> TokenBucket | None:
        """A new connection's budget of client messages; None when unlimited."""
        rate = self._limits.message_rate
        return TokenBucket(rate) if rate is not None else None

    def too_fast(self) -> Refusal:
        rate = self._limits.message_rate
        allowance = f"{rate.per_second:g} a second, {rate.burst} at once" if rate is not None else "none"
        return self._refuse(
            MESSAGE_RATE,
            WSCloseCode.POLICY_VIOLATION,
            "message rate exceeded",
            f"over this server's rate of client messages ({allowance}): closing; subscribe to many jobs per message",
        )

    def refused(self, reason: str) -> None:
        self._metrics.ws_refusals.labels(reason=reason).inc()

    def _refuse(self, reason: str, code: int, close_reason: str, detail: str) -> Refusal:
        self.refused(reason)
        return Refusal(reason, code, close_reason, detail)


def _allowed(origin: str, host: str, allowed: frozenset[str] | None) -> bool:
    if allowed is not None and ANY_ORIGIN in allowed:
        return True
    try:
        origin = normal_origin(origin)
        if allowed is not None:
            return origin in allowed
        # Same host as the request: the page was served by this server (the dashboard, for one).
        url = URL(origin)
        own = URL(f"{url.scheme}://{host}")
    except ValueError:
        return False  # "null" (a sandboxed page or a file), or nothing a browser sends
    return url.host is not None and (url.host, url.port) == (own.host, own.port)
