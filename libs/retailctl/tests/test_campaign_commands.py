"""`retailctl campaigns list|board` against a real promotion service process.

Launching a campaign and its deliveries need pricing, inventory and the gateway; here the campaign is
created over gRPC and its launch and delivery outcomes are recorded with the promotion service's own
repository functions, standing in for those services.
"""

from __future__ import annotations

from retail.promotion.v1 import promotion_service_pb2 as pb
from retail.promotion.v1 import promotion_service_pb2_grpc
from retail_common.db import transaction
from retail_common.grpcx import connect
from retail_common.messaging import OutboxWriter
from retail_promotion.domain.deployment import Delivery
from retail_promotion.domain.lifecycle import CampaignState
from retail_promotion.repository import CampaignRepository
from retail_promotion.repository.ledger import ensure_targets, record_delivery, set_store_targets
from retail_promotion.servicer import OPERATOR_ROLE
from retail_promotion.testing import campaign_pb, percent_promotion_pb

from .conftest import Cli, operator_key

DOWN = "127.0.0.1:1"


async def test_list_and_board_of_a_partially_deployed_campaign(
    start_service, service_env, pool, cli: Cli
) -> None:
    promotion = await start_service(
        "retail_promotion",
        {**service_env, "PRICING_TARGET": DOWN, "INVENTORY_RESERVATION_TARGET": DOWN},
    )
    key = await operator_key(pool, "ann", [OPERATOR_ROLE])
    campaign = campaign_pb(
        "WKND", promotions=[percent_promotion_pb("P1", "10", ["A"])], channels=["web", "mkt"]
    )
    async with connect(promotion.address, credential=key, tracing=False) as channel:
        await promotion_service_pb2_grpc.PromotionServiceStub(channel).CreateCampaign(
            pb.CreateCampaignRequest(request_id="c", campaign=campaign)
        )
    cli.target("promotion", promotion.address)
    cli.key(key)

    drafts = await cli("campaigns", "list", "--state", "draft", "--json")
    assert drafts.code == 0, drafts.err
    assert [c["campaign_id"] for c in drafts.json()["campaigns"]] == ["WKND"]
    assert (await cli("campaigns", "list", "--state", "ACTIVE", "--json")).json() == {"campaigns": []}

    async with transaction(pool) as conn:
        launched = await CampaignRepository(OutboxWriter()).set_state(conn, "WKND", CampaignState.SCHEDULED)
        await ensure_targets(conn, "WKND", ["web", "mkt"])
        await record_delivery(conn, "WKND", "web", Delivery.ACKNOWLEDGED, launched.version, "")
        await record_delivery(conn, "WKND", "mkt", Delivery.DEAD_LETTERED, launched.version, "HTTP 503")

    board = await cli("campaigns", "board", "WKND")
    assert board.code == 1  # PARTIALLY_DEPLOYED needs an operator: a finding
    assert "state:    PARTIALLY_DEPLOYED" in board.out
    rows = [line.split() for line in board.out.splitlines()]
    assert ["mkt", "-", "FAILED", "2"] in [row[:4] for row in rows]
    assert ["web", "-", "ACKNOWLEDGED", "2"] in [row[:4] for row in rows]
    assert ["REPLAY_DELIVERY", "mkt", "-", "replay"] in [row[:4] for row in rows]

    as_json = await cli("campaigns", "board", "WKND", "--json")
    assert as_json.code == 1
    assert as_json.json()["deployment"]["state"] == "DEPLOYMENT_STATE_PARTIALLY_DEPLOYED"

    # A store channel (per-store rows): one line of counts per state; --locations lists each store.
    async with transaction(pool) as conn:
        await set_store_targets(conn, "WKND", "pos", ["s1", "s2", "s3"])
        await record_delivery(conn, "WKND", "pos", Delivery.ACKNOWLEDGED, launched.version, "", "s1")
        await record_delivery(conn, "WKND", "pos", Delivery.DEAD_LETTERED, launched.version, "HTTP 503", "s2")
    compact = await cli("campaigns", "board", "WKND")
    rows = [line.split() for line in compact.out.splitlines()]
    assert ["pos", "3", "1", "PENDING,", "1", "ACKNOWLEDGED,", "1", "FAILED"] in rows
    assert not [row for row in rows if row[:2] == ["pos", "s1"]]
    assert ["REPLAY_DELIVERY", "pos", "s2"] in [row[:3] for row in rows]
    detailed = await cli("campaigns", "board", "WKND", "--locations")
    rows = [line.split() for line in detailed.out.splitlines()]
    assert ["pos", "s1", "ACKNOWLEDGED"] in [row[:3] for row in rows]
    assert ["pos", "s2", "FAILED"] in [row[:3] for row in rows]
    assert ["pos", "s3", "PENDING"] in [row[:3] for row in rows]

    missing = await cli("campaigns", "board", "NOPE")
    assert missing.code == 4
    assert "'NOPE' not found in promotion" in missing.err
