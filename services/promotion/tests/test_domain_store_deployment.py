"""Per-store deployment rows of store channels: overall state, remediation naming the store, summaries."""

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
    summaries,
)


def _stores(*deliveries: Delivery | None, version: int = 3) -> list[Target]:
    out = []
    for i, delivery in enumerate(deliveries):
        target = Target("pos", f"store-{i}")
        if delivery is not None:
            target = apply_delivery(target, delivery, version, "HTTP 503")
        out.append(target)
    return out


def test_one_store_failing_is_a_partial_deployment_with_a_task_naming_the_store() -> None:
    targets = [
        Target("web", "", 3, Delivery.ACKNOWLEDGED),
        *_stores(Delivery.ACKNOWLEDGED, Delivery.DEAD_LETTERED, Delivery.ACKNOWLEDGED),
    ]
    states = [effective_state(t, 3) for t in targets]
    assert states == [TargetState.ACKNOWLEDGED, TargetState.ACKNOWLEDGED, TargetState.FAILED,
                      TargetState.ACKNOWLEDGED]  # fmt: skip
    assert overall(states) is Overall.PARTIALLY_DEPLOYED
    [task] = remediations(targets, 3)
    assert (task.channel_id, task.location_id, task.action) == ("pos", "store-1", "REPLAY_DELIVERY")
    assert "pos at store store-1" in task.description
    assert "HTTP 503" in task.description


def test_the_store_recovering_deploys_the_campaign() -> None:
    targets = _stores(Delivery.ACKNOWLEDGED, Delivery.DEAD_LETTERED, Delivery.ACKNOWLEDGED)
    targets[1] = apply_delivery(targets[1], Delivery.ACKNOWLEDGED, 3)
    assert overall([effective_state(t, 3) for t in targets]) is Overall.DEPLOYED
    assert remediations(targets, 3) == []


def test_a_store_still_waiting_keeps_the_deployment_pending() -> None:
    targets = _stores(Delivery.ACKNOWLEDGED, None, Delivery.DELIVERED)
    assert overall([effective_state(t, 3) for t in targets]) is Overall.PENDING


def test_every_store_failing_fails_the_deployment() -> None:
    targets = _stores(Delivery.DEAD_LETTERED, Delivery.DEAD_LETTERED)
    assert overall([effective_state(t, 3) for t in targets]) is Overall.FAILED


def test_summaries_count_states_per_channel_and_mark_store_channels() -> None:
    targets = [
        Target("mkt", "", 3, Delivery.DEAD_LETTERED),
        *_stores(Delivery.ACKNOWLEDGED, Delivery.DEAD_LETTERED, None, Delivery.ACKNOWLEDGED),
    ]
    mkt, pos = summaries(targets, 3)
    assert (mkt.channel_id, mkt.per_location, mkt.counts[TargetState.FAILED]) == ("mkt", False, 1)
    assert pos.per_location
    assert {s: n for s, n in pos.counts.items() if n} == {
        TargetState.ACKNOWLEDGED: 2,
        TargetState.FAILED: 1,
        TargetState.PENDING: 1,
    }
