"""`retailctl campaigns list|board` (promotion ListCampaigns / GetCampaignDeployment): campaigns and
where each one is live, per channel and location, with the remediation tasks that remain. A store
channel (tracked per store) is one line of counts per state unless `--locations` lists every store."""

from __future__ import annotations

from retail.promotion.v1 import campaign_pb2, deployment_pb2, promotion_service_pb2_grpc
from retail.promotion.v1 import promotion_service_pb2 as pb
from retailctl.commands._shared import Commands, leaf, noun, pages
from retailctl.errors import ExitCode
from retailctl.output import enum_name, message_dict, state_counts, timestamp
from retailctl.runner import Context, command

__all__ = ["register"]

# The board is a finding (exit 1) when the deployment needs an operator: part or all of it failed.
_NEEDS_ACTION = {deployment_pb2.DEPLOYMENT_STATE_PARTIALLY_DEPLOYED, deployment_pb2.DEPLOYMENT_STATE_FAILED}
STATES = [name.removeprefix("CAMPAIGN_STATE_") for name in campaign_pb2.CampaignState.keys()[1:]]


def _stub(ctx: Context) -> promotion_service_pb2_grpc.PromotionServiceAsyncStub:
    return promotion_service_pb2_grpc.PromotionServiceStub(ctx.channel("promotion"))


async def _list(ctx: Context) -> ExitCode:
    state = campaign_pb2.CampaignState.Value(f"CAMPAIGN_STATE_{ctx.args.state}") if ctx.args.state else 0
    stub = _stub(ctx)
    campaigns: list[campaign_pb2.Campaign] = []
    async for page in pages(
        lambda token: stub.ListCampaigns(
            pb.ListCampaignsRequest(page_size=500, page_token=token, state=state)  # type: ignore[arg-type]
        )
    ):
        campaigns.extend(page.campaigns)
    if ctx.out.as_json:
        ctx.out.json({"campaigns": [message_dict(c) for c in campaigns]})
        return ExitCode.OK
    ctx.out.table(
        ["CAMPAIGN", "NAME", "STATE", "CHANNELS", "PROMOTIONS", "VERSION", "UPDATED"],
        (
            [
                c.campaign_id,
                c.display_name,
                enum_name(campaign_pb2.CampaignState.Name(c.state), "CAMPAIGN_STATE_"),
                ",".join(c.channel_ids) or "-",
                len(c.promotions),
                c.version,
                timestamp(c.update_time),
            ]
            for c in campaigns
        ),
        empty="no campaigns",
    )
    return ExitCode.OK


async def _deployment(ctx: Context) -> pb.GetCampaignDeploymentResponse:
    """Every target, page by page (a 600-store channel is 600 rows)."""
    stub = _stub(ctx)
    first: pb.GetCampaignDeploymentResponse | None = None
    async for page in pages(
        lambda token: stub.GetCampaignDeployment(
            pb.GetCampaignDeploymentRequest(
                campaign_id=ctx.args.campaign_id, page_size=1000, page_token=token
            )
        )
    ):
        if first is None:
            first = page
        else:
            first.deployment.targets.extend(page.deployment.targets)
    assert first is not None
    first.next_page_token = ""
    return first


async def _board(ctx: Context) -> ExitCode:
    response = await _deployment(ctx)
    deployment = response.deployment
    code = ExitCode.FINDING if deployment.state in _NEEDS_ACTION else ExitCode.OK
    if ctx.out.as_json:
        ctx.out.json(message_dict(response))
        return code
    ctx.out.fields(
        [
            ("campaign", f"{deployment.campaign_id} (version {deployment.campaign_version})"),
            ("state", enum_name(deployment_pb2.DeploymentState.Name(deployment.state), "DEPLOYMENT_STATE_")),
        ]
    )
    ctx.out.line()
    stores = {s.channel_id: s for s in deployment.channel_summaries if s.per_location}
    shown = [t for t in deployment.targets if ctx.args.locations or t.channel_id not in stores]
    ctx.out.table(
        ["CHANNEL", "LOCATION", "STATE", "DELIVERED", "UPDATED", "ERROR"],
        (
            [
                t.channel_id,
                t.location_id or "-",
                enum_name(deployment_pb2.TargetState.Name(t.state), "TARGET_STATE_"),
                t.delivered_version or "-",
                timestamp(t.update_time, t.HasField("update_time")),
                t.error or "-",
            ]
            for t in shown
        ),
        empty="no targets" if not stores else "",
    )
    if stores and not ctx.args.locations:
        ctx.out.line()
        ctx.out.table(
            ["STORE CHANNEL", "STORES", "STATES (per store; --locations lists each)"],
            ([s.channel_id, sum(_store_total(s)), state_counts(s)] for s in stores.values()),
            empty="",
        )
    if deployment.remediation_tasks:
        ctx.out.line()
        ctx.out.table(
            ["TO DO", "CHANNEL", "LOCATION", "WHAT"],
            (
                [
                    enum_name(deployment_pb2.RemediationAction.Name(r.action), "REMEDIATION_ACTION_"),
                    r.channel_id,
                    r.location_id or "-",
                    r.description,
                ]
                for r in deployment.remediation_tasks
            ),
            empty="",
        )
    return code


def _store_total(s: deployment_pb2.ChannelDeploymentSummary) -> list[int]:
    return [s.pending, s.delivered, s.acknowledged, s.failed, s.suspended]


def register(commands: Commands) -> None:
    group = noun(commands, "campaigns", "promotion campaigns and their deployment")
    parser = leaf(group, "list", command(_list), "campaigns by id, optionally of one state")
    parser.add_argument("--state", type=str.upper, choices=STATES, help="only campaigns in this state")
    parser = leaf(
        group,
        "board",
        command(_board),
        "where a campaign is live per channel and location, and what remains to do "
        "(exit 1: PARTIALLY_DEPLOYED or FAILED)",
    )
    parser.add_argument("campaign_id", metavar="CAMPAIGN")
    parser.add_argument(
        "--locations",
        action="store_true",
        help="list every store of store channels (default: counts per state per store channel)",
    )
