"""Who is calling and why: set per gRPC call by the server interceptors, read by servicers and audit.

Kept in a ContextVar so domain code and repositories never need the call object passed around.
"""

from __future__ import annotations

import enum
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = ["CallContext", "Principal", "PrincipalKind", "current_call", "set_call"]


class PrincipalKind(enum.StrEnum):
    CHANNEL = "channel"
    OPERATOR = "operator"
    SERVICE = "service"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `id` is the channel id, operator id or service name."""

    id: str
    kind: PrincipalKind
    roles: frozenset[str] = field(default_factory=frozenset)

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class CallContext:
    method: str
    principal: Principal | None = None
    request_id: str | None = None
    trace_id: str | None = None


_current: ContextVar[CallContext | None] = ContextVar("retail_call_context", default=None)


def current_call() -> CallContext | None:
    return _current.get()


def set_call(context: CallContext | None) -> object:
    """Set the context for the running task; returns a token for ContextVar.reset."""
    return _current.set(context)
