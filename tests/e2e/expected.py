"""The final state every run of the seed scenario must end in, faults or not (nothing lost, nothing
applied twice): one campaign version DEPLOYED everywhere, exactly one reservation per channel and
order line (on hand, reserved and available-to-sell exact), the low-stock suspensions at the three
stores only, every channel's backlog delivered with no dead letter pending."""

from __future__ import annotations

from retail.promotion.v1 import deployment_pb2
from retailctl.scenario import Outcome, Plan

__all__ = ["assert_final_state"]

DONE = {deployment_pb2.TARGET_STATE_DELIVERED, deployment_pb2.TARGET_STATE_ACKNOWLEDGED}


def assert_final_state(plan: Plan, outcome: Outcome, *, resend_allowed: bool = False) -> None:
    assert outcome.deployment_state == deployment_pb2.DEPLOYMENT_STATE_DEPLOYED
    assert set(outcome.targets) == set(plan.channels)
    assert {state for state, _ in outcome.targets.values()} <= DONE
    assert len({version for _, version in outcome.targets.values()}) == 1  # one version everywhere
    reserved = plan.order_units * len(plan.channels)
    skus = list(plan.skus)[:2]
    assert outcome.stock == {
        f"{sku}@{store}": (plan.on_hand, reserved, plan.on_hand - reserved)
        for sku, store in zip(skus, plan.order_stores, strict=True)
    }
    assert outcome.suspensions == {
        ("LOW_STOCK", "", store, plan.guarded_sku) for store in plan.low_stock_stores
    }
    assert outcome.channel_health == {channel: (0, 0) for channel in plan.channels}
    # A receiver never sees an older version after a newer one; a batch may be resent once (same
    # idempotency key) only when the gateway died between the receiver's 2xx and its own commit.
    unexpected = [
        v for v in outcome.marketplace_violations if not (resend_allowed and v.startswith("resent after 2xx"))
    ]
    assert unexpected == []
