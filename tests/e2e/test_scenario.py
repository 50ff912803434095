"""The seed scenario (DESIGN.md §1) end to end: the four services as separate processes and the same
driver as `make demo`, which reads every state back and raises on any mismatch; the final state is
then checked once more as a whole."""

from __future__ import annotations

import io

from retailctl.scenario import new_plan, run_scenario
from tests.e2e.expected import assert_final_state
from tests.e2e.suite import Suite


async def test_seed_scenario_with_600_stores_end_to_end(suite: Suite) -> None:
    plan = new_plan(stores=600, start_in=60)  # room for a busy CI machine
    narration = io.StringIO()
    try:
        outcome = await run_scenario(plan, suite.targets, suite.operator, suite.approver, out=narration)
    except BaseException:
        print(narration.getvalue(), suite.logs(), sep="\n")
        raise
    assert_final_state(plan, outcome)
    story = narration.getvalue()
    for state in ("PARTIALLY_DEPLOYED", "SUSPENDED", "LOW_STOCK", "DEPLOYED"):
        assert state in story
