"""Calls to the domain services: deadlines, and their errors passed through to the channel unchanged
(code, message, details), except that transport failures become UNAVAILABLE (retry later)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import grpc
from google.rpc import status_pb2
from grpc_status import rpc_status

from retail_common.errors import DomainError, Unavailable

__all__ = ["DownstreamError", "call"]

T = TypeVar("T")

# Codes that say "the dependency is not answering" rather than "your request is wrong".
_OUTAGE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


class DownstreamError(DomainError):
    """A domain service refused the request: its status is the answer (e.g. OUT_OF_STOCK)."""

    def __init__(self, error: grpc.aio.AioRpcError) -> None:
        super().__init__(error.details() or "")
        self.code = error.code()  # type: ignore[misc]
        self._status = rpc_status.from_call(error)  # type: ignore[arg-type]

    def to_status(self, default_domain: str) -> status_pb2.Status:
        if self._status is not None:
            status: status_pb2.Status = self._status
            return status
        return status_pb2.Status(code=self.code.value[0], message=self.message)


async def call(awaitable: Awaitable[T], service: str) -> T:
    try:
        return await awaitable
    except grpc.aio.AioRpcError as exc:
        if exc.code() in _OUTAGE:
            raise Unavailable(f"{service} did not answer in time; retry") from exc
        if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            # Our own credential or their bug: never the channel's fault, never their internals.
            raise Unavailable(f"{service} refused the gateway's call; retry later") from exc
        raise DownstreamError(exc) from exc
