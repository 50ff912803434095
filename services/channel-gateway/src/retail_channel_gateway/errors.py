"""Gateway-specific errors not in retail_common (codes it does not map)."""

# Exception names mirror the canonical gRPC codes they map to.
# ruff: noqa: N818

from __future__ import annotations

import grpc

from retail_common.errors import DomainError

__all__ = ["CURSOR_EXPIRED", "OutOfRange", "Unimplemented"]

CURSOR_EXPIRED = "CURSOR_EXPIRED"


class OutOfRange(DomainError):
    """A StreamChanges cursor older than the channel's retention: call RequestResync."""

    code = grpc.StatusCode.OUT_OF_RANGE
    default_reason = CURSOR_EXPIRED


class Unimplemented(DomainError):
    code = grpc.StatusCode.UNIMPLEMENTED
    default_reason = "UNIMPLEMENTED"
