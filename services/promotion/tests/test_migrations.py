"""Migration 0005: the service's own `idempotency` rows move to the shared `request_idempotency`."""

from __future__ import annotations

import hashlib
import shutil

import asyncpg
import pytest

from retail.promotion.v1 import promotion_service_pb2 as pb
from retail_common.db import (
    IDEMPOTENCY_MIGRATIONS,
    MigrationSource,
    claim_request,
    migrate,
    stored_response,
    transaction,
)
from retail_common.errors import InvalidArgument
from retail_promotion.repository import MIGRATIONS
from retail_promotion.servicer import _print
from retail_promotion.testing import campaign_pb

CREATE = "/retail.promotion.v1.PromotionService/CreateCampaign"
SUBMIT = "/retail.promotion.v1.PromotionService/SubmitCampaign"


async def test_old_keys_are_copied_and_still_replay(database_url, tmp_path):
    for f in MIGRATIONS.files():
        if f.version < 5:
            shutil.copy(f.path, tmp_path / f.path.name)
    await migrate(database_url, [IDEMPOTENCY_MIGRATIONS, MigrationSource(MIGRATIONS.name, tmp_path)])

    request = pb.CreateCampaignRequest(request_id="k1", campaign=campaign_pb("C1"))
    response = pb.CreateCampaignResponse(campaign=request.campaign)
    old_print = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()  # as stored
    conn = await asyncpg.connect(database_url)
    try:
        await conn.executemany(
            "insert into idempotency (method, request_id, fingerprint, response) values ($1, $2, $3, $4)",
            [(CREATE, "k1", old_print, response.SerializeToString()), (SUBMIT, "k1", "other", b"\x0a\x00")],
        )
        await migrate(database_url, [IDEMPOTENCY_MIGRATIONS, MIGRATIONS])
        assert await conn.fetchval("select to_regclass('idempotency')") is None
        rows = await conn.fetch(
            "select scope, request_id, fingerprint from request_idempotency order by scope"
        )
        assert [(r["scope"], r["request_id"], r["fingerprint"]) for r in rows] == [
            (CREATE, "k1", old_print),
            (SUBMIT, "k1", "other"),
        ]
        # the servicer's fingerprint of the same request matches the copied row: a retry replays
        assert _print(request) == old_print
        found = await stored_response(conn, scope=CREATE, request_id="k1", fingerprint=_print(request))
        assert found is not None
        assert pb.CreateCampaignResponse.FromString(found) == response
        async with transaction(conn) as tx:
            claimed = await claim_request(tx, scope=CREATE, request_id="k1", fingerprint=_print(request))
        assert claimed == found
        other = pb.CreateCampaignRequest(request_id="k1", campaign=campaign_pb("C2"))
        with pytest.raises(InvalidArgument) as caught:
            await stored_response(conn, scope=CREATE, request_id="k1", fingerprint=_print(other))
        assert caught.value.reason == "IDEMPOTENCY_KEY_REUSED"
    finally:
        await conn.close()
