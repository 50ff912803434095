"""The price-entry CSV import format: columns and the header check (rows are validated in SQL)."""

from __future__ import annotations

from retail_pricing.domain.errors import Violation

__all__ = ["COLUMNS", "OPTIONAL_COLUMNS", "REQUIRED_COLUMNS", "parse_header"]

REQUIRED_COLUMNS = ("price_list_id", "sku", "amount", "currency_code", "start_time")
OPTIONAL_COLUMNS = ("end_time", "min_quantity")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS


def parse_header(cells: list[str]) -> tuple[list[str] | None, list[Violation]]:
    """The column names in file order, or the problems with the header (row 1)."""
    names = [cell.strip() for cell in cells]
    problems = [Violation("rows[1]", f"missing column {c!r}") for c in REQUIRED_COLUMNS if c not in names]
    problems += [Violation("rows[1]", f"unknown column {c!r}") for c in names if c not in COLUMNS]
    problems += [
        Violation("rows[1]", f"duplicate column {c!r}") for c in sorted(set(names)) if names.count(c) > 1
    ]
    return (None if problems else names), problems
