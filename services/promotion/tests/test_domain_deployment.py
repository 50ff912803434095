"""Deployment ledger: target states from delivery/health events, overall state, remediation."""

from __future__ import annotations

from retail_promotion.domain.deployment import (
    Delivery,
    Overall,
    Target,
    TargetState,
    apply_delivery,
    effective_state,
    overall,
    remediations,
)

T = TargetState


def test_delivery_events_apply_only_when_newer() -> None:
    t = Target("web")
    t = apply_delivery(t, Delivery.DELIVERED, 3)
    assert effective_state(t, 3) is T.DELIVERED
    t = apply_delivery(t, Delivery.ACKNOWLEDGED, 3)
    assert effective_state(t, 3) is T.ACKNOWLEDGED
    assert apply_delivery(t, Delivery.DELIVERED, 3) == t  # duplicate / out of order
    assert apply_delivery(t, Delivery.ACKNOWLEDGED, 2) == t  # older version
    assert effective_state(t, 4) is T.PENDING  # the campaign moved on


def test_failure_then_replay_recovers() -> None:
    t = apply_delivery(Target("mp-1"), Delivery.DEAD_LETTERED, 3, "HTTP 503")
    assert effective_state(t, 3) is T.FAILED
    assert [r.action for r in remediations([t], 3)] == ["REPLAY_DELIVERY"]
    t = apply_delivery(t, Delivery.DELIVERED, 3)  # replay delivers the same version
    assert effective_state(t, 3) is T.DELIVERED
    assert remediations([t], 3) == []


def test_degraded_channel_is_suspended_with_restore_task() -> None:
    t = Target("mp-1", degraded=True, version=3, delivery=Delivery.ACKNOWLEDGED)
    assert effective_state(t, 3) is T.SUSPENDED
    assert [r.action for r in remediations([t], 3)] == ["RESTORE_CHANNEL"]


def test_overall_aggregation() -> None:
    assert overall([T.ACKNOWLEDGED, T.DELIVERED]) is Overall.DEPLOYED
    assert overall([T.ACKNOWLEDGED, T.FAILED]) is Overall.PARTIALLY_DEPLOYED
    assert overall([T.ACKNOWLEDGED, T.SUSPENDED, T.PENDING]) is Overall.PARTIALLY_DEPLOYED
    assert overall([T.FAILED, T.SUSPENDED]) is Overall.FAILED
    assert overall([T.PENDING, T.DELIVERED]) is Overall.PENDING
    assert overall([]) is Overall.PENDING
    assert overall([T.ACKNOWLEDGED], rolled_back=True) is Overall.ROLLED_BACK
