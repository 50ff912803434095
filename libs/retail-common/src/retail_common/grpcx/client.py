"""Outgoing calls: one channel helper that adds the credential, a default deadline and trace propagation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from pydantic import SecretStr

from retail_common.telemetry import client_interceptors

__all__ = ["connect"]


class _CallDefaults:
    """Adds `authorization: Bearer <key>` and a deadline when the caller gave none.

    grpc.aio files an interceptor under the first call type it implements only, so each call type
    gets its own subclass below rather than one class implementing all four.
    """

    def __init__(self, credential: SecretStr | None, default_timeout: float) -> None:
        self._credential = credential
        self._default_timeout = default_timeout

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if self._credential is not None and "authorization" not in metadata:
            metadata.add("authorization", f"Bearer {self._credential.get_secret_value()}")
        return grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=details.timeout if details.timeout is not None else self._default_timeout,
            metadata=metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )


class _UnaryUnaryDefaults(_CallDefaults, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._details(client_call_details), request)


class _UnaryStreamDefaults(_CallDefaults, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._details(client_call_details), request)


class _StreamUnaryDefaults(_CallDefaults, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


class _StreamStreamDefaults(_CallDefaults, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


_DEFAULTS_BY_CALL_TYPE = (
    _UnaryUnaryDefaults,
    _UnaryStreamDefaults,
    _StreamUnaryDefaults,
    _StreamStreamDefaults,
)


def connect(
    target: str,
    *,
    credential: SecretStr | None,
    default_timeout: float = 10.0,
    max_message_bytes: int = 4 * 1024 * 1024,
    tracing: bool = True,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """An insecure-transport channel (TLS terminates at the mesh/ingress; see DESIGN.md §8)."""
    interceptors: list[Any] = [kind(credential, default_timeout) for kind in _DEFAULTS_BY_CALL_TYPE]
    if tracing:
        interceptors += client_interceptors()
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            *options,
        ],
        interceptors=interceptors,
    )
