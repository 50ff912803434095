"""ImportPriceEntries: a streamed CSV file into a DRAFT change set.

The header is read in Python. The data then takes the direct path: each block of complete lines is
screened by one regular-expression pass (domain/csv_lines.py), prefixed with the change set id and its
position, and COPYed straight into `change_set_items` (the request chunks feed the COPY as they arrive,
so memory does not grow with the file); one query then checks the SKUs, lists and currencies. A file
the direct path refuses (a bad row, or a form it does not take: quoted cells, absolute and local windows
mixed) is rolled back to before it and replayed from a spool file on disk into the staging path
(repository/imports.py), which writes the same items or names each bad row and column. Any bad row rolls
the whole import back: nothing is kept.
"""

from __future__ import annotations

import csv
import hashlib
import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import IO

import asyncpg
import uuid6

from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_common.db import Connection, claim_request, store_response, transaction
from retail_pricing.convert import change_set_to_proto
from retail_pricing.domain.csv_lines import LineScreen, number_lines
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
        # Cleared before it is handed out: a second body() (after a consumer stopped early) must not
        # repeat it.
        pending, self._pending = self._pending, b""
        if pending:
            yield pending
        while (data := await self._next()) is not None:
            if data:
                yield data


class _NotDirectError(Exception):
    """The direct path does not take this file; the staging path will."""


async def _complete_lines(stream: _Stream, spool: IO[bytes]) -> AsyncIterator[bytes]:
    """The data in blocks of complete lines (the last line given the file's line ending if it lacks
    one: COPY refuses a file mixing CRLF and LF), every chunk also written to the spool for a replay."""
    tail, ending = b"", b"\n"
    async for data in stream.body():
        spool.write(data)
        lines, newline, tail = (tail + data).rpartition(b"\n")
        if newline:
            if lines.endswith(b"\r"):
                ending = b"\r\n"
            yield lines + newline
    if tail:
        yield tail + ending


async def _copy_directly(
    conn: Connection, change_set_id: uuid.UUID, columns: list[str], stream: _Stream, spool: IO[bytes]
) -> int | None:
    """The file's rows as the change set's items through the direct path, or None (nothing kept) if it
    does not take them: then the whole file is in the spool."""
    screen = LineScreen(columns)
    blocks = _complete_lines(stream, spool)
    first = await anext(blocks, None)
    if first is None or not screen.passes(first):
        return None
    prefix = f"{change_set_id},add,".encode()

    async def screened() -> AsyncIterator[bytes]:
        numbered, position = number_lines(first, prefix, 0)
        yield numbered
        async for block in blocks:
            if not screen.passes(block):
                raise _NotDirectError
            numbered, position = number_lines(block, prefix, position)
            yield numbered

    try:
        async with conn.transaction():  # savepoint: a refusal keeps nothing
            count = await staging.copy_items(
                conn, ["change_set_id", "kind", "position", *screen.item_columns()], screened()
            )
            if not await staging.references_known(conn, change_set_id):
                raise _NotDirectError
    except (_NotDirectError, asyncpg.DataError, asyncpg.IntegrityConstraintViolationError):
        return None
    return count


async def _replay(spool: IO[bytes]) -> AsyncIterator[bytes]:
    spool.seek(0)
    while chunk := spool.read(MAX_MESSAGE_DATA):
        yield chunk


async def _copy_through_staging(
    conn: Connection, change_set_id: uuid.UUID, columns: list[str], stream: _Stream, spool: IO[bytes]
) -> int:
    """The rest of the file into the spool, then the whole file through the staging path: the items,
    or BadInputError naming every bad row (nothing kept)."""
    async for data in stream.body():
        spool.write(data)
    await staging.create_staging(conn)
    staged, problems = await staging.copy_rows(conn, columns, _replay(spool))
    if problems:
        raise BadInputError(problems)
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
    change_set_id = uuid6.uuid7()
    try:
        async with transaction(deps.pool) as conn:
            # The spool is a file on disk (its pages in the OS cache, not in this process's memory).
            with tempfile.TemporaryFile() as spool:
                count = await _copy_directly(conn, change_set_id, columns, stream, spool)
                if count is None:
                    count = await _copy_through_staging(conn, change_set_id, columns, stream, spool)
            # The whole stream has been read: its digest is final.
            stored = await claim_request(
                conn,
                scope=IDEMPOTENCY_SCOPE,
                request_id=first.request_id,
                fingerprint=stream_fingerprint("ImportPriceEntries", stream.digest.hexdigest()),
            )
            if stored is not None:
                raise _ReplayError(pb.ImportPriceEntriesResponse.FromString(stored))
            cs = await repo.insert_change_set(
                conn, change_set_id, first.description, actor_id(), deps.clock.now()
            )
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
