"""`retailctl prices import FILE.csv` (ImportPriceEntries: a CSV into a new DRAFT change set) and
`retailctl prices explain SKU` (ExplainPrice: every candidate entry, the rule that removed it, the winner).

The price CSV goes to the service as it is (it validates every row and names bad ones "rows[17].amount",
counting the header as row 1); the CLI only cuts it into messages at line ends and shows progress.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from retail.pricing.v1 import change_sets_pb2, pricing_service_pb2_grpc, resolution_pb2
from retail.pricing.v1 import pricing_service_pb2 as pb
from retailctl.commands._shared import Commands, add_import_options, leaf, noun, request_id
from retailctl.csvinput import RowError
from retailctl.errors import CliError, ExitCode
from retailctl.output import enum_name, message_dict
from retailctl.progress import Progress
from retailctl.runner import Context, command
from retailctl.values import decimal_text, money_text, parse_instant, to_timestamp

__all__ = ["register"]

CHUNK_BYTES = 512 * 1024  # under the contract's 1 MiB per message
_ROW_FIELD = re.compile(r"^rows\[(?P<row>\d+)\](?:\.(?P<column>.+))?$")


def _chunks(path: Path) -> Iterator[tuple[bytes, int]]:
    """(data, data lines in it): whole lines, about CHUNK_BYTES each; the header is not a data line.

    Read in blocks and cut at the block's last line end (no per-line Python work: a million-row file
    costs about as much to send as to read); a line is counted when it has a character that is not
    whitespace, as `_data_lines` counts them."""
    carry = b""
    header = True
    with path.open("rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            cut = block.rfind(b"\n")
            if cut < 0:  # no line end in a whole block: keep reading (one very long line)
                carry += block
                continue
            data, carry = carry + block[: cut + 1], block[cut + 1 :]
            yield data, _count_lines(data, header)
            header = False
    if carry:
        yield carry, _count_lines(carry, header)


_BLANK_LINE = re.compile(rb"(?:^|\n)[ \t\r\f\v]*(?:\n|$)")


def _count_lines(data: bytes, header: bool) -> int:
    """Lines of `data` (after its first line if that is the header) with a character that is not
    whitespace: blank lines are not rows."""
    if header:
        end = data.find(b"\n")
        data = b"" if end < 0 else data[end + 1 :]
    if not data:
        return 0
    lines = data.count(b"\n") + (not data.endswith(b"\n"))
    if _BLANK_LINE.search(data, 0, len(data) - 1 if data.endswith(b"\n") else len(data)):
        lines = sum(1 for line in data.split(b"\n") if line.strip())  # rare: count them one by one
    return lines


def _data_lines(path: Path) -> int:
    return sum(lines for _, lines in _chunks(path))


async def _import(ctx: Context) -> ExitCode:
    path = Path(ctx.args.file)
    if not path.is_file():  # noqa: ASYNC240 - one stat before any I/O that matters
        raise CliError(f"{path}: no such file", ExitCode.USAGE)

    def name_field(field: str) -> str | None:
        match = _ROW_FIELD.match(field)
        if match is None:
            return None
        column = f", column {match['column']}" if match["column"] else ""
        return f"row {match['row']}{column}"

    ctx.name_field = name_field
    ctx.subject = str(path)
    progress = Progress("importing price entries", _data_lines(path), enabled=ctx.progress_enabled)
    key = request_id(ctx.args)

    async def messages() -> AsyncIterator[pb.ImportPriceEntriesRequest]:
        first = True
        for data, lines in _chunks(path):
            if first:
                yield pb.ImportPriceEntriesRequest(
                    request_id=key, description=ctx.args.description, data=data
                )
                first = False
            else:
                yield pb.ImportPriceEntriesRequest(data=data)
            progress.advance(lines)
        if first:  # an empty file: let the service say what is missing
            yield pb.ImportPriceEntriesRequest(request_id=key, description=ctx.args.description)

    stub = pricing_service_pb2_grpc.PricingServiceStub(ctx.channel("pricing"))
    with progress:
        response = await stub.ImportPriceEntries(messages())
        progress.finish("staged")
    change_set = response.change_set
    if ctx.out.as_json:
        document = message_dict(response)
        document["change_set"].pop("items", None)  # the service does not echo them (may be millions)
        ctx.out.json({"request_id": key, **document})
    else:
        ctx.out.fields(
            [
                ("change set", change_set.change_set_id),
                (
                    "state",
                    enum_name(change_sets_pb2.ChangeSetState.Name(change_set.state), "CHANGE_SET_STATE_"),
                ),
                ("rows", response.row_count),
                ("request id", key),
                (
                    "next",
                    "review it, then submit and approve it (PricingService SubmitChangeSet/ApproveChangeSet)",
                ),
            ]
        )
    return ExitCode.OK


def _query(args: argparse.Namespace) -> resolution_pb2.PriceQuery:
    query = resolution_pb2.PriceQuery(
        sku=args.sku,
        currency_code=args.currency,
        channel_id=args.channel or "",
        location_id=args.location or "",
        region_id=args.region or "",
        customer_segment=args.segment or "",
        quantity=args.quantity or 0,
    )
    if args.at:
        try:
            query.at_time.CopyFrom(to_timestamp(parse_instant(args.at, "--at")))
        except RowError as error:
            raise CliError(f"--at: {error.description}", ExitCode.USAGE) from None
    return query


def _window(candidate: resolution_pb2.PriceCandidate) -> str:
    window = candidate.entry.window
    if window.HasField("absolute"):
        start, end = window.absolute.start_time, window.absolute.end_time
        since = start.ToDatetime().strftime("%Y-%m-%d %H:%M")
        until = (
            end.ToDatetime().strftime("%Y-%m-%d %H:%M") if window.absolute.HasField("end_time") else "open"
        )
        return f"{since}Z..{until}{'Z' if window.absolute.HasField('end_time') else ''}"
    if window.HasField("local"):
        start_l, end_l = window.local.start_time, window.local.end_time
        until_l = (
            f"{end_l.year:04}-{end_l.month:02}-{end_l.day:02} {end_l.hours:02}:{end_l.minutes:02}"
            if window.local.HasField("end_time")
            else "open"
        )
        return (
            f"{start_l.year:04}-{start_l.month:02}-{start_l.day:02} {start_l.hours:02}:{start_l.minutes:02}"
            f"..{until_l} local"
        )
    return "-"


async def _explain(ctx: Context) -> ExitCode:
    stub = pricing_service_pb2_grpc.PricingServiceStub(ctx.channel("pricing"))
    response = await stub.ExplainPrice(pb.ExplainPriceRequest(query=_query(ctx.args)))
    found = response.HasField("price")
    if ctx.out.as_json:
        ctx.out.json(message_dict(response))
        return ExitCode.OK if found else ExitCode.FINDING
    if found:
        price = response.price
        ctx.out.fields(
            [
                ("sku", price.sku),
                ("gross", money_text(price.price.gross)),
                ("net", money_text(price.price.net)),
                ("tax", f"{money_text(price.price.tax)} (rate {decimal_text(price.tax_rate)})"),
                ("entry", f"{price.entry.entry_id} in list {price.price_list.price_list_id}"),
                (
                    "reference",
                    money_text(price.reference_price.gross) if price.HasField("reference_price") else "-",
                ),
            ]
        )
    else:
        ctx.out.line(f"no price: no candidate entry of {ctx.args.sku} survives the rules below")
    ctx.out.line()
    ctx.out.table(
        ["ENTRY", "LIST", "PRIORITY", "AMOUNT", "WINDOW", "OUTCOME", "DETAIL"],
        (
            [
                c.entry.entry_id,
                c.price_list.price_list_id,
                c.price_list.effective_priority,
                money_text(c.entry.amount),
                _window(c),
                enum_name(resolution_pb2.CandidateOutcome.Name(c.outcome), "CANDIDATE_OUTCOME_"),
                c.detail or "-",
            ]
            for c in response.candidates
        ),
        empty=f"{ctx.args.sku} has no price entries at all",
    )
    return ExitCode.OK if found else ExitCode.FINDING


def register(commands: Commands) -> None:
    group = noun(commands, "prices", "price entries and price resolution in pricing")
    parser = leaf(
        group,
        "import",
        command(_import, default_timeout=3600),
        "import price entries from CSV into a new DRAFT change set (columns: price_list_id, sku, "
        "amount, currency_code, start_time; optional: end_time, min_quantity)",
    )
    add_import_options(parser)
    parser.add_argument("--description", default="", help="description of the change set")
    parser = leaf(
        group,
        "explain",
        command(_explain),
        "every candidate entry of a SKU, the rule that removed it, and the winner (exit 1: no price)",
    )
    parser.add_argument("sku")
    parser.add_argument("--currency", required=True, help="ISO 4217 code, e.g. EUR")
    parser.add_argument("--channel", help="channel id")
    parser.add_argument("--location", help="location id (its region and time zone apply)")
    parser.add_argument("--region", help="region id (when no location is given)")
    parser.add_argument("--segment", help="customer segment")
    parser.add_argument("--quantity", type=int, help="units bought (quantity tiers)")
    parser.add_argument("--at", help="instant, RFC 3339 (default: now)")
