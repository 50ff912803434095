"""Idempotent mutations (DESIGN §4): a retry with the same request_id gets the first call's response.

Used inside the mutation's own transaction, so the key, the effect and the stored response commit or
roll back together:

    async with transaction(pool) as conn:
        first = await claim_request(conn, scope=scope, request_id=request.request_id,
                                    fingerprint=request_fingerprint(request))
        if first is not None:
            return Response.FromString(first)
        response = ...  # apply the change
        await store_response(conn, scope=scope, request_id=request.request_id, response=response)

A concurrent duplicate blocks on the first one's uncommitted key row (primary key) until it commits,
then sees its response; if the first rolls back, the duplicate claims the key and runs itself.

`stored_response` is the read-only look-up for a mutation that does slow work (calls to other
services) before its transaction: a retry of a completed request is answered without that work; the
claim inside the transaction stays the authority.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from google.protobuf.message import Message

from retail_common.db.migrations import MigrationSource
from retail_common.db.pool import Connection
from retail_common.errors import FieldViolation, InvalidArgument, Reason

__all__ = [
    "IDEMPOTENCY_MIGRATIONS",
    "claim_request",
    "prune_requests",
    "request_fingerprint",
    "store_response",
    "stored_response",
]

IDEMPOTENCY_MIGRATIONS = MigrationSource(
    "retail_common.idempotency", Path(__file__).parent / "sql" / "idempotency"
)


def request_fingerprint(request: Message, *, ignore: tuple[str, ...] = ("request_id",)) -> str:
    """Digest of a request without its idempotency key: equal requests, equal fingerprints."""
    copy = type(request)()
    copy.CopyFrom(request)
    for field in ignore:
        copy.ClearField(field)
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


async def claim_request(
    conn: Connection, *, scope: str, request_id: str, fingerprint: str, field: str = "request_id"
) -> bytes | None:
    """None if the key is new (now claimed in this transaction); else the first call's response.

    A key already used for a different request is refused with INVALID_ARGUMENT naming `field`.
    """
    inserted = await conn.fetchval(
        "insert into request_idempotency (scope, request_id, fingerprint) values ($1, $2, $3)"
        " on conflict do nothing returning true",
        scope,
        request_id,
        fingerprint,
    )
    if inserted:
        return None
    row = await conn.fetchrow(
        "select fingerprint, response from request_idempotency where scope = $1 and request_id = $2",
        scope,
        request_id,
    )
    if row is None:  # the first call rolled back after we conflicted: the key is free again
        return await claim_request(
            conn, scope=scope, request_id=request_id, fingerprint=fingerprint, field=field
        )
    _refuse_reuse(row["fingerprint"], fingerprint, field)
    if row["response"] is None:
        raise RuntimeError("claim_request: the key's response was never stored (store_response not called)")
    return bytes(row["response"])


async def stored_response(
    conn: Connection, *, scope: str, request_id: str, fingerprint: str, field: str = "request_id"
) -> bytes | None:
    """The committed first response of this key, or None (key unused, or its call still open).

    Claims nothing (any connection, no transaction needed). A key already used for a different
    request is refused with INVALID_ARGUMENT naming `field`, as claim_request does.
    """
    row = await conn.fetchrow(
        "select fingerprint, response from request_idempotency where scope = $1 and request_id = $2",
        scope,
        request_id,
    )
    if row is None:
        return None
    _refuse_reuse(row["fingerprint"], fingerprint, field)
    return None if row["response"] is None else bytes(row["response"])


def _refuse_reuse(stored: str, fingerprint: str, field: str) -> None:
    if stored != fingerprint:
        raise InvalidArgument(
            [FieldViolation(field, "already used for a different request")],
            reason=Reason.IDEMPOTENCY_KEY_REUSED,
        )


async def store_response(conn: Connection, *, scope: str, request_id: str, response: Message | bytes) -> None:
    body = response if isinstance(response, bytes) else response.SerializeToString(deterministic=True)
    await conn.execute(
        "update request_idempotency set response = $3 where scope = $1 and request_id = $2",
        scope,
        request_id,
        body,
    )


async def prune_requests(conn: Connection, *, older_than_seconds: float) -> int:
    """Forget keys older than the retry horizon; returns how many were removed."""
    status = await conn.execute(
        "delete from request_idempotency where created_at < now() - make_interval(secs => $1)",
        older_than_seconds,
    )
    return int(status.split()[-1])
