"""W3C trace context in NATS headers and outbox rows (traceparent / tracestate only)."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["current_trace_headers", "extract_context", "inject_context"]

_PROPAGATOR = TraceContextTextMapPropagator()


def inject_context(ctx: otel_context.Context | None = None) -> dict[str, str]:
    """{'traceparent': ..., 'tracestate': ...} for `ctx` (default: the current context); {} if none."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=ctx)
    return carrier


def current_trace_headers() -> tuple[str | None, str | None]:
    carrier = inject_context()
    return carrier.get("traceparent"), carrier.get("tracestate") or None


def extract_context(traceparent: str | None, tracestate: str | None = None) -> otel_context.Context:
    """A context whose parent is the remote span described by the headers (empty context if none)."""
    carrier: Mapping[str, str] = {
        k: v for k, v in (("traceparent", traceparent), ("tracestate", tracestate)) if v
    }
    return _PROPAGATOR.extract(carrier, context=otel_context.Context())
