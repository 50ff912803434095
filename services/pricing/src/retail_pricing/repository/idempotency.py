"""Idempotency keys: a retried request_id gets the first response; a reused one is refused."""

from __future__ import annotations

import hashlib

from retail_common.db import Connection
from retail_pricing.domain.errors import BadInputError, Violation

__all__ = ["KEY_REUSED", "claim", "complete", "request_hash"]

KEY_REUSED = "request_id was already used for a different request"


def request_hash(method: str, payload: bytes) -> str:
    return hashlib.sha256(method.encode() + b"\0" + payload).hexdigest()


async def claim(conn: Connection, request_id: str, method: str, digest: str) -> bytes | None:
    """Inside the mutation's transaction: None if this request is new (the key is now held until commit),
    else the stored response of the first one. A concurrent duplicate waits for the first to commit."""
    inserted = await conn.fetchval(
        """
        insert into idempotency_keys (request_id, method, request_hash) values ($1, $2, $3)
        on conflict do nothing returning 1
        """,
        request_id,
        method,
        digest,
    )
    if inserted:
        return None
    row = await conn.fetchrow(
        "select method, request_hash, response from idempotency_keys where request_id = $1", request_id
    )
    assert row is not None
    if row["method"] != method or row["request_hash"] != digest or row["response"] is None:
        raise BadInputError([Violation("request_id", KEY_REUSED)])
    response: bytes = row["response"]
    return response


async def complete(conn: Connection, request_id: str, response: bytes) -> None:
    await conn.execute(
        "update idempotency_keys set response = $2 where request_id = $1", request_id, response
    )
