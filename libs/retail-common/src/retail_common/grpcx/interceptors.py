"""Server interceptors, outermost first: call context + request log, error mapping, deadline, auth.

Services built on `run_service` get all of them (and the server span) from the one `RuntimeInterceptor`
(grpcx/runtime.py), which inlines the same steps for unary calls and composes these classes for
streaming ones; they stay usable one by one for servers assembled by hand (then the OTel server
interceptor from retail_common.telemetry goes before all of them, so the span and its trace id exist
for everything below). Each one acts around the handler inside the call's own
task, so they share the call's ContextVars: auth adds the principal to the CallContext that the
request log reads when the call ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import Any

import grpc
from opentelemetry import trace

from retail_common.auth.policy import PUBLIC_INFRASTRUCTURE_METHODS, MethodPolicy
from retail_common.context import CallContext, Principal, current_call, set_call
from retail_common.db import CONNECTION_ERRORS
from retail_common.errors import (
    DomainError,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    internal_status,
)
from retail_common.grpcx._wrap import wrap_handler
from retail_common.grpcx.request_log import RequestLogPolicy, log_call

__all__ = [
    "AuthInterceptor",
    "CallContextInterceptor",
    "DeadlineInterceptor",
    "ErrorInterceptor",
    "Resolver",
    "bearer_token",
    "current_trace_id",
]

logger = logging.getLogger("retail_common.grpcx")

Resolver = Callable[[str], Awaitable[Principal | None]]
ServicerContext = grpc.aio.ServicerContext[Any, Any]

# Dependency outages: the caller may retry, so UNAVAILABLE rather than INTERNAL.
# (TimeoutError is left out: the deadline interceptor turns it into DEADLINE_EXCEEDED.)
_UNAVAILABLE_ERRORS = tuple(error for error in CONNECTION_ERRORS if error is not TimeoutError)


def current_trace_id() -> str | None:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


class _AroundInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED
            return handler
        method = handler_call_details.method
        return wrap_handler(handler, lambda context: self.around(method, context), self.on_request)

    on_request: Callable[[Any], None] | None = None

    def around(self, method: str, context: ServicerContext) -> AbstractAsyncContextManager[None]:
        raise NotImplementedError


def _deadline_passed(context: ServicerContext) -> bool:
    remaining = context.time_remaining()
    return remaining is not None and remaining <= 0


class CallContextInterceptor(_AroundInterceptor):
    """Sets the CallContext and logs one line per call: method, principal, code, duration, trace id.

    A unary request's `request_id` (the idempotency key of mutations, DESIGN §4) joins the context, so
    audit records and log lines carry it without each handler passing it on. Metadata values are
    never logged (they carry credentials).
    """

    @staticmethod
    def _note_request_id(request: Any) -> None:
        request_id = getattr(request, "request_id", None)
        call = current_call()
        if isinstance(request_id, str) and request_id and call is not None:
            set_call(replace(call, request_id=request_id))

    on_request = _note_request_id

    def __init__(self, log_policy: RequestLogPolicy | None = None) -> None:
        self._log_policy = log_policy or RequestLogPolicy()

    @asynccontextmanager
    async def around(self, method: str, context: ServicerContext) -> AsyncIterator[None]:
        previous = current_call()
        set_call(CallContext(method=method, trace_id=current_trace_id()))
        started = time.monotonic()
        code: grpc.StatusCode | None = None
        try:
            yield
        except asyncio.CancelledError:
            code = (
                grpc.StatusCode.DEADLINE_EXCEEDED if _deadline_passed(context) else grpc.StatusCode.CANCELLED
            )
            raise
        except grpc.aio.AbortError:
            code = context.code()
            raise
        except BaseException:
            code = grpc.StatusCode.UNKNOWN
            raise
        else:
            code = context.code()
        finally:
            duration_ms = round((time.monotonic() - started) * 1000, 2)
            log_call(method, code or grpc.StatusCode.OK, duration_ms, current_call(), self._log_policy)
            set_call(previous)


class ErrorInterceptor(_AroundInterceptor):
    """Domain errors -> their status; anything else -> INTERNAL with only the trace id sent back."""

    def __init__(self, domain: str) -> None:
        self._domain = domain

    async def _abort(self, context: ServicerContext, status: grpc.Status) -> None:
        await context.abort(status.code, status.details, status.trailing_metadata)

    async def map_error(self, method: str, context: ServicerContext, exc: Exception) -> None:
        """Abort the call with the status `exc` maps to (context.abort raises AbortError)."""
        if isinstance(exc, DomainError):
            await self._abort(context, exc.to_grpc_status(self._domain))
        elif isinstance(exc, _UNAVAILABLE_ERRORS):
            logger.warning("rpc %s: dependency unavailable: %s", method, type(exc).__name__)
            await self._abort(
                context, Unavailable("a dependency is unavailable; retry").to_grpc_status(self._domain)
            )
        else:
            trace_id = current_trace_id()
            # The exception (and its message) stays in the server log, keyed by trace id.
            logger.error(
                "rpc %s failed with an unexpected exception (trace id %s)", method, trace_id, exc_info=exc
            )
            await self._abort(context, internal_status(trace_id, self._domain))

    @asynccontextmanager
    async def around(self, method: str, context: ServicerContext) -> AsyncIterator[None]:
        try:
            yield
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await self.map_error(method, context, exc)


class DeadlineInterceptor(_AroundInterceptor):
    """Stops the handler when the caller's deadline passes.

    grpc.aio also cancels the handler task when the client's deadline expires; this bound makes it
    explicit and independent of when the transport notices, so no work continues past the deadline.
    """

    @asynccontextmanager
    async def around(self, method: str, context: ServicerContext) -> AsyncIterator[None]:
        remaining = context.time_remaining()
        if remaining is None:
            yield
            return
        if remaining <= 0:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded before the call started"
            )
        timeout = asyncio.timeout(remaining)
        try:
            async with timeout:
                yield
        except TimeoutError:
            if not timeout.expired():
                raise
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")


def bearer_token(authorization: str | None) -> str | None:
    """The key of an `authorization: Bearer <key>` value; None for anything else."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if token and scheme.lower() == "bearer" else None


