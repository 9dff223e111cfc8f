"""OpenTelemetry tracing, off unless a server's `otlp_endpoint` names an OTLP/gRPC collector (then install the
`tracing` extra: `pip install -e .[tracing]`).

When on, every call a server serves is a span (the interceptors' and the WSGI middleware's), the child of the
caller's span when the call carries W3C `traceparent` metadata or header, and every call it makes carries its
own span on. So one identify is one trace: HTTP gateway -> gateway -> extractor and every shard. Spans also carry
the request id (`findface.request_id`). When off, none of this is imported and each call costs one check.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from findface_grpc.errors import ConfigError

_tracer = None  # the process's tracer while tracing is on
_provider = None


def enabled() -> bool:
    return _tracer is not None


def start(endpoint: str, server: str) -> None:
    """Export this process's spans to `endpoint` (host:port of an OTLP/gRPC collector), as the service
    `findface-<server>`."""
    global _tracer, _provider
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError(f"[{server}].otlp_endpoint needs OpenTelemetry's SDK: pip install -e .[tracing]") from None
    _provider = TracerProvider(resource=Resource.create({"service.name": f"findface-{server}"}))
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    _tracer = _provider.get_tracer("findface_grpc")


def stop() -> None:
    """Send the spans still buffered, then stop tracing."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


@contextlib.contextmanager
def served(name: str, carrier: dict[str, str], request_id: str) -> Iterator[object]:
    """The span of one served call, current while it runs (so the calls it makes are its children); the caller's
    context from `carrier` (metadata or headers, lower-case keys). Yields the span, or None when tracing is off."""
    if _tracer is None:
        yield None
        return
    from opentelemetry import propagate, trace

    parent = propagate.extract(carrier)
    # Refusals (a bad photo, an unknown face) are the caller's: `finish` says which outcomes are errors.
    with _tracer.start_as_current_span(name, context=parent, kind=trace.SpanKind.SERVER,
                                       attributes={"findface.request_id": request_id}, record_exception=False,
                                       set_status_on_exception=False) as span:
        yield span


def finish(span, code: str) -> None:
    """Record a served call's outcome on its span (a no-op when tracing is off)."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("rpc.grpc.status_code" if not code.isdigit() else "http.response.status_code", code)
    failed = code not in ("OK", "CANCELLED") and not (code.isdigit() and int(code) < 500)
    if failed:
        span.set_status(Status(StatusCode.ERROR, code))


def outgoing(metadata: Iterable[tuple[str, str]] = ()) -> tuple[tuple[str, str], ...]:
    """`metadata` plus the current span's context (W3C traceparent), for a call to another server."""
    if _tracer is None:
        return tuple(metadata)
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return (*metadata, *carrier.items())
