"""The runtime's one server interceptor: server span, call context + request log, error mapping, deadline
and auth, in that order (outermost first), as the separate interceptors in grpcx/interceptors.py do.

Why one, inlined: on a small RPC the separate layers cost more than the work they do
(bench/runtime_overhead.py). Each layer was a grpc.aio interceptor (an `intercept_service` coroutine and
a rebuilt method handler per call) plus an async context manager (a generator driven through
__aenter__/__aexit__) per call, and the OTel library interceptor added its own layer and a proxy around
the ServicerContext. Here:

- the wrapped handler is built once per (method, handler) and reused, with the method's policy, span
  attributes and log level worked out then, not per call;
- a unary-unary call runs as one coroutine with plain try/except blocks; the invocation metadata is
  read and scanned once (credential, user agent, trace propagation fields);
- streaming calls (few, long-lived) keep the composed context managers of the separate interceptors,
  so both paths share the policy, error mapping, request log and span code.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc

from retail_common.auth.policy import MethodPolicy
from retail_common.context import CallContext, current_call, set_call
from retail_common.errors import DomainError
from retail_common.grpcx._wrap import wrap_handler
from retail_common.grpcx.interceptors import (
    AuthInterceptor,
    CallContextInterceptor,
    DeadlineInterceptor,
    ErrorInterceptor,
    Resolver,
    _AroundInterceptor,
    current_trace_id,
)
from retail_common.grpcx.request_log import RequestLogPolicy, log_call
from retail_common.telemetry.server_spans import (
    ServerSpans,
    method_attributes,
    outcome_code,
    scan_metadata,
    server_span,
    traced_method,
)

__all__ = ["RuntimeInterceptor"]

ServicerContext = grpc.aio.ServicerContext[Any, Any]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any]"]]

_MAX_CACHED_HANDLERS = 4096  # methods x handlers; generated servicers reuse one handler per method
_NO_FIELDS: frozenset[str] = frozenset()


def _request_id(request: Any) -> str | None:
    request_id = getattr(request, "request_id", None)
    return request_id if isinstance(request_id, str) and request_id else None


def _around(
    layer: _AroundInterceptor, method: str, context: ServicerContext
) -> AbstractAsyncContextManager[None]:
    return layer.around(method, context)


class RuntimeInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """`tracing` None: no server spans (a span opened by an outer interceptor is still the parent of
    everything below and its trace id still reaches the CallContext and the log)."""

    def __init__(
        self,
        *,
        resolve: Resolver,
        policies: Mapping[str, MethodPolicy],
        error_domain: str,
        tracing: ServerSpans | None = None,
        log_policy: RequestLogPolicy | None = None,
    ) -> None:
        self._spans = tracing
        self._log_policy = log_policy or RequestLogPolicy()
        self._auth = AuthInterceptor(resolve, policies)
        self._errors = ErrorInterceptor(error_domain)
        self._call_context = CallContextInterceptor(self._log_policy)
        self._deadline = DeadlineInterceptor()
        self._handlers: dict[tuple[str, int], tuple[grpc.RpcMethodHandler[Any, Any], Any]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED
            return handler
        method = handler_call_details.method
        key = (method, id(handler))
        cached = self._handlers.get(key)
        if cached is not None and cached[0] is handler:
            wrapped: grpc.RpcMethodHandler[Any, Any] = cached[1]
            return wrapped
        wrapped = self.wrap(method, handler)
        if len(self._handlers) >= _MAX_CACHED_HANDLERS:  # handlers made per call: do not grow forever
            self._handlers.clear()
        self._handlers[key] = (handler, wrapped)  # the handler is kept, so its id is not reused
        return wrapped

    def wrap(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary_unary(method, handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return self._streaming(method, handler)

    def _streaming(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        layers: tuple[_AroundInterceptor, ...] = (self._auth, self._deadline, self._errors)
        for layer in layers:  # innermost first
            handler = wrap_handler(handler, functools.partial(_around, layer, method))
        handler = wrap_handler(
            handler,
            lambda context: self._call_context.around(method, context),
            self._call_context.on_request,
        )
        spans = self._spans
        if spans is not None and traced_method(method):
            handler = wrap_handler(handler, lambda context: server_span(spans, method, context))
        return handler

    def _unary_unary(self, method: str, inner: Any) -> Callable[[Any, ServicerContext], Awaitable[Any]]:
        policy = self._auth.policy_for(method)
        authorize = None if policy is not None and policy.is_public else self._auth.authorize
        spans = self._spans if traced_method(method) else None
        attributes = method_attributes(method)
        map_error = self._errors.map_error
        log_policy = self._log_policy

        async def call(request: Any, context: ServicerContext) -> Any:
            fields = spans.propagation_fields() if spans is not None else _NO_FIELDS
            authorization, user_agent, carrier = scan_metadata(context.invocation_metadata(), fields)
            if spans is not None:
                span, token = spans.start(method, attributes, carrier, user_agent, context)
                span_context = span.get_span_context()
                trace_id = format(span_context.trace_id, "032x") if span_context.is_valid else None
            else:
                trace_id = current_trace_id()
            previous = current_call()
            set_call(CallContext(method, request_id=_request_id(request), trace_id=trace_id))
            started = time.monotonic()
            error: BaseException | None = None
            unexpected: Exception | None = None
            try:
                try:  # error mapping
                    remaining = context.time_remaining()
                    if remaining is None:
                        if authorize is not None:
                            await authorize(method, policy, authorization)
                        return await inner(request, context)
                    if remaining <= 0:
                        await context.abort(
                            grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded before the call started"
                        )
                    # grpc.aio cancels the handler too when the deadline expires; this bound makes it
                    # explicit and independent of when the transport notices (DeadlineInterceptor).
                    timeout = asyncio.timeout(remaining)
                    try:
                        async with timeout:
                            if authorize is not None:
                                await authorize(method, policy, authorization)
                            return await inner(request, context)
                    except TimeoutError:
                        if not timeout.expired():
                            raise
                        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
                        raise  # not reached: abort raises
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    unexpected = exc
                    await map_error(method, context, exc)
                    raise  # not reached: map_error aborts
            except BaseException as exc:
                error = exc
                raise
            finally:
                code = outcome_code(context, error)
                duration_ms = round((time.monotonic() - started) * 1000, 2)
                log_call(method, code, duration_ms, current_call(), log_policy)
                set_call(previous)
                if spans is not None:
                    # a domain error is an answer, not a failure of the server: not recorded
                    recorded = None if isinstance(unexpected, DomainError) else unexpected
                    spans.finish(span, token, code, context.details(), recorded)

        return call
