"""The campaign board: the promotion service's deployment ledger per channel (GetCampaignDeployment)."""

from __future__ import annotations

from retail.promotion.v1 import campaign_pb2, deployment_pb2
from retail.promotion.v1 import promotion_service_pb2 as pr
from retailctl.scenario.clients import Clients
from retailctl.scenario.errors import eventually, retrying
from retailctl.scenario.narrator import Narrator
from retailctl.scenario.plan import Plan

__all__ = ["DONE", "read_board", "show_board", "suspensions", "wait_board"]

D = deployment_pb2
DONE = (D.TARGET_STATE_DELIVERED, D.TARGET_STATE_ACKNOWLEDGED)


async def read_board(plan: Plan, clients: Clients) -> D.CampaignDeployment:
    answer: pr.GetCampaignDeploymentResponse = await clients.author.promotion.GetCampaignDeployment(
        pr.GetCampaignDeploymentRequest(campaign_id=plan.campaign_id)
    )
    return answer.deployment


async def suspensions(plan: Plan, clients: Clients) -> set[tuple[str, str, str, str]]:
    """(reason, channel, location, sku) of the campaign's suspensions."""
    answer = await retrying(
        lambda: clients.author.promotion.GetCampaign(pr.GetCampaignRequest(campaign_id=plan.campaign_id)),
        "read campaign",
    )
    return {
        (
            campaign_pb2.SuspensionReason.Name(s.reason).removeprefix("SUSPENSION_REASON_"),
            s.channel_id,
            s.location_id,
            s.sku,
        )
        for s in answer.suspensions
    }


def _name(state: D.TargetState.ValueType) -> str:
    return D.TargetState.Name(state).removeprefix("TARGET_STATE_")


async def wait_board(
    plan: Plan, clients: Clients, overall: int, failing: tuple[int, ...], what: str
) -> D.CampaignDeployment:
    """Wait until the board shows `overall`, every healthy channel has the current campaign version and
    the failing marketplace is in one of `failing`."""

    def holds(b: D.CampaignDeployment) -> bool:
        by_channel = {t.channel_id: t for t in b.targets}
        if set(by_channel) != set(plan.channels) or b.state != overall:
            return False
        for channel, t in by_channel.items():
            if channel == plan.market_failing:
                if t.state not in failing:
                    return False
            elif t.state not in DONE or t.delivered_version != b.campaign_version:
                return False
        return True

    return await eventually(lambda: read_board(plan, clients), holds, what, within=120)


def show_board(board: D.CampaignDeployment, say: Narrator) -> None:
    say.fact(
        f"board: {D.DeploymentState.Name(board.state).removeprefix('DEPLOYMENT_STATE_')} "
        f"(campaign version {board.campaign_version})"
    )
    for t in board.targets:
        error = f"  [{t.error}]" if t.error else ""
        say.fact(f"  {t.channel_id:<14} {_name(t.state):<12} v{t.delivered_version}{error}")
    for task in board.remediation_tasks:
        action = D.RemediationAction.Name(task.action).removeprefix("REMEDIATION_ACTION_")
        say.fact(f"  remediation: {task.channel_id} {action}: {task.description}")
