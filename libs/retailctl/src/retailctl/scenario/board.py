"""The campaign board: the promotion service's deployment ledger per channel, and per store for the POS
store group (GetCampaignDeployment); store channels are narrated as counts per state."""

from __future__ import annotations

from retail.promotion.v1 import campaign_pb2, deployment_pb2
from retail.promotion.v1 import promotion_service_pb2 as pr
from retailctl.output import state_counts
from retailctl.scenario.clients import Clients
from retailctl.scenario.errors import eventually, retrying
from retailctl.scenario.narrator import Narrator
from retailctl.scenario.plan import Plan

__all__ = ["DONE", "by_channel", "read_board", "show_board", "suspensions", "wait_board"]

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


# The state that speaks for a store channel whose stores differ: the one furthest from deployed.
_WORST_FIRST = (
    D.TARGET_STATE_FAILED,
    D.TARGET_STATE_SUSPENDED,
    D.TARGET_STATE_PENDING,
    D.TARGET_STATE_DELIVERED,
    D.TARGET_STATE_ACKNOWLEDGED,
)


def by_channel(board: D.CampaignDeployment) -> dict[str, tuple[int, int]]:
    """Channel -> (state, delivered version); for a store channel the state furthest from deployed
    among its stores and the lowest version any of them has."""
    rows: dict[str, list[D.DeploymentTarget]] = {}
    for t in board.targets:
        rows.setdefault(t.channel_id, []).append(t)
    return {
        channel: (
            min((t.state for t in targets), key=_WORST_FIRST.index),
            min(t.delivered_version for t in targets),
        )
        for channel, targets in rows.items()
    }


async def wait_board(
    plan: Plan, clients: Clients, overall: int, failing: tuple[int, ...], what: str
) -> D.CampaignDeployment:
    """Wait until the board shows `overall`, every healthy channel has the current campaign version and
    the failing marketplace is in one of `failing`."""

    def holds(b: D.CampaignDeployment) -> bool:
        if {t.channel_id for t in b.targets} != set(plan.channels) or b.state != overall:
            return False
        for t in b.targets:  # every store of a store channel too
            if t.channel_id == plan.market_failing:
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
    stores = {s.channel_id: s for s in board.channel_summaries if s.per_location}
    for t in board.targets:
        if t.channel_id in stores:
            continue
        error = f"  [{t.error}]" if t.error else ""
        say.fact(f"  {t.channel_id:<14} {_name(t.state):<12} v{t.delivered_version}{error}")
    for channel, summary in stores.items():
        say.fact(f"  {channel:<14} per store: {state_counts(summary, empty='no stores')}")
    for task in board.remediation_tasks:
        action = D.RemediationAction.Name(task.action).removeprefix("REMEDIATION_ACTION_")
        say.fact(f"  remediation: {task.channel_id} {action}: {task.description}")
