"""Campaign lifecycle transitions, four-eyes approval and the scheduler's due actions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from retail_promotion.domain.lifecycle import (
    Action,
    CampaignState,
    SelfApprovalError,
    TransitionError,
    due_action,
    next_state,
)
from retail_promotion.domain.windows import Window

S = CampaignState


def test_happy_path_draft_to_ended() -> None:
    state = S.DRAFT
    state = next_state(state, Action.SUBMIT, actor="ann", author="ann")
    state = next_state(state, Action.APPROVE, actor="bob", author="ann")
    state = next_state(state, Action.LAUNCH, actor="ann", author="ann")
    state = next_state(state, Action.START)
    assert next_state(state, Action.END) is S.ENDED
    assert next_state(state, Action.ROLLBACK) is S.ROLLED_BACK


def test_author_cannot_approve_or_reject_own_campaign() -> None:
    with pytest.raises(SelfApprovalError):
        next_state(S.SUBMITTED, Action.APPROVE, actor="ann", author="ann")
    with pytest.raises(SelfApprovalError):
        next_state(S.SUBMITTED, Action.REJECT, actor="ann", author="ann")
    assert next_state(S.SUBMITTED, Action.REJECT, actor="bob", author="ann") is S.DRAFT


@pytest.mark.parametrize(
    ("state", "action"),
    [
        (S.DRAFT, Action.APPROVE),
        (S.DRAFT, Action.LAUNCH),
        (S.SUBMITTED, Action.LAUNCH),
        (S.APPROVED, Action.START),
        (S.ENDED, Action.ROLLBACK),
        (S.ROLLED_BACK, Action.START),
        (S.ACTIVE, Action.SUBMIT),
    ],
)
def test_illegal_transitions(state: CampaignState, action: Action) -> None:
    with pytest.raises(TransitionError):
        next_state(state, action, actor="bob", author="ann")


def test_scheduler_due_actions_absolute_window() -> None:
    w = Window(datetime(2026, 6, 6, tzinfo=UTC), datetime(2026, 6, 8, tzinfo=UTC))
    assert due_action(S.SCHEDULED, w, datetime(2026, 6, 5, 23, 59, 59, tzinfo=UTC)) is None
    assert due_action(S.SCHEDULED, w, datetime(2026, 6, 6, tzinfo=UTC)) is Action.START
    assert due_action(S.ACTIVE, w, datetime(2026, 6, 7, tzinfo=UTC)) is None
    assert due_action(S.ACTIVE, w, datetime(2026, 6, 8, tzinfo=UTC)) is Action.END
    assert due_action(S.SCHEDULED, w, datetime(2026, 6, 9, tzinfo=UTC)) is Action.END
    assert due_action(S.APPROVED, w, datetime(2026, 6, 7, tzinfo=UTC)) is None


def test_scheduler_local_window_starts_at_the_first_zone_and_ends_after_the_last() -> None:
    w = Window(datetime(2026, 6, 6), datetime(2026, 6, 8), local=True)
    # Saturday 00:00 at UTC+14 is Friday 10:00 UTC
    assert due_action(S.SCHEDULED, w, datetime(2026, 6, 5, 9, 59, tzinfo=UTC)) is None
    assert due_action(S.SCHEDULED, w, datetime(2026, 6, 5, 10, 0, tzinfo=UTC)) is Action.START
    # Monday 00:00 at UTC-12 is Monday 12:00 UTC
    assert due_action(S.ACTIVE, w, datetime(2026, 6, 8, 11, 59, tzinfo=UTC)) is None
    assert due_action(S.ACTIVE, w, datetime(2026, 6, 8, 12, 0, tzinfo=UTC)) is Action.END
