"""ImportPriceEntries: a streamed CSV file into a DRAFT change set.

The header is read in Python; the data streams straight into a staging table through COPY (the request
chunks are the COPY source, so memory does not grow with the file); one INSERT ... SELECT then checks
every row and writes the items (repository/imports.py). Only if it refuses some row do the detailed
checks run, for a report naming each bad row and column. Any bad row rolls the whole import back:
nothing is kept.
"""

from __future__ import annotations

import csv
import hashlib
import uuid
from collections.abc import AsyncIterator

import uuid6

from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_common.db import Connection, claim_request, store_response, transaction
from retail_pricing.convert import change_set_to_proto
from retail_pricing.domain.csv_rows import parse_header
from retail_pricing.domain.errors import BadInputError, Violation
from retail_pricing.handlers.common import IDEMPOTENCY_SCOPE, Deps, actor_id, audit, stream_fingerprint
from retail_pricing.repository import change_sets as repo
from retail_pricing.repository import imports as staging

__all__ = ["MAX_MESSAGE_DATA", "import_price_entries"]

MAX_MESSAGE_DATA = 1 << 20
MAX_HEADER = 4096


class _ReplayError(Exception):
    def __init__(self, response: pb.ImportPriceEntriesResponse) -> None:
        self.response = response


class _Stream:
    """The request stream as bytes: the header line first, then the remaining data for COPY."""

    def __init__(
        self, first: pb.ImportPriceEntriesRequest, rest: AsyncIterator[pb.ImportPriceEntriesRequest]
    ) -> None:
        self._first: pb.ImportPriceEntriesRequest | None = first
        self._rest = rest
        self._pending = b""
        self.digest = hashlib.sha256(first.description.encode() + b"\0")

    async def _next(self) -> bytes | None:
        if self._first is not None:
            request, self._first = self._first, None
        else:
            try:
                request = await anext(self._rest)
            except StopAsyncIteration:
                return None
        if len(request.data) > MAX_MESSAGE_DATA:
            raise BadInputError([Violation("data", "at most 1 MiB per message")])
        self.digest.update(request.data)
        return request.data

    async def header(self) -> str | None:
        while b"\n" not in self._pending:
            data = await self._next()
            if data is None:
                break
            self._pending += data
            if len(self._pending) > MAX_HEADER and b"\n" not in self._pending:
                raise BadInputError([Violation("rows[1]", "header line too long")])
        line, _, self._pending = self._pending.partition(b"\n")
        text = line.decode("utf-8", errors="replace").strip()
        return text or None

    async def body(self) -> AsyncIterator[bytes]:
        if self._pending:
            yield self._pending
            self._pending = b""
        while (data := await self._next()) is not None:
            if data:
                yield data


async def _insert_items(conn: Connection, change_set_id: uuid.UUID, staged: int) -> int:
    """The staged rows as the change set's items; BadInputError naming every bad row (nothing kept)."""
    count = await staging.insert_if_all_valid(conn, change_set_id, staged)
    if count is not None:
        return count
    problems = await staging.validate_rows(conn)
    if problems:
        raise BadInputError(problems)
    return await staging.insert_items(conn, change_set_id)


async def import_price_entries(
    deps: Deps, requests: AsyncIterator[pb.ImportPriceEntriesRequest]
) -> pb.ImportPriceEntriesResponse:
    first = await anext(aiter(requests), None)
    if first is None or not first.request_id:
        raise BadInputError([Violation("request_id", "required in the first message")])
    stream = _Stream(first, requests)
    header_line = await stream.header()
    if header_line is None:
        raise BadInputError([Violation("data", "the file has no header line")])
    columns, problems = parse_header(next(csv.reader([header_line])))
    if columns is None:
        raise BadInputError(problems)
    try:
        async with transaction(deps.pool) as conn:
            await staging.create_staging(conn)
            staged, problems = await staging.copy_rows(conn, columns, stream.body())
            if problems:
                raise BadInputError(problems)
            stored = await claim_request(
                conn,
                scope=IDEMPOTENCY_SCOPE,
                request_id=first.request_id,
                fingerprint=stream_fingerprint("ImportPriceEntries", stream.digest.hexdigest()),
            )
            if stored is not None:
                raise _ReplayError(pb.ImportPriceEntriesResponse.FromString(stored))
            cs = await repo.insert_change_set(
                conn, uuid6.uuid7(), first.description, actor_id(), deps.clock.now()
            )
            count = await _insert_items(conn, cs.change_set_id, staged)
            await conn.execute(
                "update change_sets set item_count = $2 where change_set_id = $1", cs.change_set_id, count
            )
            saved = await repo.get_change_set(conn, cs.change_set_id)
            assert saved is not None
            out = change_set_to_proto(saved, [], {})  # items are not echoed: there may be millions
            await audit(
                conn, "ImportPriceEntries", "retail.pricing.v1.ChangeSet", str(cs.change_set_id), None, out
            )
            response = pb.ImportPriceEntriesResponse(change_set=out, row_count=count)
            await store_response(
                conn, scope=IDEMPOTENCY_SCOPE, request_id=first.request_id, response=response
            )
            return response
    except _ReplayError as replay:
        return replay.response
