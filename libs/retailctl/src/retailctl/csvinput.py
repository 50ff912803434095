"""CSV input of the import commands: open, check the header, validate every row before sending any.

Rows are numbered as the services number them: the header is row 1, the first data row is row 2.
Every row is checked before the first message goes out, so a bad file changes nothing anywhere and
all its problems (the first 20) are reported at once, each with its row and column.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from retailctl.errors import CliError, ExitCode

__all__ = ["CsvFile", "RowError", "indexed_field"]

T = TypeVar("T")
_SHOWN = 20


class RowError(Exception):
    """One bad cell: the column and why."""

    def __init__(self, column: str, description: str) -> None:
        super().__init__(f"{column}: {description}")
        self.column = column
        self.description = description


class CsvFile:
    def __init__(self, path: str, *, required: Sequence[str], optional: Sequence[str] = ()) -> None:
        self.path = Path(path)
        self.required = list(required)
        self.optional = list(optional)
        if not self.path.is_file():
            raise CliError(f"{path}: no such file", ExitCode.USAGE)
        header = self._header()
        missing = [column for column in self.required if column not in header]
        if missing:
            raise CliError(
                f"{path}: row 1 (header) lacks column(s) {', '.join(missing)}; expected "
                f"{', '.join(self.required)} (required) and {', '.join(self.optional) or 'nothing else'}",
                ExitCode.REFUSED,
            )

    def _header(self) -> list[str]:
        with self.path.open(newline="", encoding="utf-8-sig") as handle:
            return [name.strip() for name in next(csv.reader(handle), [])]

    def rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        """(row number, cells by column with surrounding spaces stripped), blank lines skipped."""
        with self.path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            for number, values in enumerate(reader, start=2):
                if not any(value.strip() for value in values):
                    continue
                yield number, {name: value.strip() for name, value in zip(header, values, strict=False)}

    def validate(self, parse: Callable[[dict[str, str]], T]) -> int:
        """Parse every row (results dropped); raise one CliError listing the bad rows; return the count."""
        problems: list[str] = []
        count = 0
        for number, row in self.rows():
            count += 1
            try:
                parse(row)
            except RowError as error:
                problems.append(f"row {number}, column {error.column}: {error.description}")
        if problems:
            more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
            raise CliError(
                f"{self.path}: {len(problems)} bad row(s), nothing was sent: "
                + "; ".join(problems[:_SHOWN])
                + more,
                ExitCode.REFUSED,
            )
        return count


_INDEXED = re.compile(r"^(?P<list>\w+)\[(?P<index>\d+)\](?:\.(?P<rest>.+))?$")


def indexed_field(path: str, list_name: str) -> tuple[int, str] | None:
    """`products[3].sku` -> (3, "sku"); None when the path is not an item of `list_name`."""
    match = _INDEXED.match(path)
    if match is None or match["list"] != list_name:
        return None
    return int(match["index"]), match["rest"] or "(row)"
