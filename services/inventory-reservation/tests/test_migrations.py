"""Migration 0006: the service's own `idempotency` rows move to the shared `request_idempotency`."""

from __future__ import annotations

import hashlib
import shutil

import asyncpg
import pytest
from google.protobuf.duration_pb2 import Duration

from retail.inventory.v1 import inventory_service_pb2 as pb
from retail.inventory.v1 import reservation_pb2
from retail_common.db import (
    IDEMPOTENCY_MIGRATIONS,
    MigrationSource,
    claim_request,
    migrate,
    request_fingerprint,
    transaction,
)
from retail_common.errors import InvalidArgument
from retail_inventory.repository import MIGRATIONS

EXTEND = "/retail.inventory.v1.InventoryService/ExtendReservation"
DELETE_RULE = "/retail.inventory.v1.InventoryService/DeleteThresholdRule"


async def test_old_keys_are_copied_and_still_replay(database_url, tmp_path):
    before = [f for f in MIGRATIONS.files() if f.version < 6]
    for f in before:
        shutil.copy(f.path, tmp_path / f.path.name)
    await migrate(database_url, [IDEMPOTENCY_MIGRATIONS, MigrationSource(MIGRATIONS.name, tmp_path)])

    request = pb.ExtendReservationRequest(request_id="e1", reservation_id="r1", ttl=Duration(seconds=60))
    response = pb.ExtendReservationResponse(reservation=reservation_pb2.Reservation(reservation_id="r1"))
    old_print = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()  # as stored
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            "insert into idempotency (method, request_id, fingerprint, response) values ($1, $2, $3, $4)",
            [
                (EXTEND, "e1", old_print, response.SerializeToString()),
                (DELETE_RULE, "e1", "other", b""),  # same key, other method; an empty response
            ],
        )
        await migrate(database_url, [IDEMPOTENCY_MIGRATIONS, MIGRATIONS])
        assert await conn.fetchval("select to_regclass('idempotency')") is None
        rows = await conn.fetch("select scope, request_id, response from request_idempotency order by scope")
        assert [(r["scope"], r["request_id"], bytes(r["response"])) for r in rows] == [
            (DELETE_RULE, "e1", b""),
            (EXTEND, "e1", response.SerializeToString()),
        ]
        # the servicer's fingerprint of the same request matches the copied row: a retry replays
        async with transaction(conn) as tx:
            first = await claim_request(
                tx, scope=EXTEND, request_id="e1", fingerprint=request_fingerprint(request, ignore=())
            )
        assert first is not None
        assert pb.ExtendReservationResponse.FromString(first) == response
        changed = pb.ExtendReservationRequest(request_id="e1", reservation_id="r1", ttl=Duration(seconds=9))
        with pytest.raises(InvalidArgument) as caught:
            async with transaction(conn) as tx:
                await claim_request(
                    tx, scope=EXTEND, request_id="e1", fingerprint=request_fingerprint(changed, ignore=())
                )
        assert caught.value.reason == "IDEMPOTENCY_KEY_REUSED"
    finally:
        await conn.close()
