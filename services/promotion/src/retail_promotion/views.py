"""Response messages built from domain and repository values (findings, suspensions, redemptions,
deployment, active promotions)."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from retail.promotion.v1 import campaign_pb2, deployment_pb2, evaluation_pb2
from retail.promotion.v1 import promotion_service_pb2 as pb
from retail_common.errors import PreconditionViolation
from retail_promotion.convert import evaluation_to_proto, money_to_proto, timestamp
from retail_promotion.domain.deployment import (
    Overall,
    Target,
    TargetState,
    effective_state,
    overall,
    remediations,
    summaries,
)
from retail_promotion.domain.evaluate import Evaluation
from retail_promotion.domain.findings import Finding
from retail_promotion.domain.model import Promotion
from retail_promotion.repository.campaigns import SuspensionRow
from retail_promotion.repository.redemptions import StoredRedemption

__all__ = [
    "as_dict",
    "deployment",
    "evaluation_response",
    "finding_proto",
    "finding_violations",
    "redemption",
    "suspension",
]


def as_dict(message: Message | None) -> object:
    return None if message is None else MessageToDict(message, preserving_proto_field_name=True)


def finding_proto(f: Finding) -> pb.ValidationFinding:
    return pb.ValidationFinding(
        kind=f.kind.value,  # type: ignore[arg-type]
        severity=pb.FINDING_SEVERITY_ERROR,
        sku=f.sku,
        channel_id=f.channel_id,
        location_id=f.location_id,
        region_id=f.region_id,
        promotion_id=f.promotion_id,
        message=f.message,
    )


def finding_violations(findings: Sequence[Finding]) -> list[PreconditionViolation]:
    return [
        PreconditionViolation(
            f"FINDING_KIND_{f.kind.name}",
            "/".join(x for x in (f.sku, f.channel_id, f.location_id, f.region_id) if x) or "campaign",
            f.message,
        )
        for f in findings
    ]


def suspension(row: SuspensionRow) -> campaign_pb2.Suspension:
    return campaign_pb2.Suspension(
        channel_id=row.channel_id,
        location_id=row.location_id,
        sku=row.sku,
        reason=campaign_pb2.SuspensionReason.Value(f"SUSPENSION_REASON_{row.reason}"),
        detail=row.detail,
        create_time=timestamp(row.created_at),
    )


def redemption(stored: StoredRedemption, currency: str) -> pb.Redemption:
    return pb.Redemption(
        order_id=stored.order_id,
        state=pb.RedemptionState.Value(f"REDEMPTION_STATE_{stored.state}"),
        promotions=[
            pb.RedeemedPromotion(
                promotion_id=i.promotion_id,
                campaign_id=i.campaign_id,
                discount=money_to_proto(i.discount, currency),
                codes=list(i.codes),
            )
            for i in stored.items
        ],
        create_time=timestamp(stored.created_at),
        cancel_time=timestamp(stored.cancelled_at),
    )


def evaluation_response(ev: Evaluation) -> pb.EvaluateCartResponse:
    lines, totals, candidates = evaluation_to_proto(ev)
    return pb.EvaluateCartResponse(lines=lines, totals=totals, candidates=candidates)


def active_promotion(p: Promotion, source: campaign_pb2.Campaign) -> evaluation_pb2.ActivePromotion:
    proto = next(x for x in source.promotions if x.promotion_id == p.promotion_id)
    return evaluation_pb2.ActivePromotion(
        promotion_id=p.promotion_id,
        campaign_id=source.campaign_id,
        display_name=proto.display_name,
        level=proto.level,
        reward=proto.reward,
        stacking=proto.stacking,
    )


_OVERALL = {
    Overall.PENDING: deployment_pb2.DEPLOYMENT_STATE_PENDING,
    Overall.DEPLOYED: deployment_pb2.DEPLOYMENT_STATE_DEPLOYED,
    Overall.PARTIALLY_DEPLOYED: deployment_pb2.DEPLOYMENT_STATE_PARTIALLY_DEPLOYED,
    Overall.FAILED: deployment_pb2.DEPLOYMENT_STATE_FAILED,
    Overall.ROLLED_BACK: deployment_pb2.DEPLOYMENT_STATE_ROLLED_BACK,
}


def deployment(
    campaign: campaign_pb2.Campaign, targets: Sequence[Target], *, delivered_version: int
) -> deployment_pb2.CampaignDeployment:
    """`delivered_version`: the campaign version the targets must have (the version that launched it or
    later; a newer delivered version also counts)."""
    states = [effective_state(t, delivered_version) for t in targets]
    rolled_back = campaign.state == campaign_pb2.CAMPAIGN_STATE_ROLLED_BACK
    return deployment_pb2.CampaignDeployment(
        campaign_id=campaign.campaign_id,
        campaign_version=campaign.version,
        state=_OVERALL[overall(states, rolled_back=rolled_back)],
        targets=[
            deployment_pb2.DeploymentTarget(
                channel_id=t.channel_id,
                location_id=t.location_id,
                state=deployment_pb2.TargetState.Value(f"TARGET_STATE_{s.value}"),
                delivered_version=t.version,
                error=t.error,
                update_time=timestamp(t.updated_at),
            )
            for t, s in zip(targets, states, strict=True)
        ],
        remediation_tasks=[]
        if rolled_back
        else [
            deployment_pb2.RemediationTask(
                channel_id=r.channel_id,
                location_id=r.location_id,
                action=deployment_pb2.RemediationAction.Value(f"REMEDIATION_ACTION_{r.action}"),
                description=r.description,
            )
            for r in remediations(targets, delivered_version)
        ],
        channel_summaries=[
            deployment_pb2.ChannelDeploymentSummary(
                channel_id=summary.channel_id,
                per_location=summary.per_location,
                pending=summary.counts[TargetState.PENDING],
                delivered=summary.counts[TargetState.DELIVERED],
                acknowledged=summary.counts[TargetState.ACKNOWLEDGED],
                failed=summary.counts[TargetState.FAILED],
                suspended=summary.counts[TargetState.SUSPENDED],
            )
            for summary in summaries(targets, delivered_version)
        ],
        total_targets=len(targets),
    )
