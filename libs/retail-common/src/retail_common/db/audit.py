"""Append-only audit trail: who changed what, when, under which request, with before/after state.

Rows are written in the same transaction as the change they describe (pass that transaction's
connection), so an audit entry exists exactly when the change committed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from opentelemetry import trace

from retail_common.context import Principal, current_call
from retail_common.db.migrations import MigrationSource
from retail_common.db.pool import Connection

__all__ = [
    "AUDIT_MIGRATIONS",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "AuditRecord",
    "InvalidPageTokenError",
    "append_audit",
    "list_audit",
]

# Shipped as package data next to this module (package-data "**/*.sql"), so a plain path works.
AUDIT_MIGRATIONS = MigrationSource("retail_common.audit", Path(__file__).parent / "sql" / "audit")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class InvalidPageTokenError(ValueError):
    """The page token is malformed or was issued for different filters (maps to INVALID_ARGUMENT)."""

    field = "page_token"


@dataclass(frozen=True)
class AuditRecord:
    id: int
    occurred_at: datetime
    actor_id: str | None
    actor_kind: str | None
    action: str
    entity_type: str
    entity_key: str
    request_id: str | None
    before: Any
    after: Any
    trace_id: str | None


def _to_json(value: Any) -> str | None:
    # default=str keeps Decimal and datetime exact as strings instead of failing the mutation.
    return None if value is None else json.dumps(value, default=str, sort_keys=True)


def _current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


async def append_audit(
    conn: Connection,
    *,
    action: str,
    entity_type: str,
    entity_key: str,
    before: Any,
    after: Any,
    actor: Principal | None = None,
    request_id: str | None = None,
    trace_id: str | None = None,
) -> int:
    """Insert one audit row and return its id.

    actor, request_id and trace_id default to the current gRPC call's context (and the trace id to the
    current span) so servicers need not thread them through.
    """
    call = current_call()
    if call is not None:
        actor = actor or call.principal
        request_id = request_id or call.request_id
        trace_id = trace_id or call.trace_id
    trace_id = trace_id or _current_trace_id()
    # Casting through text keeps this independent of whether the connection has json codecs set.
    audit_id: int = await conn.fetchval(
        """
        insert into audit_log (actor_id, actor_kind, action, entity_type, entity_key, request_id,
                               before, after, trace_id)
        values ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8::text::jsonb, $9)
        returning id
        """,
        actor.id if actor else None,
        str(actor.kind) if actor else None,
        action,
        entity_type,
        entity_key,
        request_id,
        _to_json(before),
        _to_json(after),
        trace_id,
    )
    return audit_id


def _filters_digest(entity_type: str | None, entity_key: str | None, actor_id: str | None) -> str:
    raw = json.dumps([entity_type, entity_key, actor_id])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _encode_token(last_id: int, digest: str) -> str:
    raw = json.dumps({"v": 1, "before_id": last_id, "f": digest}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, digest: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        before_id = data["before_id"]
        ok = data["v"] == 1 and isinstance(before_id, int) and data["f"] == digest
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidPageTokenError("page_token is malformed") from exc
    if not ok:
        raise InvalidPageTokenError("page_token does not belong to this query")
    return int(before_id)


async def list_audit(
    conn: Connection,
    *,
    entity_type: str | None = None,
    entity_key: str | None = None,
    actor_id: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    page_token: str = "",
) -> tuple[list[AuditRecord], str]:
    """Audit rows newest first, filtered; returns (records, next_page_token) with "" on the last page.

    Keyset pagination on id: stable while rows are appended, and each page costs one index range scan.
    page_size 0 means the default; larger than MAX_PAGE_SIZE is capped; negative is invalid.
    """
    if page_size < 0:
        raise ValueError("page_size must not be negative")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    digest = _filters_digest(entity_type, entity_key, actor_id)
    before_id = _decode_token(page_token, digest) if page_token else None
    rows = await conn.fetch(
        """
        select id, occurred_at, actor_id, actor_kind, action, entity_type, entity_key, request_id,
               before::text as before, after::text as after, trace_id
        from audit_log
        where ($1::text is null or entity_type = $1)
          and ($2::text is null or entity_key = $2)
          and ($3::text is null or actor_id = $3)
          and ($4::bigint is null or id < $4)
        order by id desc
        limit $5
        """,
        entity_type,
        entity_key,
        actor_id,
        before_id,
        size + 1,
    )
    records = [
        AuditRecord(
            id=r["id"],
            occurred_at=r["occurred_at"],
            actor_id=r["actor_id"],
            actor_kind=r["actor_kind"],
            action=r["action"],
            entity_type=r["entity_type"],
            entity_key=r["entity_key"],
            request_id=r["request_id"],
            before=None if r["before"] is None else json.loads(r["before"]),
            after=None if r["after"] is None else json.loads(r["after"]),
            trace_id=r["trace_id"],
        )
        for r in rows[:size]
    ]
    next_token = _encode_token(records[-1].id, digest) if len(rows) > size else ""
    return records, next_token
