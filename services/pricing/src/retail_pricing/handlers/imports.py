"""ImportPriceEntries: a streamed CSV file into a DRAFT change set, in chunks through COPY.

Memory stays flat: bytes are split into lines as they arrive, rows are validated and buffered up to one
chunk, and each chunk is COPY'd into change_set_items inside the import's transaction. Every row is
validated (SKUs in one query per chunk); any bad row rolls the whole import back (nothing kept).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import uuid6

from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_common.db import Connection, transaction
from retail_pricing.convert import change_set_to_proto
from retail_pricing.domain.change_sets import AddEntry
from retail_pricing.domain.csv_rows import Header, parse_header, parse_row
from retail_pricing.domain.errors import BadInputError, Violation
from retail_pricing.handlers.common import Deps, actor_id, audit
from retail_pricing.repository import change_sets as repo
from retail_pricing.repository.idempotency import claim, complete
from retail_pricing.repository.price_lists import load_price_lists

__all__ = ["CHUNK_ROWS", "MAX_REPORTED", "import_price_entries"]

CHUNK_ROWS = 5000
MAX_REPORTED = 100
MAX_MESSAGE_DATA = 1 << 20


class _ReplayError(Exception):
    def __init__(self, response: pb.ImportPriceEntriesResponse) -> None:
        self.response = response


async def _lines(
    requests: AsyncIterator[pb.ImportPriceEntriesRequest], first: pb.ImportPriceEntriesRequest, digest: Any
) -> AsyncIterator[str]:
    """Decoded lines of the concatenated `data` chunks (no newlines inside fields)."""
    pending = b""

    async def chunks() -> AsyncIterator[bytes]:
        yield first.data
        async for request in requests:
            yield request.data

    async for data in chunks():
        if len(data) > MAX_MESSAGE_DATA:
            raise BadInputError([Violation("data", "at most 1 MiB per message")])
        digest.update(data)
        pending += data
        *complete_lines, pending = pending.split(b"\n")
        for raw in complete_lines:
            yield raw.decode("utf-8", errors="replace").rstrip("\r")
    if pending:
        yield pending.decode("utf-8", errors="replace").rstrip("\r")


class _Loader:
    def __init__(self, conn: Connection, change_set_id: Any) -> None:
        self.conn = conn
        self.change_set_id = change_set_id
        self.buffer: list[tuple[int, AddEntry]] = []
        self.rows = 0
        self.problems: list[Violation] = []
        self.bad_rows = 0

    def report(self, problems: list[Violation]) -> None:
        if problems:
            self.bad_rows += 1
        room = MAX_REPORTED - len(self.problems)
        if room > 0:
            self.problems.extend(problems[:room])

    async def flush(self) -> None:
        if not self.buffer:
            return
        skus = sorted({item.sku for _, item in self.buffer})
        rows = await self.conn.fetch("select sku, status from products where sku = any($1::text[])", skus)
        status = {r["sku"]: r["status"] for r in rows}
        good = []
        for row_number, item in self.buffer:
            state = status.get(item.sku)
            if state is None:
                self.report([Violation(f"rows[{row_number}].sku", f"unknown SKU {item.sku!r}")])
            elif state != "active":
                self.report([Violation(f"rows[{row_number}].sku", f"SKU {item.sku!r} is inactive")])
            else:
                good.append(repo.item_record(self.change_set_id, row_number, item))
        if good and not self.problems:
            await self.conn.copy_records_to_table(
                "change_set_items", records=good, columns=list(repo.ITEM_COLUMNS)
            )
        self.buffer.clear()


async def import_price_entries(
    deps: Deps, requests: AsyncIterator[pb.ImportPriceEntriesRequest]
) -> pb.ImportPriceEntriesResponse:
    first = await anext(aiter(requests), None)
    if first is None or not first.request_id:
        raise BadInputError([Violation("request_id", "required in the first message")])
    digest = hashlib.sha256(first.description.encode() + b"\0")
    try:
        async with transaction(deps.pool) as conn:
            lists = await load_price_lists(conn)
            cs = await repo.insert_change_set(
                conn, uuid6.uuid7(), first.description, actor_id(), deps.clock.now()
            )
            loader = _Loader(conn, cs.change_set_id)
            header: Header | None = None
            row_number = 0
            async for line in _lines(requests, first, digest):
                row_number += 1
                if not line.strip():
                    continue
                cells = next(csv.reader([line]))
                if header is None:
                    header, problems = parse_header(cells)
                    if header is None:
                        raise BadInputError(problems)
                    continue
                item, problems = parse_row(header, cells, row_number, lists)
                if item is None:
                    loader.report(problems)
                    continue
                loader.rows += 1
                loader.buffer.append((row_number, item))
                if len(loader.buffer) >= CHUNK_ROWS:
                    await loader.flush()
            await loader.flush()
            if header is None:
                raise BadInputError([Violation("data", "the file has no header line")])
            if loader.problems:
                raise BadInputError(loader.problems)
            stored = await claim(conn, first.request_id, "ImportPriceEntries", digest.hexdigest())
            if stored is not None:
                raise _ReplayError(pb.ImportPriceEntriesResponse.FromString(stored))
            await conn.execute(
                "update change_sets set item_count = $2 where change_set_id = $1",
                cs.change_set_id,
                loader.rows,
            )
            saved = await repo.get_change_set(conn, cs.change_set_id)
            assert saved is not None
            # Items are not echoed back: there may be millions.
            out = change_set_to_proto(saved, [], {})
            await audit(
                conn, "ImportPriceEntries", "retail.pricing.v1.ChangeSet", str(cs.change_set_id), None, out
            )
            response = pb.ImportPriceEntriesResponse(change_set=out, row_count=loader.rows)
            await complete(conn, first.request_id, response.SerializeToString(deterministic=True))
            return response
    except _ReplayError as replay:
        return replay.response
