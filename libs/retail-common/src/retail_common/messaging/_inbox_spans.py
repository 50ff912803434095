"""CONSUMER spans of the inbox, one per message, made cheap enough to keep on the hot path.

The W3C propagator validates `traceparent` with a regular expression and builds its context in ~10 us,
as much as the rest of a message's span when no SDK is installed. A well-formed version-00 header
without `tracestate` (what the relay writes) is parsed here directly; anything else goes through the
propagator, so the result is the same.
"""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from retail_common.messaging._propagation import extract_context

__all__ = ["parent_context"]

_HEX = frozenset("0123456789abcdef")


def parent_context(traceparent: str | None, tracestate: str | None = None) -> otel_context.Context:
    """The remote parent described by the headers; without one, an empty context (a new trace, never
    the runner task's current span)."""
    if not traceparent:
        return otel_context.Context()
    if (
        tracestate
        or len(traceparent) != 55
        or not traceparent.startswith("00-")
        or traceparent[35] != "-"
        or traceparent[52] != "-"
        or not _HEX.issuperset(traceparent[3:35])
        or not _HEX.issuperset(traceparent[36:52])
        or not _HEX.issuperset(traceparent[53:])
    ):
        return extract_context(traceparent, tracestate)
    trace_id = int(traceparent[3:35], 16)
    span_id = int(traceparent[36:52], 16)
    if not trace_id or not span_id:
        return extract_context(traceparent, tracestate)
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(traceparent[53:], 16)))
    return trace.set_span_in_context(NonRecordingSpan(parent), otel_context.Context())
