"""Results on stdout: an aligned table (default) or one stable JSON document (--json).

JSON uses the proto3 JSON mapping with proto field names (int64 values are strings, enums are their
names, timestamps RFC 3339), every field present even when zero, keys sorted: scripts can rely on it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from retail.promotion.v1 import deployment_pb2

__all__ = ["Output", "enum_name", "message_dict", "render_table", "state_counts", "timestamp"]


def state_counts(summary: deployment_pb2.ChannelDeploymentSummary, empty: str = "-") -> str:
    """A ChannelDeploymentSummary as e.g. "598 ACKNOWLEDGED, 2 FAILED" (states with none left out)."""
    counts = [
        (summary.pending, "PENDING"),
        (summary.delivered, "DELIVERED"),
        (summary.acknowledged, "ACKNOWLEDGED"),
        (summary.failed, "FAILED"),
        (summary.suspended, "SUSPENDED"),
    ]
    return ", ".join(f"{n} {name}" for n, name in counts if n) or empty


def message_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def enum_name(full: str, prefix: str) -> str:
    """BREAKER_STATE_OPEN -> OPEN: tables show the short name, JSON keeps the full one."""
    return full.removeprefix(prefix)


def timestamp(value: Timestamp, present: bool = True) -> str:
    if not present or (value.seconds == 0 and value.nanos == 0):
        return "-"
    return value.ToDatetime().strftime("%Y-%m-%d %H:%M:%SZ")


def render_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[str(value) for value in row] for row in rows]
    widths = [len(column) for column in columns]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [columns, *cells]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


class Output:
    """Writes either the human form (tables, key/value blocks) or the JSON document of a command."""

    def __init__(self, as_json: bool, stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stdout

    def json(self, document: Mapping[str, Any]) -> None:
        self.stream.write(json.dumps(document, indent=2, sort_keys=True) + "\n")

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[object]], empty: str) -> None:
        rows = list(rows)
        self.line(render_table(columns, rows) if rows else empty)

    def fields(self, pairs: Sequence[tuple[str, object]]) -> None:
        """A key/value block ("state:  DEPLOYED")."""
        width = max(len(key) for key, _ in pairs) + 1
        for key, value in pairs:
            self.line(f"{key + ':':<{width}} {value}")
