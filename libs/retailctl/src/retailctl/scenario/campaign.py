"""Step 3: the 48-hour weekend campaign: defined by merchandising (the author), validated (findings
shown), submitted, approved by a second operator, launched; then delivered ahead of its start with each
channel's lead time, and live at its start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from retail.common.v1 import time_window_pb2
from retail.promotion.v1 import campaign_pb2, deployment_pb2, evaluation_pb2, promotion_pb2
from retail.promotion.v1 import promotion_service_pb2 as pr
from retailctl.scenario.clients import Clients
from retailctl.scenario.errors import ScenarioError, eventually, expect, retrying
from retailctl.scenario.narrator import Narrator
from retailctl.scenario.plan import Plan
from retailctl.scenario.wire import amount, money, pb_decimal, timestamp, to_datetime

__all__ = ["define_campaign", "expected_sale", "go_live", "sale_prices"]

C = campaign_pb2


def _campaign(plan: Plan, start: datetime, skus: list[str], excluded: list[str]) -> C.Campaign:
    window = time_window_pb2.TimeWindow(
        absolute=time_window_pb2.AbsoluteWindow(
            start_time=timestamp(start), end_time=timestamp(start + timedelta(hours=48))
        )
    )
    stackable = promotion_pb2.STACKING_MODE_STACKABLE
    everything = promotion_pb2.Promotion(
        promotion_id=f"{plan.campaign_id}-20pct",
        display_name="20% off the weekend range",
        level=promotion_pb2.PROMOTION_LEVEL_LINE,
        eligibility=promotion_pb2.Eligibility(category_ids=[plan.category]),
        reward=promotion_pb2.Reward(percent_off=pb_decimal("20")),
        stacking=promotion_pb2.Stacking(mode=stackable, priority=10),
    )
    tees = promotion_pb2.Promotion(
        promotion_id=f"{plan.campaign_id}-tee",
        display_name="2 EUR more off tees",
        level=promotion_pb2.PROMOTION_LEVEL_LINE,
        eligibility=promotion_pb2.Eligibility(skus=skus),
        reward=promotion_pb2.Reward(amount_off=money("2", plan.currency)),
        stacking=promotion_pb2.Stacking(mode=stackable, priority=5),
    )
    return C.Campaign(
        campaign_id=plan.campaign_id,
        display_name="Weekend sale (48 h)",
        currency_code=plan.currency,
        window=window,
        channel_ids=plan.channels,
        location_ids=plan.store_ids,
        excluded_location_ids=excluded,
        channel_failure_policy=C.CHANNEL_FAILURE_POLICY_SUSPEND_CHANNEL,
        stock_guardrail=C.StockGuardrail(
            min_available_to_sell=plan.guardrail_min,
            scope=C.GUARDRAIL_SCOPE_SKU_AT_LOCATION,
            resume_on_restore=True,
        ),
        promotions=[everything, tees],
    )


def _finding(f: pr.ValidationFinding) -> str:
    where = ", ".join(x for x in (f.sku, f.channel_id, f.location_id, f.region_id) if x) or "campaign"
    return f"{pr.FindingKind.Name(f.kind).removeprefix('FINDING_KIND_')} ({where}): {f.message}"


async def _state(clients: Clients, plan: Plan) -> pr.GetCampaignResponse:
    answer: pr.GetCampaignResponse = await clients.author.promotion.GetCampaign(
        pr.GetCampaignRequest(campaign_id=plan.campaign_id)
    )
    return answer


async def define_campaign(plan: Plan, clients: Clients, say: Narrator) -> datetime:
    """Define, validate, submit, approve and launch; returns the window start."""
    say.step("Campaign defined by merchandising and validated")
    start = (datetime.now(UTC) + timedelta(seconds=plan.start_in_seconds)).replace(microsecond=0)
    # First draft: a SKU the master does not know and a store both targeted and excluded.
    ghost = f"GHOST-{plan.run}"
    draft = _campaign(plan, start, [plan.guarded_sku, ghost], [plan.store_ids[-1]])
    checked = await retrying(
        lambda: clients.author.promotion.ValidateCampaign(pr.ValidateCampaignRequest(campaign=draft)),
        "validate draft",
    )
    kinds = {(pr.FindingKind.Name(f.kind), f.sku or f.location_id) for f in checked.findings}
    expect(checked.valid, False, "first draft valid")
    expected = {("FINDING_KIND_UNKNOWN_SKU", ghost), ("FINDING_KIND_EXCLUDED_SCOPE", plan.store_ids[-1])}
    expect(kinds, expected, "findings of the first draft")
    for f in checked.findings:
        say.fact(f"draft finding: {_finding(f)}")
    campaign = _campaign(plan, start, [plan.guarded_sku], [])
    created = await retrying(
        lambda: clients.author.promotion.CreateCampaign(
            pr.CreateCampaignRequest(request_id=f"demo-{plan.run}-create", campaign=campaign)
        ),
        "create campaign",
    )
    expect(created.campaign.state, C.CAMPAIGN_STATE_DRAFT, "campaign state after create")
    valid = await retrying(
        lambda: clients.author.promotion.ValidateCampaign(
            pr.ValidateCampaignRequest(campaign_id=plan.campaign_id)
        ),
        "validate campaign",
    )
    expect([_finding(f) for f in valid.findings], [], "findings of the corrected campaign")
    expect(valid.valid, True, "corrected campaign valid")
    say.fact(
        f"corrected: {plan.campaign_id}, {len(campaign.promotions)} promotions, "
        f"{len(plan.channels)} channels, "
        f"{plan.stores} stores, window {start:%a %H:%M:%S} UTC + 48 h, guardrail "
        f">= {plan.guardrail_min} available per store: valid, no findings"
    )

    say.step("Submitted by the author, approved by a different operator, launched")
    submitted = await retrying(
        lambda: clients.author.promotion.SubmitCampaign(
            pr.SubmitCampaignRequest(
                request_id=f"demo-{plan.run}-submit", campaign_id=plan.campaign_id, etag=created.campaign.etag
            )
        ),
        "submit campaign",
    )
    expect(submitted.campaign.state, C.CAMPAIGN_STATE_SUBMITTED, "state after submit")
    approved = await retrying(
        lambda: clients.approver.promotion.ApproveCampaign(
            pr.ApproveCampaignRequest(
                request_id=f"demo-{plan.run}-approve",
                campaign_id=plan.campaign_id,
                etag=submitted.campaign.etag,
            )
        ),
        "approve campaign",
    )
    c = approved.campaign
    expect(c.state, C.CAMPAIGN_STATE_APPROVED, "state after approve")
    if not c.approver_id or c.approver_id == c.author_id:
        raise ScenarioError(f"approver {c.approver_id!r} must differ from author {c.author_id!r}")
    say.fact(f"authored by {c.author_id}, approved by {c.approver_id}")
    launched = await retrying(
        lambda: clients.author.promotion.LaunchCampaign(
            pr.LaunchCampaignRequest(
                request_id=f"demo-{plan.run}-launch",
                campaign_id=plan.campaign_id,
                etag=approved.campaign.etag,
            )
        ),
        "launch campaign",
        within=180,
    )
    expect(launched.campaign.state, C.CAMPAIGN_STATE_SCHEDULED, "state after launch")
    say.fact(f"launched: SCHEDULED (version {launched.campaign.version}); stock guardrails registered")
    return start


async def sale_prices(plan: Plan, clients: Clients, channel: str, store: str) -> dict[str, str]:
    """Unit sale price of each SKU for a channel at a store, as the promotion service computes it."""
    answer = await retrying(
        lambda: clients.author.promotion.GetActivePromotions(
            pr.GetActivePromotionsRequest(
                skus=list(plan.skus),
                scope=evaluation_pb2.CartScope(channel_id=channel, location_id=store),
                currency_code=plan.currency,
            )
        ),
        f"active promotions for {channel} at {store}",
    )
    return {s.sku: f"{amount(s.sale_unit_price):.2f}" for s in answer.skus}


def expected_sale(plan: Plan, sku: str, *, live: bool, tee_extra: bool = True) -> str:
    price = Decimal(plan.skus[sku])
    if live:
        price = price * Decimal("0.8")
        if sku == plan.guarded_sku and tee_extra:
            price -= 2
    return f"{price:.2f}"


async def go_live(plan: Plan, clients: Clients, say: Narrator, start: datetime) -> None:
    say.step("Delivered ahead of the start with each channel's lead time")
    healthy = [c for c in plan.channels if c != plan.market_failing]

    async def board() -> pr.GetCampaignDeploymentResponse:
        answer: pr.GetCampaignDeploymentResponse = await clients.author.promotion.GetCampaignDeployment(
            pr.GetCampaignDeploymentRequest(campaign_id=plan.campaign_id)
        )
        return answer

    done = (deployment_pb2.TARGET_STATE_DELIVERED, deployment_pb2.TARGET_STATE_ACKNOWLEDGED)

    def everywhere(b: pr.GetCampaignDeploymentResponse) -> bool:
        """Every healthy channel, and every store of the store channel, has it."""
        rows = [t for t in b.deployment.targets if t.channel_id in healthy]
        return {t.channel_id for t in rows} == set(healthy) and all(t.state in done for t in rows)

    seen = await eventually(board, everywhere, "campaign delivered to every healthy channel")
    delivered = [t for t in seen.deployment.targets if t.channel_id in healthy]
    latest = max(to_datetime(t.update_time) for t in delivered)
    if latest >= start:
        raise ScenarioError(
            f"the campaign reached the channels at {latest:%H:%M:%S} UTC, after its start {start:%H:%M:%S}: "
            f"launch took too long for --start-in {plan.start_in_seconds:.0f}s"
        )
    for channel in healthy:  # one line per channel: the store channel's last store stands for it
        rows = [t for t in delivered if t.channel_id == channel]
        t = max(rows, key=lambda r: to_datetime(r.update_time))
        at = to_datetime(t.update_time)
        state = deployment_pb2.TargetState.Name(t.state).removeprefix("TARGET_STATE_")
        where = f" at {len(rows)} stores" if t.location_id else ""
        say.fact(
            f"{t.channel_id:<14} {state}{where} v{t.delivered_version} by {at:%H:%M:%S} UTC, "
            f"{(start - at).total_seconds():.1f}s before the start"
        )
    before = await sale_prices(plan, clients, plan.web, plan.store_ids[20])
    expect(before, {s: expected_sale(plan, s, live=False) for s in plan.skus}, "prices before the start")
    say.fact(f"before the start, {plan.web} still sells at list prices: {before}")

    say.step("Live at its start (the promotion scheduler activates it)")
    got = await eventually(
        lambda: _state(clients, plan),
        lambda g: g.campaign.state == C.CAMPAIGN_STATE_ACTIVE,
        "campaign ACTIVE",
        within=plan.start_in_seconds + 90,
    )
    say.fact(
        f"{plan.campaign_id} ACTIVE (version {got.campaign.version}), window started {start:%H:%M:%S} UTC"
    )
    after = await sale_prices(plan, clients, plan.web, plan.store_ids[20])
    expect(after, {s: expected_sale(plan, s, live=True) for s in plan.skus}, "sale prices once live")
    say.fact(f"{plan.web} at {plan.store_ids[20]} now sells at {after}")
