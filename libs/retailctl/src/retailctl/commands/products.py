"""`retailctl products import FILE.csv`: the ERP's product master into pricing (ImportProducts stream).

CSV columns: sku, tax_class (required); title, status (ACTIVE | INACTIVE, default ACTIVE), categories
(";"-separated, most general first), cost_price and minimum_advertised_price ("12.50 EUR"), and any
`attr:<name>` column as attribute <name>. The stream is applied all or nothing by the service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from retail.pricing.v1 import pricing_service_pb2 as pb
from retail.pricing.v1 import pricing_service_pb2_grpc, products_pb2
from retailctl.commands._shared import Commands, add_import_options, leaf, noun, request_id
from retailctl.csvinput import CsvFile, RowError, indexed_field
from retailctl.errors import ExitCode
from retailctl.output import message_dict
from retailctl.progress import Progress
from retailctl.runner import Context, command
from retailctl.values import money

__all__ = ["parse_product", "register"]

REQUIRED = ("sku", "tax_class")
OPTIONAL = ("title", "status", "categories", "cost_price", "minimum_advertised_price", "attr:<name>")
PER_MESSAGE = 1000  # the contract's maximum per message
_STATUS = {"ACTIVE": products_pb2.PRODUCT_STATUS_ACTIVE, "INACTIVE": products_pb2.PRODUCT_STATUS_INACTIVE}


def parse_product(row: dict[str, str]) -> products_pb2.Product:
    if not row.get("sku"):
        raise RowError("sku", "required")
    if not row.get("tax_class"):
        raise RowError("tax_class", "required")
    status = (row.get("status") or "ACTIVE").upper()
    if status not in _STATUS:
        raise RowError("status", f"{row['status']!r} is not ACTIVE or INACTIVE")
    product = products_pb2.Product(
        sku=row["sku"],
        title=row.get("title", ""),
        status=_STATUS[status],
        tax_class=row["tax_class"],
        category_ids=[c.strip() for c in row.get("categories", "").split(";") if c.strip()],
        attributes={k.removeprefix("attr:"): v for k, v in row.items() if k.startswith("attr:") and v},
    )
    for column in ("cost_price", "minimum_advertised_price"):
        if row.get(column):
            getattr(product, column).CopyFrom(money(row[column], column))
    return product


async def _import(ctx: Context) -> ExitCode:
    source = CsvFile(ctx.args.file, required=REQUIRED, optional=OPTIONAL)
    total = source.validate(parse_product)
    rows_sent: list[int] = []  # product i of the stream came from CSV row rows_sent[i]

    def name_field(path: str) -> str | None:
        found = indexed_field(path, "products")
        if found is None or found[0] >= len(rows_sent):
            return None
        return f"row {rows_sent[found[0]]}, column {found[1]}"

    ctx.name_field = name_field
    ctx.subject = str(source.path)
    progress = Progress("importing products", total, enabled=ctx.progress_enabled)
    key = request_id(ctx.args)

    async def messages() -> AsyncIterator[pb.ImportProductsRequest]:
        batch: list[products_pb2.Product] = []
        for number, row in source.rows():
            batch.append(parse_product(row))
            rows_sent.append(number)
            if len(batch) == PER_MESSAGE:
                yield pb.ImportProductsRequest(request_id=key, products=batch)
                progress.advance(len(batch))
                batch = []
        if batch or not rows_sent:
            yield pb.ImportProductsRequest(request_id=key, products=batch)
            progress.advance(len(batch))

    stub = pricing_service_pb2_grpc.PricingServiceStub(ctx.channel("pricing"))
    with progress:
        response = await stub.ImportProducts(messages())
        progress.finish("applied")
    if ctx.out.as_json:
        ctx.out.json({"request_id": key, **message_dict(response)})
    else:
        ctx.out.fields(
            [
                ("received", response.received_count),
                ("changed", response.changed_count),
                ("request id", key),
            ]
        )
    return ExitCode.OK


def register(commands: Commands) -> None:
    group = noun(commands, "products", "the product master in pricing")
    parser = leaf(
        group,
        "import",
        command(_import, default_timeout=3600),
        "import products from CSV (columns: sku, tax_class; optional: " + ", ".join(OPTIONAL) + ")",
    )
    add_import_options(parser)
