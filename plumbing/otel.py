"""The OpenTelemetry implementation of `plumbing.tracing.Tracing`; imported only when tracing is on.

Its own TracerProvider, never the global one: two services in one process (the tests) keep their
spans apart, and nothing else in the process starts exporting. Trace context crosses AMQP as the
W3C `traceparent` header.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from plumbing.tracing import Attributes, Span, SpanKind, TracingMode

_KINDS: Final[Mapping[SpanKind, trace.SpanKind]] = {
    "server": trace.SpanKind.SERVER,
    "client": trace.SpanKind.CLIENT,
    "producer": trace.SpanKind.PRODUCER,
    "consumer": trace.SpanKind.CONSUMER,
    "internal": trace.SpanKind.INTERNAL,
}


def exporter_for(mode: TracingMode) -> SpanExporter:
    """console: spans printed to stdout; otlp: OTLP over HTTP, configured by the standard
    OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT / _HEADERS variables (default http://localhost:4318)."""
    if mode == "console":
        return ConsoleSpanExporter()
    if mode == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise ValueError(f"no span exporter for tracing mode {mode!r}")


class _OtelSpan:
    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def set_attributes(self, attributes: Attributes) -> None:
        self._span.set_attributes(attributes)


def _text_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    """AMQP header values as the propagator reads them: text (a table may hold bytes)."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str):
            found[name] = value
    return found


class OtelTracing:
    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("baton")
        self._propagator = TraceContextTextMapPropagator()

    @classmethod
    def exporting(cls, exporter: SpanExporter, service_name: str) -> OtelTracing:
        """Spans batched to `exporter`, under the resource `service.name` (OTEL_SERVICE_NAME overrides it)."""
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider)

    @property
    def enabled(self) -> bool:
        return True

    @contextmanager
    def span(
        self,
        name: str,
        *,
        kind: SpanKind = "internal",
        attributes: Attributes | None = None,
        parent: Mapping[str, Any] | None = None,
    ) -> Iterator[Span]:
        context = self._propagator.extract(_text_headers(parent)) if parent is not None else None
        started = self._tracer.start_as_current_span(name, context=context, kind=_KINDS[kind], attributes=attributes)
        with started as span:
            yield _OtelSpan(span)

    def inject(self, headers: MutableMapping[str, Any]) -> None:
        self._propagator.inject(headers)

    def shutdown(self) -> None:
        self._provider.shutdown()
