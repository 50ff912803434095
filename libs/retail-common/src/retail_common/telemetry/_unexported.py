"""The TracerProvider of a process that exports no spans (no OTLP endpoint, OTEL_TRACES_EXPORTER=none).

A plain SDK provider without a span processor still records every span (attributes, events, timings,
a lock per span) for nobody: on a small RPC that was ~15 us of the server span alone, and every
asyncpg query span too. While no span processor is attached, this provider's tracers make
NonRecordingSpans instead, with what the SDK would have given the span otherwise: the parent's trace
id or a new one, a new span id, and the trace flags the configured sampler decides
(OTEL_TRACES_SAMPLER still applies). So trace ids in logs and audit records, and the W3C context
passed on to other services (sampled flag included), are what they were; only the recording that no
exporter would read is skipped. Once a processor is added, tracers, including those handed out
before, make SDK spans as usual.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.util import types
from opentelemetry.util._decorator import _agnosticcontextmanager

__all__ = ["UnexportedTracerProvider"]


class UnexportedTracerProvider(TracerProvider):
    @property
    def has_span_processors(self) -> bool:
        return bool(self._active_span_processor._span_processors)

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace_api.Tracer:
        tracer = super().get_tracer(*args, **kwargs)
        return _ContextOnlyTracer(tracer, self) if isinstance(tracer, Tracer) else tracer


class _ContextOnlyTracer(trace_api.Tracer):
    def __init__(self, tracer: Tracer, provider: UnexportedTracerProvider) -> None:
        self._tracer = tracer
        self._provider = provider

    def start_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: trace_api.SpanKind = trace_api.SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace_api.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        tracer = self._tracer
        if self._provider.has_span_processors or not tracer._is_enabled():
            return tracer.start_span(
                name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
            )
        # The SDK's Tracer.start_span up to the span context (opentelemetry-sdk 1.45), then no _Span.
        parent = trace_api.get_current_span(context).get_span_context()
        if parent.is_valid:
            trace_id = parent.trace_id
            random_trace_id = parent.trace_flags.random_trace_id
        else:
            trace_id = tracer.id_generator.generate_trace_id()
            random_trace_id = tracer.id_generator.is_trace_id_random()
        sampling = tracer.sampler.should_sample(context, trace_id, name, kind, attributes, links or ())
        sampled = sampling.decision.is_sampled()  # type: ignore[no-untyped-call]
        flags = trace_api.TraceFlags.SAMPLED if sampled else trace_api.TraceFlags.DEFAULT
        if random_trace_id:
            flags |= trace_api.TraceFlags.RANDOM_TRACE_ID
        span_context = trace_api.SpanContext(
            trace_id,
            tracer.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=trace_api.TraceFlags(flags),
            trace_state=sampling.trace_state,
        )
        return trace_api.NonRecordingSpan(span_context)

    @_agnosticcontextmanager
    def start_as_current_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: trace_api.SpanKind = trace_api.SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace_api.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace_api.Span]:
        span = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )
        with trace_api.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current
