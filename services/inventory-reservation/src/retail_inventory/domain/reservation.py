"""Reservation state machine (pure).

ACTIVE is the only state holding units. Confirm and release move held units of lines to confirmed or
released; once nothing is held the reservation settles to CONFIRMED (some unit confirmed) or RELEASED.
Only the expiry sweep moves ACTIVE to EXPIRED (it frees every unit still held). Confirm, release and
extend need an ACTIVE reservation whose expiry (database clock) has not passed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

__all__ = [
    "Line",
    "LineQuantityError",
    "NotActiveError",
    "ReservationState",
    "confirm",
    "expire",
    "release",
    "settled_state",
]


class ReservationState(enum.StrEnum):
    ACTIVE = "ACTIVE"
    CONFIRMED = "CONFIRMED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    location_id: str
    quantity: int
    confirmed: int = 0
    released: int = 0
    request_line_index: int = 0

    @property
    def held(self) -> int:
        return self.quantity - self.confirmed - self.released


class NotActiveError(Exception):
    """The reservation is not ACTIVE, or has passed its expiry."""

    def __init__(self, state: ReservationState, *, expired: bool) -> None:
        self.state = state
        self.expired = expired
        super().__init__("reservation expired" if expired else f"reservation is {state.value}")


class LineQuantityError(Exception):
    """A per-line request names a line that does not exist or asks for more than it holds."""

    def __init__(self, position: int, line_index: int, reason: str) -> None:
        self.position = position
        self.line_index = line_index
        super().__init__(reason)


def settled_state(lines: Sequence[Line]) -> ReservationState:
    if any(line.held > 0 for line in lines):
        return ReservationState.ACTIVE
    if any(line.confirmed > 0 for line in lines):
        return ReservationState.CONFIRMED
    return ReservationState.RELEASED


def _amounts(lines: Sequence[Line], requested: Sequence[tuple[int, int]] | None) -> Mapping[int, int]:
    """Units per line index: every held unit when `requested` is None, else the requested ones."""
    if requested is None:
        return {i: line.held for i, line in enumerate(lines) if line.held > 0}
    amounts: dict[int, int] = {}
    for position, (index, quantity) in enumerate(requested):
        if not 0 <= index < len(lines):
            raise LineQuantityError(position, index, "no such line")
        if index in amounts:
            raise LineQuantityError(position, index, "line given twice")
        if quantity <= 0:
            raise LineQuantityError(position, index, "quantity must be > 0")
        if quantity > lines[index].held:
            raise LineQuantityError(position, index, f"line holds only {lines[index].held} units")
        amounts[index] = quantity
    return amounts


def _check_active(state: ReservationState, expired: bool) -> None:
    if state is not ReservationState.ACTIVE:
        raise NotActiveError(state, expired=False)
    if expired:
        raise NotActiveError(state, expired=True)


def confirm(
    state: ReservationState,
    lines: Sequence[Line],
    requested: Sequence[tuple[int, int]] | None,
    *,
    expired: bool,
) -> tuple[list[Line], ReservationState, dict[int, int]]:
    """Confirm every held unit (requested None) or the requested (line_index, quantity) pairs.

    Returns the new lines, the new state and the units confirmed per line index.
    """
    _check_active(state, expired)
    amounts = _amounts(lines, requested)
    new_lines = [replace(line, confirmed=line.confirmed + amounts.get(i, 0)) for i, line in enumerate(lines)]
    return new_lines, settled_state(new_lines), dict(amounts)


def release(
    state: ReservationState,
    lines: Sequence[Line],
    requested: Sequence[tuple[int, int]] | None,
    *,
    expired: bool,
) -> tuple[list[Line], ReservationState, dict[int, int]]:
    """Release every held unit (requested None) or the requested pairs; same result shape as confirm."""
    _check_active(state, expired)
    amounts = _amounts(lines, requested)
    new_lines = [replace(line, released=line.released + amounts.get(i, 0)) for i, line in enumerate(lines)]
    return new_lines, settled_state(new_lines), dict(amounts)


def expire(state: ReservationState, lines: Sequence[Line]) -> tuple[list[Line], dict[int, int]]:
    """The expiry sweep's transition: free every held unit. Only for ACTIVE reservations."""
    if state is not ReservationState.ACTIVE:
        raise NotActiveError(state, expired=False)
    freed = {i: line.held for i, line in enumerate(lines) if line.held > 0}
    return [replace(line, released=line.released + line.held) for line in lines], freed