def _authorization(context: ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            return value
    return None


class AuthInterceptor(_AroundInterceptor):
    """Resolves `authorization: Bearer <key>` to a Principal and enforces the method's policy.

    Unlisted methods are denied (secure default); health and reflection are public. Failures say
    nothing about why a key was refused (unknown, wrong, revoked, expired look the same).
    """

    def __init__(self, resolve: Resolver, policies: Mapping[str, MethodPolicy]) -> None:
        self._resolve = resolve
        self._policies = dict(policies)

    def policy_for(self, method: str) -> MethodPolicy | None:
        if method in PUBLIC_INFRASTRUCTURE_METHODS:
            return MethodPolicy(is_public=True)
        return self._policies.get(method)

    async def authorize(self, method: str, policy: MethodPolicy | None, authorization: str | None) -> None:
        """Resolve the caller, add it to the CallContext, enforce `policy` (None: denied); raises
        Unauthenticated / PermissionDenied. Public methods do not call this."""
        token = bearer_token(authorization)
        principal = await self._resolve(token) if token else None
        if principal is None:
            raise Unauthenticated()
        call = current_call()
        set_call(replace(call, principal=principal) if call else CallContext(method, principal=principal))
        if policy is None:
            raise PermissionDenied("no access policy allows this method")
        denial = policy.denial(principal)
        if denial is not None:
            raise PermissionDenied(denial)

    @asynccontextmanager
    async def around(self, method: str, context: ServicerContext) -> AsyncIterator[None]:
        policy = self.policy_for(method)
        if policy is None or not policy.is_public:
            await self.authorize(method, policy, _authorization(context))
        yield
