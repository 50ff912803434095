"""Campaign lifecycle (state machine) and the scheduler's due transitions.

DRAFT -submit-> SUBMITTED -approve (approver != author)-> APPROVED -launch-> SCHEDULED
SUBMITTED -reject-> DRAFT; SCHEDULED -start-> ACTIVE -end-> ENDED; SCHEDULED/ACTIVE -rollback-> ROLLED_BACK
Suspensions are per scope and never change the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from retail_promotion.domain.windows import Window

__all__ = [
    "Action",
    "CampaignState",
    "SelfApprovalError",
    "TransitionError",
    "due_action",
    "next_state",
]


class CampaignState(Enum):
    DRAFT = "DRAFT"
    SUBMITTED = "SUBMITTED"
    APPROVED = "APPROVED"
    SCHEDULED = "SCHEDULED"
    ACTIVE = "ACTIVE"
    ENDED = "ENDED"
    ROLLED_BACK = "ROLLED_BACK"


class Action(Enum):
    SUBMIT = "SUBMIT"
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    LAUNCH = "LAUNCH"
    START = "START"
    END = "END"
    ROLLBACK = "ROLLBACK"


_S = CampaignState
_TRANSITIONS: dict[tuple[CampaignState, Action], CampaignState] = {
    (_S.DRAFT, Action.SUBMIT): _S.SUBMITTED,
    (_S.SUBMITTED, Action.APPROVE): _S.APPROVED,
    (_S.SUBMITTED, Action.REJECT): _S.DRAFT,
    (_S.APPROVED, Action.LAUNCH): _S.SCHEDULED,
    (_S.SCHEDULED, Action.START): _S.ACTIVE,
    (_S.SCHEDULED, Action.END): _S.ENDED,  # a window that passed entirely while scheduled
    (_S.ACTIVE, Action.END): _S.ENDED,
    (_S.SCHEDULED, Action.ROLLBACK): _S.ROLLED_BACK,
    (_S.ACTIVE, Action.ROLLBACK): _S.ROLLED_BACK,
}


@dataclass(frozen=True)
class TransitionError(Exception):
    state: CampaignState
    action: Action

    def __str__(self) -> str:
        return f"cannot {self.action.value.lower()} a {self.state.value} campaign"


class SelfApprovalError(Exception):
    def __str__(self) -> str:
        return "the approver must not be the author"


def next_state(state: CampaignState, action: Action, *, actor: str = "", author: str = "") -> CampaignState:
    """The state after `action`; raises TransitionError or SelfApprovalError."""
    target = _TRANSITIONS.get((state, action))
    if target is None:
        raise TransitionError(state, action)
    if action in (Action.APPROVE, Action.REJECT) and actor == author:
        raise SelfApprovalError()
    return target


# Every IANA zone is within UTC-12..UTC+14: a local window is live somewhere from its wall start read
# at UTC+14 until its wall end read at UTC-12.
_EARLIEST = timedelta(hours=14)
_LATEST = timedelta(hours=12)


def live_span(window: Window) -> tuple[datetime, datetime | None]:
    """When the campaign must be ACTIVE somewhere (per-location checks happen at evaluation)."""
    if not window.local:
        return window.start, window.end
    from datetime import UTC

    start = window.start.replace(tzinfo=UTC) - _EARLIEST
    end = window.end.replace(tzinfo=UTC) + _LATEST if window.end is not None else None
    return start, end


def due_action(state: CampaignState, window: Window, now: datetime) -> Action | None:
    """What the scheduler must do to a campaign at `now` (None: nothing)."""
    start, end = live_span(window)
    if state in (_S.SCHEDULED, _S.ACTIVE) and end is not None and now >= end:
        return Action.END
    if state is _S.SCHEDULED and now >= start:
        return Action.START
    return None
