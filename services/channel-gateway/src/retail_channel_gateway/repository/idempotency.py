"""Idempotent mutations: the first response per (caller, method, request_id) is stored and replayed."""

from __future__ import annotations

from retail_common.db import Connection
from retail_common.errors import FieldViolation, InvalidArgument, Reason

__all__ = ["claim_request", "store_response"]


async def claim_request(conn: Connection, scope: str, request_id: str, fingerprint: str) -> bytes | None:
    """None if new (now claimed in this transaction); else the first call's stored response.

    `scope` is "<principal id>:<method>" so two callers' request ids never meet.
    """
    inserted = await conn.fetchval(
        "insert into idempotency (method, request_id, fingerprint, response) values ($1, $2, $3, '')"
        " on conflict do nothing returning true",
        scope,
        request_id,
        fingerprint,
    )
    if inserted:
        return None
    row = await conn.fetchrow(
        "select fingerprint, response from idempotency where method = $1 and request_id = $2",
        scope,
        request_id,
    )
    assert row is not None
    if row["fingerprint"] != fingerprint:
        raise InvalidArgument(
            [FieldViolation("request_id", "already used for a different request")],
            reason=Reason.IDEMPOTENCY_KEY_REUSED,
        )
    return bytes(row["response"])


async def store_response(conn: Connection, scope: str, request_id: str, response: bytes) -> None:
    await conn.execute(
        "update idempotency set response = $3 where method = $1 and request_id = $2",
        scope,
        request_id,
        response,
    )
