"""Wrap any grpc.aio method handler (all four streaming kinds) in an async context manager.

Server interceptors in grpc.aio only see the handler, not the call: to act around the call itself
(and inside its task, where ContextVars and the OTel span live) they must rebuild the handler with a
wrapped behaviour. Each of our interceptors supplies an `around(context)` context manager; this
module does the rebuilding once.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc

__all__ = ["Around", "wrap_handler"]

Around = Callable[[grpc.aio.ServicerContext[Any, Any]], AbstractAsyncContextManager[None]]
OnRequest = Callable[[Any], None]


async def _drain(result: Any) -> AsyncIterator[Any]:
    # A streaming behaviour is either an async generator or a coroutine that calls context.write().
    if inspect.isasyncgen(result):
        async for item in result:
            yield item
    else:
        await result


def wrap_handler(
    handler: grpc.RpcMethodHandler[Any, Any], around: Around, on_request: OnRequest | None = None
) -> grpc.RpcMethodHandler[Any, Any]:
    """`on_request`, if given, sees a unary request inside `around` (streamed requests are not seen)."""
    deserialize, serialize = handler.request_deserializer, handler.response_serializer

    if handler.unary_unary is not None:
        unary_unary: Any = handler.unary_unary

        async def call_unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with around(context):
                if on_request is not None:
                    on_request(request)
                return await unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(call_unary_unary, deserialize, serialize)

    if handler.stream_unary is not None:
        stream_unary: Any = handler.stream_unary

        async def call_stream_unary(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with around(context):
                return await stream_unary(requests, context)

        return grpc.stream_unary_rpc_method_handler(call_stream_unary, deserialize, serialize)

    if handler.unary_stream is not None:
        unary_stream: Any = handler.unary_stream

        async def call_unary_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with around(context):
                if on_request is not None:
                    on_request(request)
                async for item in _drain(unary_stream(request, context)):
                    yield item

        return grpc.unary_stream_rpc_method_handler(call_unary_stream, deserialize, serialize)

    stream_stream: Any = handler.stream_stream
    assert stream_stream is not None

    async def call_stream_stream(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        async with around(context):
            async for item in _drain(stream_stream(requests, context)):
                yield item

    return grpc.stream_stream_rpc_method_handler(call_stream_stream, deserialize, serialize)
