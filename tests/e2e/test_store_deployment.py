"""Per-store deployment of a campaign to a POS store group, over the four services as processes: the
gateway delivers the campaign once per targeted store (one webhook request per store, named by the
Retail-Location header), one store's gateway answers 503 until the policy dead-letters it, and the
promotion service's board shows that store FAILED, the others ACKNOWLEDGED, the campaign
PARTIALLY_DEPLOYED with a remediation task naming the store; after the store recovers and its dead letter
is replayed, the campaign is DEPLOYED."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from retail.channel.v1 import channel_operations_service_pb2 as ops
from retail.channel.v1 import channel_pb2
from retail.common.v1 import time_window_pb2
from retail.promotion.v1 import campaign_pb2, deployment_pb2, promotion_pb2
from retail.promotion.v1 import promotion_service_pb2 as pr
from retail_channel_gateway.testing import FakeMarketplace
from retail_common.errors import parse_error
from retailctl.scenario.clients import Clients
from retailctl.scenario.errors import eventually, retrying
from retailctl.scenario.narrator import Narrator
from retailctl.scenario.plan import Plan
from retailctl.scenario.seeding import seed
from retailctl.scenario.wire import pb_decimal, timestamp
from tests.e2e.suite import Suite

D = deployment_pb2
C = campaign_pb2


def _channel(channel_id: str, stores: list[str], url: str) -> channel_pb2.Channel:
    policy = channel_pb2.DeliveryPolicy(
        webhook=channel_pb2.WebhookTarget(url=url),
        lead_time=Duration(seconds=7200),  # deliver at once: the window starts in a minute
        timeout=Duration(seconds=2),
        retry=channel_pb2.RetryPolicy(
            max_attempts=2,
            initial_backoff=Duration(nanos=50_000_000),
            max_backoff=Duration(nanos=200_000_000),
        ),
        circuit_breaker=channel_pb2.CircuitBreakerPolicy(
            failure_threshold=3, open_duration=Duration(seconds=1)
        ),
        payload_profile=channel_pb2.PayloadProfile(change_kinds=[channel_pb2.CHANGE_KIND_CAMPAIGN]),
    )
    return channel_pb2.Channel(
        channel_id=channel_id,
        display_name="Store POS (per-store gateway)",
        kind=channel_pb2.CHANNEL_KIND_POS_STORE_GROUP,
        location_ids=stores,
        delivery=policy,
        active=True,
    )


def _campaign(plan: Plan, campaign_id: str, channel_id: str, stores: list[str]) -> C.Campaign:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    return C.Campaign(
        campaign_id=campaign_id,
        display_name="Store-only weekend",
        currency_code=plan.currency,
        window=time_window_pb2.TimeWindow(
            absolute=time_window_pb2.AbsoluteWindow(
                start_time=timestamp(start), end_time=timestamp(start + timedelta(hours=2))
            )
        ),
        channel_ids=[channel_id],
        location_ids=stores,
        channel_failure_policy=C.CHANNEL_FAILURE_POLICY_SUSPEND_CHANNEL,
        promotions=[
            promotion_pb2.Promotion(
                promotion_id=f"{campaign_id}-10pct",
                display_name="10% off",
                level=promotion_pb2.PROMOTION_LEVEL_LINE,
                eligibility=promotion_pb2.Eligibility(category_ids=[plan.category]),
                reward=promotion_pb2.Reward(percent_off=pb_decimal("10")),
                stacking=promotion_pb2.Stacking(mode=promotion_pb2.STACKING_MODE_STACKABLE, priority=1),
            )
        ],
    )


def _rows(board: D.CampaignDeployment) -> dict[str, int]:
    return {t.location_id: t.state for t in board.targets}


async def test_one_store_failing_shows_that_store_failed_and_recovers(suite: Suite) -> None:
    plan = Plan(run=f"st{datetime.now(UTC):%H%M%S}", stores=21)
    clients = Clients(suite.targets, suite.operator, suite.approver)
    store_gateway = FakeMarketplace(b"")
    await store_gateway.start()
    pos, campaign_id = f"pos-{plan.run}", f"STORES-{plan.run}"
    stores = plan.store_ids[:3]
    offline = stores[1]
    try:
        await seed(plan, clients, Narrator(io.StringIO()))
        created = await retrying(
            lambda: clients.author.operations.CreateChannel(
                ops.CreateChannelRequest(
                    request_id=f"t-{pos}", channel=_channel(pos, stores, store_gateway.url)
                )
            ),
            "create store group",
        )
        store_gateway.secret = created.webhook_signing_secret.encode()
        store_gateway.failing_locations = {offline}
        campaign = _campaign(plan, campaign_id, pos, stores)
        draft = await clients.author.promotion.CreateCampaign(
            pr.CreateCampaignRequest(request_id=f"t-{campaign_id}-create", campaign=campaign)
        )
        submitted = await clients.author.promotion.SubmitCampaign(
            pr.SubmitCampaignRequest(
                request_id=f"t-{campaign_id}-submit", campaign_id=campaign_id, etag=draft.campaign.etag
            )
        )
        approved = await clients.approver.promotion.ApproveCampaign(
            pr.ApproveCampaignRequest(
                request_id=f"t-{campaign_id}-approve", campaign_id=campaign_id, etag=submitted.campaign.etag
            )
        )
        await clients.author.promotion.LaunchCampaign(
            pr.LaunchCampaignRequest(
                request_id=f"t-{campaign_id}-launch", campaign_id=campaign_id, etag=approved.campaign.etag
            )
        )

        async def board(page_size: int = 0, token: str = "") -> pr.GetCampaignDeploymentResponse:
            answer: pr.GetCampaignDeploymentResponse = await clients.author.promotion.GetCampaignDeployment(
                pr.GetCampaignDeploymentRequest(
                    campaign_id=campaign_id, page_size=page_size, page_token=token
                )
            )
            return answer

        def partial(answer: pr.GetCampaignDeploymentResponse) -> bool:
            b = answer.deployment
            return b.state == D.DEPLOYMENT_STATE_PARTIALLY_DEPLOYED and _rows(b) == {
                stores[0]: D.TARGET_STATE_ACKNOWLEDGED,
                offline: D.TARGET_STATE_FAILED,
                stores[2]: D.TARGET_STATE_ACKNOWLEDGED,
            }

        seen = (await eventually(board, partial, "one store failed, two acknowledged", within=120)).deployment
        assert {t.channel_id for t in seen.targets} == {pos}
        [task] = seen.remediation_tasks
        assert (task.channel_id, task.location_id) == (pos, offline)
        assert task.action == D.REMEDIATION_ACTION_REPLAY_DELIVERY
        assert offline in task.description
        [summary] = seen.channel_summaries
        assert summary.per_location
        assert (summary.acknowledged, summary.failed) == (2, 1)
        assert seen.total_targets == 3
        # The failure policy suspends the offer at that store of the channel only.
        read = await clients.author.promotion.GetCampaign(pr.GetCampaignRequest(campaign_id=campaign_id))
        assert {(s.channel_id, s.location_id) for s in read.suspensions} == {(pos, offline)}
        # Pages of the per-store rows, in (channel, location) order; the summary covers all of them.
        first = await board(page_size=2)
        second = await board(page_size=2, token=first.next_page_token)
        assert [t.location_id for t in first.deployment.targets] == stores[:2]
        assert [t.location_id for t in second.deployment.targets] == stores[2:]
        assert second.next_page_token == ""
        assert second.deployment.total_targets == 3
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await board(page_size=1001)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert parse_error(refused.value).fields == ["page_size"]

        store_gateway.failing_locations = set()
        await clients.author.operations.ReplayDeadLetters(
            ops.ReplayDeadLettersRequest(request_id=f"t-{pos}-replay", channel_id=pos)
        )

        def deployed(answer: pr.GetCampaignDeploymentResponse) -> bool:
            b = answer.deployment
            return b.state == D.DEPLOYMENT_STATE_DEPLOYED and set(_rows(b).values()) == {
                D.TARGET_STATE_ACKNOWLEDGED
            }

        done = (await eventually(board, deployed, "every store acknowledged", within=120)).deployment
        assert len(done.targets) == 3
        assert not done.remediation_tasks
        read = await clients.author.promotion.GetCampaign(pr.GetCampaignRequest(campaign_id=campaign_id))
        assert not read.suspensions
        # Each store's copy names its store and came in a request of its own.
        campaign_copies = [r for r in store_gateway.received if r.kind == "CHANGE_KIND_CAMPAIGN"]
        copies = [r.change["campaign"] for r in campaign_copies]
        assert {c["location_id"] for c in copies if isinstance(c, dict)} == set(stores)
    except BaseException:
        print(suite.logs())
        raise
    finally:
        await store_gateway.close()
        await clients.close()
