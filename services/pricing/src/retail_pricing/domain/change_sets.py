"""Change sets: the lifecycle (draft -> submitted -> approved | rejected, approver != author), and the
plan an approval applies (clamped so that approved changes never rewrite the past), and its inverse."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from retail_pricing.domain.errors import ForbiddenError, RuleError
from retail_pricing.domain.model import AbsoluteWindow, LocalWindow, PriceEntry, Window
from retail_pricing.domain.windows import safe_local_wall

__all__ = [
    "MAX_ITEMS",
    "AddEntry",
    "EndEntry",
    "Insert",
    "Item",
    "Operation",
    "Shorten",
    "State",
    "Withdraw",
    "apply_plan",
    "clamp_window",
    "ensure_editable",
    "plan_approval",
    "revert_items",
    "review",
    "submit",
]

MAX_ITEMS = 10_000


class State(enum.StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class AddEntry:
    price_list_id: str
    sku: str
    amount: Decimal
    window: Window
    min_quantity: int = 1


@dataclass(frozen=True)
class EndEntry:
    entry_id: int
    end: datetime | None = None  # None = at approval


Item = AddEntry | EndEntry


def _require(state: State, expected: State, action: str, subject: str) -> None:
    if state is not expected:
        raise RuleError("CHANGE_SET_STATE", subject, f"cannot {action} a change set in state {state.value}")


def ensure_editable(state: State, subject: str) -> None:
    _require(state, State.DRAFT, "edit", subject)


def submit(state: State, item_count: int, subject: str) -> State:
    _require(state, State.DRAFT, "submit", subject)
    if item_count == 0:
        raise RuleError("CHANGE_SET_EMPTY", subject, "a change set needs at least one item")
    return State.SUBMITTED


def review(state: State, author_id: str, reviewer_id: str, approve: bool, subject: str) -> State:
    """SUBMITTED -> APPROVED/REJECTED; the reviewer must not be the author (four-eyes rule)."""
    _require(state, State.SUBMITTED, "approve" if approve else "reject", subject)
    if reviewer_id == author_id:
        raise ForbiddenError("the author of a change set cannot approve or reject it")
    return State.APPROVED if approve else State.REJECTED


# --- the approval plan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Insert:
    item: AddEntry  # window already clamped


@dataclass(frozen=True)
class Shorten:
    before: PriceEntry
    window: Window  # the new, earlier-ending window


@dataclass(frozen=True)
class Withdraw:
    before: PriceEntry  # had not started anywhere: removed entirely


Operation = Insert | Shorten | Withdraw


def clamp_window(window: Window, approved_at: datetime) -> Window | None:
    """Clamp the start to the approval instant (local windows: to the earliest wall-clock time that is
    not in the past in any zone). None when nothing of the window is left."""
    if isinstance(window, AbsoluteWindow):
        start = max(window.start, approved_at)
        if window.end is not None and window.end <= start:
            return None
        return AbsoluteWindow(start, window.end)
    local_start = max(window.start, safe_local_wall(approved_at))
    if window.end is not None and window.end <= local_start:
        return None
    return LocalWindow(local_start, window.end)


def _end_entry(entry: PriceEntry, requested: datetime | None, approved_at: datetime) -> Operation | None:
    end_at = max(requested or approved_at, approved_at)
    window = entry.window
    if isinstance(window, AbsoluteWindow):
        if window.start >= end_at:
            return Withdraw(entry)
        if window.end is not None and window.end <= end_at:
            return None  # already ends by then
        return Shorten(entry, AbsoluteWindow(window.start, end_at))
    # Local: read the requested instant's UTC date/time as wall clock, never before "safe now".
    wall_end = max(end_at.replace(tzinfo=None), safe_local_wall(approved_at))
    if window.start >= safe_local_wall(approved_at):
        return Withdraw(entry)
    if window.end is not None and window.end <= wall_end:
        return None
    return Shorten(entry, LocalWindow(window.start, wall_end))


def plan_approval(
    items: Sequence[Item], existing: Mapping[int, PriceEntry], approved_at: datetime
) -> list[Operation]:
    """What approving at `approved_at` does: END items first (in item order), then ADD items."""
    plan: list[Operation] = []
    for index, item in enumerate(items):
        if isinstance(item, EndEntry):
            entry = existing.get(item.entry_id)
            if entry is None:
                raise RuleError("ENTRY_NOT_FOUND", f"items[{index}]", f"entry {item.entry_id} does not exist")
            op = _end_entry(entry, item.end, approved_at)
            if op is not None:
                plan.append(op)
    for index, item in enumerate(items):
        if isinstance(item, AddEntry):
            window = clamp_window(item.window, approved_at)
            if window is None:
                raise RuleError("WINDOW_IN_PAST", f"items[{index}]", "the window ends before the approval")
            plan.append(Insert(replace(item, window=window)))
    return plan


def apply_plan(
    entries: Sequence[PriceEntry], plan: Sequence[Operation], first_new_id: int
) -> list[PriceEntry]:
    """The entries after the plan (used for previews; the database applies it for real)."""
    by_id = {e.entry_id: e for e in entries}
    next_id = first_new_id
    for op in plan:
        if isinstance(op, Withdraw):
            by_id.pop(op.before.entry_id, None)
        elif isinstance(op, Shorten):
            by_id[op.before.entry_id] = replace(op.before, window=op.window)
        else:
            item = op.item
            by_id[next_id] = PriceEntry(
                next_id, item.price_list_id, item.sku, item.amount, item.window, item.min_quantity
            )
            next_id += 1
    return list(by_id.values())


def revert_items(created: Sequence[PriceEntry], changed: Sequence[Operation]) -> list[Item]:
    """The inverse of an approved change set: end what it created, restore what it ended."""
    items: list[Item] = [EndEntry(entry.entry_id) for entry in created]
    for op in changed:
        if isinstance(op, Withdraw):
            before = op.before
            items.append(
                AddEntry(before.price_list_id, before.sku, before.amount, before.window, before.min_quantity)
            )
        elif isinstance(op, Shorten):
            before = op.before
            restored: Window
            if isinstance(op.window, AbsoluteWindow):
                assert op.window.end is not None
                end_abs = before.window.end if isinstance(before.window, AbsoluteWindow) else None
                restored = AbsoluteWindow(op.window.end, end_abs)
            else:
                assert op.window.end is not None
                end_local = before.window.end if isinstance(before.window, LocalWindow) else None
                restored = LocalWindow(op.window.end, end_local)
            items.append(
                AddEntry(before.price_list_id, before.sku, before.amount, restored, before.min_quantity)
            )
    return items
