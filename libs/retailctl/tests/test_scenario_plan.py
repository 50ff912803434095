"""The scenario's plan: per-run ids (so `make demo` runs twice against one suite), a stable estate, and
a start far enough ahead for the launch to register its guardrails first."""

from __future__ import annotations

import pytest

from retailctl.scenario import new_plan
from retailctl.scenario.plan import REGIONS


def test_two_runs_share_the_stores_but_nothing_else() -> None:
    first, second = new_plan(), new_plan()
    assert first.store_ids == second.store_ids
    assert len(first.store_ids) == 600
    assert not set(first.skus) & set(second.skus)
    assert not set(first.channels) & set(second.channels)
    assert first.campaign_id != second.campaign_id
    assert first.price_list_id != second.price_list_id


def test_stores_spread_over_every_region_and_the_step_stores_do_not_overlap() -> None:
    plan = new_plan(stores=60)
    regions = {plan.region_of(i)[0] for i in range(plan.stores)}
    assert regions == {r for r, _ in REGIONS}
    assert not set(plan.low_stock_stores) & set(plan.order_stores)
    assert plan.guarded_sku in plan.skus
    assert plan.on_hand - plan.order_units * len(plan.channels) >= plan.guardrail_min  # orders stay above


def test_the_start_leaves_room_for_the_launch_and_can_be_set() -> None:
    assert new_plan(stores=600).start_in_seconds > new_plan(stores=24).start_in_seconds
    assert new_plan(stores=24, start_in=5).start_in_seconds == 5
    with pytest.raises(ValueError, match="at least 21 stores"):
        new_plan(stores=10)
