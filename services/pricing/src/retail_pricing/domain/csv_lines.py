"""Screening of the import's data lines for the direct COPY path.

A block of complete data lines either passes one regular-expression pass (run in C over the whole block,
no Python per row) against the strictest form of every column, all its rows in one window style, or the
import takes the staging path, whose report names each bad row. The screen may refuse rows the report
accepts (quoted cells, leading zeros in a tier, a file mixing absolute and local windows): those files
are still imported, only more slowly. It never accepts a row the report refuses, except for what the
COPY itself and the checks after it catch: impossible dates (the cast fails), a window ending at or
before its start (the table's check constraints), unknown or inactive SKUs, unknown lists and a currency
that is not the list's (one query).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence

__all__ = ["LineScreen", "WindowStyle", "number_lines"]


class WindowStyle(enum.Enum):
    ABSOLUTE = "absolute"  # instants with an offset
    LOCAL = "local"  # wall-clock times applied in each location's zone


_DATE_TIME = (
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?"
)
_OFFSET = r"(?:Z|[+-]\d{2}(?::?\d{2})?)"
_TIME = {WindowStyle.ABSOLUTE: _DATE_TIME + _OFFSET, WindowStyle.LOCAL: _DATE_TIME}
# An unquoted, non-empty cell (COPY reads an unquoted empty cell as NULL, which the checks refuse).
_ID = r'[^,"\r\n]+'
_CELL = {
    "price_list_id": _ID,
    "sku": _ID,
    "amount": r"\d{1,18}(?:\.\d{1,9})?",
    "currency_code": r"[A-Z]{3}",
    "min_quantity": r"(?:[1-9]\d{0,17})?",  # empty: NULL, which means 1
}
# Where each column of the file lands in change_set_items, by window style.
_TARGET = {
    WindowStyle.ABSOLUTE: {"start_time": "start_abs", "end_time": "end_abs"},
    WindowStyle.LOCAL: {"start_time": "start_local", "end_time": "end_local"},
}


def _cell(column: str, style: WindowStyle) -> str:
    if column == "start_time":
        return _TIME[style]
    if column == "end_time":
        return f"(?:{_TIME[style]})?"
    return _CELL[column]


class LineScreen:
    """The window style of a file's data, fixed by its first block; later blocks must keep it."""

    def __init__(self, columns: Sequence[str]) -> None:
        self._columns = list(columns)
        self._patterns = {
            style: re.compile((",".join(_cell(c, style) for c in columns) + r"\r?\n").encode())
            for style in WindowStyle
        }
        self.style: WindowStyle | None = None

    def passes(self, lines: bytes) -> bool:
        """Whether every line of `lines` (complete lines, the last one ending in a newline) is of the
        screened form and of the file's style."""
        styles = [self.style] if self.style is not None else list(WindowStyle)
        for style in styles:
            # The lines are valid exactly when consecutive matches consume all of them: subn with an
            # empty literal replacement runs entirely in C and leaves whatever did not match.
            rest, _ = self._patterns[style].subn(b"", lines)
            if not rest:
                self.style = style
                return True
        return False

    def item_columns(self) -> list[str]:
        """The change_set_items columns the file's columns fill, in file order (style known)."""
        assert self.style is not None
        target = _TARGET[self.style]
        return [target.get(c, c) for c in self._columns]


def number_lines(lines: bytes, prefix: bytes, first: int) -> tuple[bytes, int]:
    """Every line of `lines` (the last one ending in a newline) as `<prefix><position>,<line>`, positions
    counting from `first`; and the position after the last."""
    rows = lines.split(b"\n")
    rows.pop()  # what follows the last newline: nothing
    return b"".join([b"%b%d,%b\n" % (prefix, i, row) for i, row in enumerate(rows, first)]), first + len(rows)
