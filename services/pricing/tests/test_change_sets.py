"""Change-set lifecycle, four-eyes approval, clamping, the approval plan and revert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from retail_pricing.domain.change_sets import (
    AddEntry,
    EndEntry,
    Insert,
    Shorten,
    State,
    Withdraw,
    apply_plan,
    clamp_window,
    ensure_editable,
    plan_approval,
    revert_items,
    review,
    submit,
)
from retail_pricing.domain.errors import ForbiddenError, RuleError
from retail_pricing.domain.model import AbsoluteWindow, LocalWindow, PriceEntry

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def test_lifecycle_draft_submitted_approved() -> None:
    state = submit(State.DRAFT, 1, "cs")
    assert state is State.SUBMITTED
    assert review(state, "alice", "bob", approve=True, subject="cs") is State.APPROVED
    assert review(state, "alice", "bob", approve=False, subject="cs") is State.REJECTED


def test_author_cannot_approve_or_reject_own_change_set() -> None:
    with pytest.raises(ForbiddenError):
        review(State.SUBMITTED, "alice", "alice", approve=True, subject="cs")
    with pytest.raises(ForbiddenError):
        review(State.SUBMITTED, "alice", "alice", approve=False, subject="cs")


@pytest.mark.parametrize("state", [State.DRAFT, State.APPROVED, State.REJECTED])
def test_only_submitted_change_sets_can_be_reviewed(state) -> None:
    with pytest.raises(RuleError, match="CHANGE_SET_STATE"):
        review(state, "alice", "bob", approve=True, subject="cs")


@pytest.mark.parametrize("state", [State.SUBMITTED, State.APPROVED, State.REJECTED])
def test_only_drafts_can_be_edited_or_submitted(state) -> None:
    with pytest.raises(RuleError):
        ensure_editable(state, "cs")
    with pytest.raises(RuleError):
        submit(state, 1, "cs")


def test_empty_change_set_cannot_be_submitted() -> None:
    with pytest.raises(RuleError, match="CHANGE_SET_EMPTY"):
        submit(State.DRAFT, 0, "cs")


def test_clamp_absolute_start_to_approval_never_rewrites_the_past() -> None:
    assert clamp_window(AbsoluteWindow(NOW - H, NOW + H), NOW) == AbsoluteWindow(NOW, NOW + H)
    assert clamp_window(AbsoluteWindow(NOW + H), NOW) == AbsoluteWindow(NOW + H)
    assert clamp_window(AbsoluteWindow(NOW - 2 * H, NOW), NOW) is None


def test_clamp_local_start_to_wall_time_not_past_anywhere() -> None:
    # 12:00 UTC is already 02:00 next day in UTC+14: the earliest safe wall time is 2026-05-02 02:00.
    clamped = clamp_window(LocalWindow(datetime(2026, 5, 1, 0, 0)), NOW)
    assert clamped == LocalWindow(datetime(2026, 5, 2, 2, 0))
    future = LocalWindow(datetime(2026, 6, 1))
    assert clamp_window(future, NOW) == future


def entry(entry_id: int, start: datetime, end: datetime | None = None, amount: str = "5") -> PriceEntry:
    return PriceEntry(entry_id, "base", "SKU", Decimal(amount), AbsoluteWindow(start, end))


def test_plan_ends_first_then_adds_with_clamping() -> None:
    running = entry(1, NOW - 10 * H)
    future = entry(2, NOW + 10 * H)
    add = AddEntry("base", "SKU", Decimal("4"), AbsoluteWindow(NOW - H))
    plan = plan_approval([add, EndEntry(1), EndEntry(2)], {1: running, 2: future}, NOW)
    assert plan == [
        Shorten(running, AbsoluteWindow(NOW - 10 * H, NOW)),
        Withdraw(future),
        Insert(AddEntry("base", "SKU", Decimal("4"), AbsoluteWindow(NOW))),
    ]


def test_plan_end_at_a_future_instant_and_already_ended_is_a_no_op() -> None:
    running = entry(1, NOW - H, NOW + 2 * H)
    assert plan_approval([EndEntry(1, NOW + H)], {1: running}, NOW) == [
        Shorten(running, AbsoluteWindow(NOW - H, NOW + H))
    ]
    assert plan_approval([EndEntry(1, NOW + 5 * H)], {1: running}, NOW) == []


def test_plan_refuses_unknown_entry_and_window_entirely_past() -> None:
    with pytest.raises(RuleError, match="ENTRY_NOT_FOUND"):
        plan_approval([EndEntry(9)], {}, NOW)
    with pytest.raises(RuleError, match="WINDOW_IN_PAST"):
        plan_approval([AddEntry("base", "SKU", Decimal(1), AbsoluteWindow(NOW - 2 * H, NOW - H))], {}, NOW)


def test_apply_plan_and_revert_restore_the_previous_prices_from_the_revert_on() -> None:
    running = entry(1, NOW - 10 * H, None, "5")
    future = entry(2, NOW + 10 * H, NOW + 20 * H, "6")
    plan = plan_approval(
        [EndEntry(1), EndEntry(2), AddEntry("base", "SKU", Decimal("4"), AbsoluteWindow(NOW))],
        {1: running, 2: future},
        NOW,
    )
    after = apply_plan([running, future], plan, first_new_id=3)
    assert {e.entry_id: (e.amount, e.window) for e in after} == {
        1: (Decimal(5), AbsoluteWindow(NOW - 10 * H, NOW)),
        3: (Decimal(4), AbsoluteWindow(NOW)),
    }
    created = [e for e in after if e.entry_id == 3]
    inverse = revert_items(created, [op for op in plan if not isinstance(op, Insert)])
    assert inverse == [
        EndEntry(3),
        AddEntry("base", "SKU", Decimal(5), AbsoluteWindow(NOW, None)),
        AddEntry("base", "SKU", Decimal(6), AbsoluteWindow(NOW + 10 * H, NOW + 20 * H)),
    ]
