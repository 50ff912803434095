"""Fault injection during the seed scenario: one service (or nats-server) is killed with -9 at a busy
moment and restarted a second later on the same port; the scenario rides the outage out (idempotent
retries) and must end in exactly the same final state as without the fault."""

from __future__ import annotations

import io

import pytest

from retailctl.scenario import new_plan, run_scenario
from tests.e2e.expected import assert_final_state
from tests.e2e.suite import Suite

# (victim, the step after which it dies): each right before the work that needs it most.
FAULTS = [
    ("pricing", "seeded"),  # channel registration, campaign validation and evaluation ask pricing next
    ("inventory-reservation", "partial"),  # every channel's order reserves next (idempotency under retry)
    ("promotion", "launched"),  # scheduler activation and the deployment ledger's consumers
    ("channel-gateway", "launched"),  # deliveries due with their lead times, dead letters, projection
    ("nats", "launched"),  # every outbox relay and consumer loses its connection
]


@pytest.mark.faults
@pytest.mark.parametrize(("victim", "after"), FAULTS, ids=[v for v, _ in FAULTS])
async def test_scenario_survives_a_crash(suite: Suite, victim: str, after: str) -> None:
    # The start leaves room for a crashed service's leases (relay 10 s, delivery 6 s) to expire.
    plan = new_plan(stores=60, start_in=40)
    narration = io.StringIO()
    crashed: list[str] = []

    async def crash(step: str) -> None:
        if step == after:
            crashed.append(step)
            narration.write(f"\n*** kill -9 {victim} after step '{step}', back in 1 s ***\n")
            await suite.crash_and_restart(victim, down_for=1.0)

    try:
        outcome = await run_scenario(
            plan, suite.targets, suite.operator, suite.approver, out=narration, between=crash
        )
        await suite.settle_restarts()
    except BaseException:
        print(narration.getvalue(), suite.logs(), sep="\n")
        raise
    assert crashed == [after]
    assert_final_state(plan, outcome, resend_allowed=victim == "channel-gateway")
