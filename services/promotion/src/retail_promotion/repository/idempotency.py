"""Idempotency keys of mutations: a retry returns the first response."""

from __future__ import annotations

from retail_common.db import Connection
from retail_common.errors import FieldViolation, InvalidArgument, Reason

__all__ = ["claim_request", "store_response"]


async def claim_request(
    conn: Connection, method: str, request_id: str, fingerprint: str, field: str = "request_id"
) -> bytes | None:
    """None if the key is new (now claimed); else the first call's response. A concurrent duplicate
    waits on the first one's insert (unique key) until it commits."""
    inserted = await conn.fetchval(
        "insert into idempotency (method, request_id, fingerprint, response) values ($1, $2, $3, '')"
        " on conflict do nothing returning true",
        method,
        request_id,
        fingerprint,
    )
    if inserted:
        return None
    row = await conn.fetchrow(
        "select fingerprint, response from idempotency where method = $1 and request_id = $2",
        method,
        request_id,
    )
    assert row is not None
    if row["fingerprint"] != fingerprint:
        raise InvalidArgument(
            [FieldViolation(field, "already used for a different request")],
            reason=Reason.IDEMPOTENCY_KEY_REUSED,
        )
    return bytes(row["response"])


async def store_response(conn: Connection, method: str, request_id: str, response: bytes) -> None:
    await conn.execute(
        "update idempotency set response = $3 where method = $1 and request_id = $2",
        method,
        request_id,
        response,
    )
