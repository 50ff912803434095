"""What every handler shares: dependencies, idempotent execution, audit, the acting principal, paging."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from retail_common.clock import Clock
from retail_common.context import current_call
from retail_common.db import Connection, append_audit, claim_request, store_response, transaction
from retail_common.messaging import OutboxWriter
from retail_pricing.catalog import Catalog
from retail_pricing.domain.errors import BadInputError, Violation
from retail_pricing.domain.guardrails import GuardrailPolicy

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "IDEMPOTENCY_SCOPE",
    "MAX_PAGE_SIZE",
    "Deps",
    "actor_id",
    "audit",
    "decode_page_token",
    "encode_page_token",
    "page_size",
    "raise_if",
    "request_fingerprint",
    "run_idempotent",
    "stream_fingerprint",
]

M = TypeVar("M", bound=Message)
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# One scope for every pricing method: a request_id is unique across the whole service, so a key used
# by one method and retried in another is refused (the method is part of every fingerprint).
IDEMPOTENCY_SCOPE = "pricing"


@dataclass
class Deps:
    pool: asyncpg.Pool[asyncpg.Record]
    clock: Clock
    catalog: Catalog
    writer: OutboxWriter
    policy: GuardrailPolicy = field(default_factory=GuardrailPolicy)
    # Called after an approval committed new due instants (wakes this replica's activation scheduler).
    on_scheduled: Callable[[], None] = lambda: None


def raise_if(problems: list[Violation]) -> None:
    if problems:
        raise BadInputError(problems)


def actor_id() -> str:
    call = current_call()
    if call is None or call.principal is None:
        return "anonymous"
    return call.principal.id


async def run_idempotent(
    deps: Deps,
    method: str,
    request_id: str,
    request: Message,
    response_cls: type[M],
    body: Callable[[Connection], Awaitable[M]],
) -> M:
    """Run `body` in one transaction keyed by request_id: a retry returns the first response."""
    if not request_id:
        raise BadInputError([Violation("request_id", "required")])
    if len(request_id) > 128:
        raise BadInputError([Violation("request_id", "at most 128 characters")])
    fingerprint = request_fingerprint(method, request)
    async with transaction(deps.pool) as conn:
        stored = await claim_request(
            conn, scope=IDEMPOTENCY_SCOPE, request_id=request_id, fingerprint=fingerprint
        )
        if stored is not None:
            return response_cls.FromString(stored)
        response = await body(conn)
        await store_response(conn, scope=IDEMPOTENCY_SCOPE, request_id=request_id, response=response)
    return response


def request_fingerprint(method: str, request: Message) -> str:
    """sha256(method NUL request-with-its-request_id): the digest pricing stored before the shared table
    (migration 0003 copied those rows as they were), so retries of older keys still replay."""
    return hashlib.sha256(method.encode() + b"\0" + request.SerializeToString(deterministic=True)).hexdigest()


def stream_fingerprint(method: str, digest: str) -> str:
    """A streaming import's fingerprint: its method and the digest of what it streamed (migration 0003
    wrote the older stream keys in this form)."""
    return f"{method}:{digest}"


def _as_dict(message: Message | None) -> dict[str, Any] | None:
    return None if message is None else MessageToDict(message, preserving_proto_field_name=True)


async def audit(
    conn: Connection,
    method: str,
    entity_type: str,
    entity_key: str,
    before: Message | None,
    after: Message | None,
    request_id: str | None = None,
) -> None:
    await append_audit(
        conn,
        action=f"/retail.pricing.v1.PricingService/{method}",
        entity_type=entity_type,
        entity_key=entity_key,
        before=_as_dict(before),
        after=_as_dict(after),
        request_id=request_id,
    )


def page_size(requested: int) -> int:
    if requested < 0:
        raise BadInputError([Violation("page_size", "must not be negative")])
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(last_key: str) -> str:
    return base64.urlsafe_b64encode(last_key.encode()).decode()


def decode_page_token(token: str) -> str:
    if not token:
        return ""
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadInputError([Violation("page_token", "malformed")]) from None
