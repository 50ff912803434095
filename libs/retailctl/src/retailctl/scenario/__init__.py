"""The seed scenario (DESIGN.md §1) driven against a running suite: `retailctl demo` and the e2e tests."""

from retailctl.scenario.driver import Outcome, run_scenario
from retailctl.scenario.errors import ScenarioError
from retailctl.scenario.plan import Plan, new_plan

__all__ = ["Outcome", "Plan", "ScenarioError", "new_plan", "run_scenario"]
