"""Tracing seam: spans around the work of both services, and W3C trace context on AMQP messages.

`Tracing` is what the services talk to. `NoTracing`, the default, does nothing and imports nothing of
OpenTelemetry; `build_tracing` makes the OpenTelemetry one (`plumbing.otel`) when BATON_TRACING asks
for it, importing the SDK only then. Each process builds one in its entrypoint and passes it down:
no global tracer provider is installed.

The spans of one job form one trace: the HTTP request, the publish of its task (the traceparent
goes into the message headers), the worker's processing of the delivery (its parent taken from
those headers) and its handler, the publish of each event (headers again), and the orchestrator's
application of the event.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Final, Literal, Protocol

TracingMode = Literal["off", "console", "otlp"]
SpanKind = Literal["server", "client", "producer", "consumer", "internal"]
AttributeValue = str | int | float | bool
Attributes = Mapping[str, AttributeValue]
# The W3C trace context header, as it rides in AMQP message headers.
TRACEPARENT_HEADER: Final[str] = "traceparent"


class TracingUnavailable(RuntimeError):
    """Tracing was asked for, and the OpenTelemetry packages are not installed."""


class Span(Protocol):
    def set_attributes(self, attributes: Attributes) -> None: ...


class Tracing(Protocol):
    @property
    def enabled(self) -> bool: ...

    def span(
        self,
        name: str,
        *,
        kind: SpanKind = "internal",
        attributes: Attributes | None = None,
        parent: Mapping[str, Any] | None = None,
    ) -> AbstractContextManager[Span]:
        """A span current inside the block: the child of the current span, or, given `parent` (a
        message's headers), of the trace context those headers carry. An exception leaving the
        block is recorded on the span and marks it failed."""
        ...

    def inject(self, headers: MutableMapping[str, Any]) -> None:
        """Put the current span's trace context (`traceparent`) into a message's headers."""
        ...

    def shutdown(self) -> None:
        """Export what is still buffered; the process is stopping."""
        ...


class _NoSpan:
    def set_attributes(self, attributes: Attributes) -> None:
        return None


# One reusable block for every span asked for: nothing made per request or publish.
_UNTRACED: Final[AbstractContextManager[Span]] = nullcontext(_NoSpan())


class NoTracing:
    """Tracing off: no spans, no headers, nothing of OpenTelemetry imported."""

    @property
    def enabled(self) -> bool:
        return False

    def span(
        self,
        name: str,
        *,
        kind: SpanKind = "internal",
        attributes: Attributes | None = None,
        parent: Mapping[str, Any] | None = None,
    ) -> AbstractContextManager[Span]:
        return _UNTRACED

    def inject(self, headers: MutableMapping[str, Any]) -> None:
        return None

    def shutdown(self) -> None:
        return None


def build_tracing(mode: TracingMode, service_name: str) -> Tracing:
    """The tracing BATON_TRACING asks for; TracingUnavailable when the packages are missing."""
    if mode == "off":
        return NoTracing()
    try:
        from plumbing.otel import OtelTracing, exporter_for  # only now: tracing off imports none of it
    except ImportError as exc:
        raise TracingUnavailable(
            f"BATON_TRACING={mode} needs the OpenTelemetry packages: pip install 'baton[tracing]' ({exc})"
        ) from exc
    return OtelTracing.exporting(exporter_for(mode), service_name)
