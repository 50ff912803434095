"""`retailctl stock import FILE.csv`: absolute stock counts into inventory (ImportStockSnapshots stream).

CSV columns: sku, location_id, on_hand (0..1,000,000,000), as_of_time (RFC 3339 with offset). Every row
is checked first, locations included (one ListLocations walk), so a bad file sends nothing. The service
commits each message on its own: if a stream breaks midway, running the same file again is safe (counts
not newer than those applied are ignored).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from retail.inventory.v1 import inventory_service_pb2 as pb
from retail.inventory.v1 import inventory_service_pb2_grpc, stock_pb2
from retailctl.commands._shared import Commands, add_import_options, leaf, noun, pages, request_id
from retailctl.csvinput import CsvFile, RowError, indexed_field
from retailctl.errors import ExitCode
from retailctl.output import message_dict
from retailctl.progress import Progress
from retailctl.runner import Context, command
from retailctl.values import parse_instant, parse_int, to_timestamp

__all__ = ["register", "snapshot_parser"]

REQUIRED = ("sku", "location_id", "on_hand", "as_of_time")
PER_MESSAGE = 5000  # the contract allows 10,000; smaller messages show progress more often
MAX_ON_HAND = 1_000_000_000
MAX_ID = 128


def snapshot_parser(locations: set[str]) -> Callable[[dict[str, str]], stock_pb2.StockSnapshotEntry]:
    def parse(row: dict[str, str]) -> stock_pb2.StockSnapshotEntry:
        for column in ("sku", "location_id"):
            if not 1 <= len(row.get(column, "")) <= MAX_ID:
                raise RowError(column, f"required, 1..{MAX_ID} characters")
        if row["location_id"] not in locations:
            raise RowError("location_id", f"unknown location {row['location_id']!r} (create it first)")
        on_hand = parse_int(row.get("on_hand", ""), "on_hand", 0, MAX_ON_HAND)
        as_of = parse_instant(row.get("as_of_time", ""), "as_of_time")
        return stock_pb2.StockSnapshotEntry(
            sku=row["sku"], location_id=row["location_id"], on_hand=on_hand, as_of_time=to_timestamp(as_of)
        )

    return parse


async def _import(ctx: Context) -> ExitCode:
    source = CsvFile(ctx.args.file, required=REQUIRED)
    stub = inventory_service_pb2_grpc.InventoryServiceStub(ctx.channel("inventory-reservation"))
    locations: set[str] = set()
    async for page in pages(
        lambda token: stub.ListLocations(pb.ListLocationsRequest(page_size=1000, page_token=token))
    ):
        locations.update(location.location_id for location in page.locations)
    parse = snapshot_parser(locations)
    total = source.validate(parse)
    batches: list[list[int]] = []  # CSV row of entry i of message b: batches[b][i]

    def name_field(path: str) -> str | None:
        # entries[i] is counted per message; it names one row only when there was one message.
        found = indexed_field(path, "entries")
        if found is None or len(batches) != 1 or found[0] >= len(batches[0]):
            return None
        return f"row {batches[0][found[0]]}, column {found[1]}"

    ctx.name_field = name_field
    ctx.subject = str(source.path)
    progress = Progress("importing stock snapshots", total, enabled=ctx.progress_enabled)
    key = request_id(ctx.args)

    async def messages() -> AsyncIterator[pb.ImportStockSnapshotsRequest]:
        entries: list[stock_pb2.StockSnapshotEntry] = []
        seen: set[tuple[str, str]] = set()
        rows: list[int] = []
        for number, row in source.rows():
            entry = parse(row)
            # At most one entry per SKU/location per message: a repeat starts the next message.
            if len(entries) == PER_MESSAGE or (entry.sku, entry.location_id) in seen:
                batches.append(rows)
                yield pb.ImportStockSnapshotsRequest(request_id=key, entries=entries)
                progress.advance(len(entries))
                entries, seen, rows = [], set(), []
            entries.append(entry)
            seen.add((entry.sku, entry.location_id))
            rows.append(number)
        if entries:
            batches.append(rows)
            yield pb.ImportStockSnapshotsRequest(request_id=key, entries=entries)
            progress.advance(len(entries))

    with progress:
        response = await stub.ImportStockSnapshots(messages())
        progress.finish("applied")
    if ctx.out.as_json:
        ctx.out.json({"request_id": key, **message_dict(response)})
    else:
        ctx.out.fields(
            [
                ("received", response.received_count),
                ("applied", response.applied_count),
                ("ignored (not newer)", response.ignored_count),
                ("changed", response.changed_count),
                ("request id", key),
            ]
        )
    return ExitCode.OK


def register(commands: Commands) -> None:
    group = noun(commands, "stock", "stock counts in inventory")
    parser = leaf(
        group,
        "import",
        command(_import, default_timeout=3600),
        "import absolute stock counts from CSV (columns: sku, location_id, on_hand, as_of_time)",
    )
    add_import_options(parser)
