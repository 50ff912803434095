"""Change sets, their items (COPY-friendly rows) and what their approval did (for revert)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from retail_common.db import Connection
from retail_pricing.domain.change_sets import AddEntry, EndEntry, Item, Operation, Shorten, State, Withdraw
from retail_pricing.domain.model import AbsoluteWindow, LocalWindow, PriceEntry, Window

__all__ = [
    "ITEM_COLUMNS",
    "StoredChangeSet",
    "get_change_set",
    "insert_change_set",
    "item_record",
    "list_change_sets",
    "load_effects",
    "load_item_page",
    "load_items",
    "record_effect",
    "replace_items",
    "update_change_set",
]


@dataclass(frozen=True)
class StoredChangeSet:
    change_set_id: uuid.UUID
    description: str
    state: State
    author_id: str
    version: int
    created_at: datetime
    item_count: int = 0
    reviewer_id: str | None = None
    rejection_reason: str | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    reverts_id: uuid.UUID | None = None
    reverted_by_id: uuid.UUID | None = None
    submitted_at: datetime | None = None
    reviewed_at: datetime | None = None


_COLUMNS = (
    "change_set_id, description, state, author_id, version, created_at, item_count, reviewer_id,"
    " rejection_reason, findings, reverts_id, reverted_by_id, submitted_at, reviewed_at"
)

ITEM_COLUMNS = (
    "change_set_id",
    "position",
    "kind",
    "price_list_id",
    "sku",
    "min_quantity",
    "amount",
    "start_abs",
    "end_abs",
    "start_local",
    "end_local",
    "entry_id",
    "end_time",
)


def _stored(row: Any) -> StoredChangeSet:
    findings = row["findings"]
    if isinstance(findings, str):
        findings = json.loads(findings)
    return StoredChangeSet(
        change_set_id=row["change_set_id"],
        description=row["description"],
        state=State(row["state"]),
        author_id=row["author_id"],
        version=row["version"],
        created_at=row["created_at"],
        item_count=row["item_count"],
        reviewer_id=row["reviewer_id"],
        rejection_reason=row["rejection_reason"],
        findings=list(findings),
        reverts_id=row["reverts_id"],
        reverted_by_id=row["reverted_by_id"],
        submitted_at=row["submitted_at"],
        reviewed_at=row["reviewed_at"],
    )


async def insert_change_set(
    conn: Connection,
    change_set_id: uuid.UUID,
    description: str,
    author_id: str,
    now: datetime,
    reverts_id: uuid.UUID | None = None,
) -> StoredChangeSet:
    row = await conn.fetchrow(
        f"""
        insert into change_sets
            (change_set_id, description, state, author_id, version, created_at, reverts_id)
        values ($1, $2, 'draft', $3, 1, $4, $5) returning {_COLUMNS}
        """,
        change_set_id,
        description,
        author_id,
        now,
        reverts_id,
    )
    return _stored(row)


async def get_change_set(
    conn: Connection, change_set_id: uuid.UUID, *, lock: bool = False
) -> StoredChangeSet | None:
    suffix = " for update" if lock else ""
    row = await conn.fetchrow(
        f"select {_COLUMNS} from change_sets where change_set_id = $1{suffix}", change_set_id
    )
    return None if row is None else _stored(row)


async def list_change_sets(
    conn: Connection, state: State | None, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[StoredChangeSet]:
    rows = await conn.fetch(
        f"""
        select {_COLUMNS} from change_sets
        where ($1::text is null or state = $1)
          and ($2::timestamptz is null or (created_at, change_set_id) > ($2, $3))
        order by created_at, change_set_id limit $4
        """,
        state.value if state else None,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [_stored(r) for r in rows]


async def update_change_set(
    conn: Connection, change_set_id: uuid.UUID, expected_version: int, **values: Any
) -> StoredChangeSet | None:
    """Set columns and bump the version if it is still `expected_version` (etag); None otherwise."""
    names = sorted(values)
    args = [json.dumps(values[n]) if n == "findings" else values[n] for n in names]
    sets = ", ".join(
        f"{name} = ${i + 3}::text::jsonb" if name == "findings" else f"{name} = ${i + 3}"
        for i, name in enumerate(names)
    )
    row = await conn.fetchrow(
        f"""
        update change_sets set {sets}{", " if sets else ""}version = version + 1
        where change_set_id = $1 and version = $2 returning {_COLUMNS}
        """,
        change_set_id,
        expected_version,
        *args,
    )
    return None if row is None else _stored(row)


def item_record(change_set_id: uuid.UUID, position: int, item: Item) -> tuple[Any, ...]:
    if isinstance(item, EndEntry):
        return (
            change_set_id,
            position,
            "end",
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            item.entry_id,
            item.end,
        )
    w = item.window
    start_abs = w.start if isinstance(w, AbsoluteWindow) else None
    end_abs = w.end if isinstance(w, AbsoluteWindow) else None
    start_local = w.start if isinstance(w, LocalWindow) else None
    end_local = w.end if isinstance(w, LocalWindow) else None
    return (
        change_set_id,
        position,
        "add",
        item.price_list_id,
        item.sku,
        item.min_quantity,
        item.amount,
        start_abs,
        end_abs,
        start_local,
        end_local,
        None,
        None,
    )


async def replace_items(conn: Connection, change_set_id: uuid.UUID, items: Sequence[Item]) -> None:
    await conn.execute("delete from change_set_items where change_set_id = $1", change_set_id)
    if items:
        await conn.copy_records_to_table(
            "change_set_items",
            records=[item_record(change_set_id, i, item) for i, item in enumerate(items)],
            columns=list(ITEM_COLUMNS),
        )
    await conn.execute(
        "update change_sets set item_count = $2 where change_set_id = $1", change_set_id, len(items)
    )


def _item(row: Any) -> Item:
    if row["kind"] == "end":
        return EndEntry(row["entry_id"], row["end_time"])
    window: Window
    if row["start_abs"] is not None:
        window = AbsoluteWindow(row["start_abs"], row["end_abs"])
    else:
        window = LocalWindow(row["start_local"], row["end_local"])
    return AddEntry(row["price_list_id"], row["sku"], row["amount"], window, row["min_quantity"])


# Items are numbered 0..n-1 without gaps (every writer numbers a change set's items that way; the table's
# BRIN index, migration 0006, has no ordering of its own): the items after position p are a position
# range, which the index finds without reading the rest of the change set. A NULL min_quantity means 1
# (the direct import COPYs an empty cell as NULL).
_ITEM_SELECT = (
    "select position, kind, price_list_id, sku, coalesce(min_quantity, 1) as min_quantity, amount,"
    " start_abs, end_abs, start_local, end_local, entry_id, end_time"
    " from change_set_items where change_set_id = $1 and position > $2"
)


async def load_items(
    conn: Connection, change_set_id: uuid.UUID, limit: int | None = None, after_position: int = -1
) -> list[Item]:
    if limit is None:
        rows = await conn.fetch(_ITEM_SELECT + " order by position", change_set_id, after_position)
    else:
        rows = await conn.fetch(
            _ITEM_SELECT + " and position <= $2 + $3 order by position", change_set_id, after_position, limit
        )
    return [_item(r) for r in rows]


async def load_item_page(
    conn: Connection, change_set_id: uuid.UUID, size: int, after_position: int = -1
) -> tuple[list[Item], int | None]:
    """Up to `size` items after a position, and the position to read the next page after (None at the
    end)."""
    items = await load_items(conn, change_set_id, size + 1, after_position)
    more = len(items) > size
    return items[:size], (after_position + size if more else None)


def _entry_json(entry: PriceEntry) -> dict[str, Any]:
    w = entry.window
    return {
        "entry_id": entry.entry_id,
        "price_list_id": entry.price_list_id,
        "sku": entry.sku,
        "amount": str(entry.amount),
        "min_quantity": entry.min_quantity,
        "local": isinstance(w, LocalWindow),
        "start": w.start.isoformat(),
        "end": None if w.end is None else w.end.isoformat(),
    }


def _entry_from_json(data: dict[str, Any]) -> PriceEntry:
    start = datetime.fromisoformat(data["start"])
    end = None if data["end"] is None else datetime.fromisoformat(data["end"])
    window: Window = LocalWindow(start, end) if data["local"] else AbsoluteWindow(start, end)
    return PriceEntry(
        data["entry_id"],
        data["price_list_id"],
        data["sku"],
        Decimal(data["amount"]),
        window,
        data["min_quantity"],
    )


async def record_effect(conn: Connection, change_set_id: uuid.UUID, op: Shorten | Withdraw) -> None:
    await conn.execute(
        """
        insert into change_set_effects (change_set_id, entry_id, effect, before)
        values ($1, $2, $3, $4::text::jsonb)
        """,
        change_set_id,
        op.before.entry_id,
        "shorten" if isinstance(op, Shorten) else "withdraw",
        json.dumps({"before": _entry_json(op.before), "after": _entry_json_window(op)}),
    )


def _entry_json_window(op: Shorten | Withdraw) -> dict[str, Any] | None:
    if isinstance(op, Withdraw):
        return None
    return {
        "start": op.window.start.isoformat(),
        "end": None if op.window.end is None else op.window.end.isoformat(),
    }


async def load_effects(conn: Connection, change_set_id: uuid.UUID) -> list[Operation]:
    rows = await conn.fetch(
        "select effect, before::text as data from change_set_effects"
        " where change_set_id = $1 order by entry_id",
        change_set_id,
    )
    ops: list[Operation] = []
    for row in rows:
        data = json.loads(row["data"])
        before = _entry_from_json(data["before"])
        if row["effect"] == "withdraw":
            ops.append(Withdraw(before))
        else:
            after = data["after"]
            start = datetime.fromisoformat(after["start"])
            end = None if after["end"] is None else datetime.fromisoformat(after["end"])
            window: Window = (
                LocalWindow(start, end) if data["before"]["local"] else AbsoluteWindow(start, end)
            )
            ops.append(Shorten(before, window))
    return ops
