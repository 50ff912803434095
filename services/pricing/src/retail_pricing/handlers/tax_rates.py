"""Effective-dated tax rates: SetTaxRate (now or scheduled) and ListTaxRates (current + scheduled, or
the whole history)."""

from __future__ import annotations

from retail.pricing.v1 import events_pb2, price_lists_pb2
from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_common.db import Connection
from retail_pricing import events
from retail_pricing.convert import decimal_from_proto, decimal_to_proto, timestamp, timestamp_to_proto
from retail_pricing.domain.errors import Violation
from retail_pricing.domain.preview import Probe
from retail_pricing.domain.tax_rates import SINCE_ALWAYS
from retail_pricing.handlers.common import Deps, audit, raise_if, run_idempotent
from retail_pricing.repository import entries as entries_repo
from retail_pricing.repository import tax_rates as repo

__all__ = ["ENTITY", "list_tax_rates", "set_tax_rate", "tax_rate_to_proto"]

ENTITY = "retail.pricing.v1.TaxRate"


def tax_rate_to_proto(stored: repo.StoredTaxRate) -> price_lists_pb2.TaxRate:
    return price_lists_pb2.TaxRate(
        region_id=stored.region_id,
        tax_class=stored.tax_class,
        rate=decimal_to_proto(stored.rate),
        update_time=timestamp_to_proto(stored.updated_at),
        effective_time=(
            None if stored.effective_at == SINCE_ALWAYS else timestamp_to_proto(stored.effective_at)
        ),
    )


async def set_tax_rate(deps: Deps, request: pb.SetTaxRateRequest) -> pb.SetTaxRateResponse:
    problems: list[Violation] = []
    rate_in = request.tax_rate
    if not rate_in.tax_class:
        problems.append(Violation("tax_rate.tax_class", "required"))
    rate = decimal_from_proto(rate_in.rate, "tax_rate.rate", problems)
    if rate is not None and not 0 <= rate <= 1:
        problems.append(Violation("tax_rate.rate", "must be a fraction between 0 and 1"))
    requested = timestamp(rate_in.effective_time) if rate_in.HasField("effective_time") else None
    raise_if(problems)
    assert rate is not None
    region, tax_class = rate_in.region_id, rate_in.tax_class
    scheduled = False

    async def body(conn: Connection) -> pb.SetTaxRateResponse:
        nonlocal scheduled
        now = deps.clock.now()
        # Checked against the transaction's clock reading (not before it), so an instant that was
        # still ahead when the request arrived is never written after it passed.
        if requested is not None and requested < now:
            raise_if(
                [
                    Violation(
                        "tax_rate.effective_time",
                        "must not be in the past (history is not rewritten); leave empty for now",
                    )
                ]
            )
        effective = now if requested is None else requested
        before = await repo.rate_at(conn, region, tax_class, effective)
        stored = await repo.set_tax_rate(conn, region, tax_class, rate, effective, now)
        out = tax_rate_to_proto(stored)
        scheduled = effective > now
        if before != rate:
            # Net/gross of the priced SKUs of the class move at `effective`: announced now, like an
            # approval of a future-dated entry (channels with a lead time deliver ahead); a scheduled
            # rate is announced again at its instant by the activation scheduler (ACTIVATION).
            scope = frozenset({Probe(region_id=region)})
            skus = await entries_repo.priced_skus_of_tax_class(conn, tax_class)
            await events.price_changed_many(
                deps.writer,
                conn,
                [
                    events.PriceChange(sku, scope, effective, events_pb2.PRICE_CHANGE_CAUSE_CONFIGURATION)
                    for sku in skus
                ],
            )
        previous = (
            None
            if before is None
            else price_lists_pb2.TaxRate(region_id=region, tax_class=tax_class, rate=decimal_to_proto(before))
        )
        await audit(conn, "SetTaxRate", ENTITY, f"{region}/{tax_class}", previous, out)
        await events.tax_rate_changed(deps.writer, conn, out)
        return pb.SetTaxRateResponse(tax_rate=out)

    response = await run_idempotent(
        deps, "SetTaxRate", request.request_id, request, pb.SetTaxRateResponse, body
    )
    deps.catalog.invalidate_config()
    if scheduled:  # a new due instant: this replica's scheduler may sleep past it otherwise
        deps.on_scheduled()
    return response


async def list_tax_rates(deps: Deps, request: pb.ListTaxRatesRequest) -> pb.ListTaxRatesResponse:
    async with deps.pool.acquire() as conn:
        rows = await repo.list_tax_rates(conn, deps.clock.now(), superseded=request.show_superseded)
    return pb.ListTaxRatesResponse(tax_rates=[tax_rate_to_proto(r) for r in rows])
