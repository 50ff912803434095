"""One row of a price-entry CSV import: parsing and validation (pure; the handler streams the file)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from retail_pricing.domain.change_sets import AddEntry
from retail_pricing.domain.errors import Violation
from retail_pricing.domain.model import AbsoluteWindow, LocalWindow, PriceList, Window
from retail_pricing.domain.products import ID_PATTERN

__all__ = ["OPTIONAL_COLUMNS", "REQUIRED_COLUMNS", "Header", "parse_header", "parse_row"]

REQUIRED_COLUMNS = ("price_list_id", "sku", "amount", "currency_code", "start_time")
OPTIONAL_COLUMNS = ("end_time", "min_quantity")


@dataclass(frozen=True)
class Header:
    index: Mapping[str, int]

    def get(self, row: list[str], name: str) -> str:
        i = self.index.get(name)
        return row[i].strip() if i is not None and i < len(row) else ""


def parse_header(cells: list[str]) -> tuple[Header | None, list[Violation]]:
    index = {name.strip(): i for i, name in enumerate(cells)}
    missing = [c for c in REQUIRED_COLUMNS if c not in index]
    unknown = [c for c in index if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    problems = [Violation("rows[1]", f"missing column {c!r}") for c in missing]
    problems += [Violation("rows[1]", f"unknown column {c!r}") for c in unknown]
    return (None if problems else Header(index)), problems


def _time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_row(
    header: Header, cells: list[str], row_number: int, lists: Mapping[str, PriceList]
) -> tuple[AddEntry | None, list[Violation]]:
    """The row as an ADD item, or its problems (field paths "rows[N].<column>")."""
    at = f"rows[{row_number}]"
    problems: list[Violation] = []
    if len(cells) != len(header.index):
        return None, [Violation(at, f"expected {len(header.index)} columns, got {len(cells)}")]
    list_id = header.get(cells, "price_list_id")
    price_list = lists.get(list_id)
    if price_list is None:
        problems.append(Violation(f"{at}.price_list_id", f"unknown price list {list_id!r}"))
    sku = header.get(cells, "sku")
    if not ID_PATTERN.match(sku):
        problems.append(Violation(f"{at}.sku", "must be 1 to 128 characters without whitespace"))
    currency = header.get(cells, "currency_code")
    if price_list is not None and currency != price_list.currency:
        problems.append(
            Violation(f"{at}.currency_code", f"must be the list's currency {price_list.currency}")
        )
    amount: Decimal | None = None
    try:
        amount = Decimal(header.get(cells, "amount"))
        if not amount.is_finite() or amount < 0 or amount.as_tuple().exponent < -9:  # type: ignore[operator]
            raise InvalidOperation
    except InvalidOperation:
        problems.append(
            Violation(f"{at}.amount", "must be a non-negative decimal with at most 9 fraction digits")
        )
        amount = None
    start = _time(header.get(cells, "start_time"))
    if start is None:
        problems.append(Violation(f"{at}.start_time", "must be an ISO 8601 date-time"))
    end_text = header.get(cells, "end_time")
    end = _time(end_text) if end_text else None
    if end_text and end is None:
        problems.append(Violation(f"{at}.end_time", "must be an ISO 8601 date-time"))
    window: Window | None = None
    if start is not None and (end is not None or not end_text):
        if end is not None and (end.tzinfo is None) != (start.tzinfo is None):
            problems.append(
                Violation(f"{at}.end_time", "must have an offset exactly when start_time has one")
            )
        elif end is not None and end <= start:
            problems.append(Violation(f"{at}.end_time", "must be after start_time"))
        else:
            window = LocalWindow(start, end) if start.tzinfo is None else AbsoluteWindow(start, end)
    quantity_text = header.get(cells, "min_quantity")
    min_quantity = 1
    if quantity_text:
        if not quantity_text.isdigit() or int(quantity_text) < 1:
            problems.append(Violation(f"{at}.min_quantity", "must be an integer >= 1"))
        else:
            min_quantity = int(quantity_text)
    if problems or amount is None or window is None:
        return None, problems
    return AddEntry(list_id, sku, amount, window, min_quantity), []
