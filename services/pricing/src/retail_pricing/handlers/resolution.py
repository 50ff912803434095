"""ResolvePrice, BatchResolvePrices, ExplainPrice, GetPriceHistory: served from the in-memory catalog."""

from __future__ import annotations

from datetime import datetime, timedelta

from retail.pricing.v1 import pricing_service_pb2 as pb
from retail.pricing.v1 import resolution_pb2
from retail_common.grpcx import audit_page
from retail_pricing.catalog import SkuData
from retail_pricing.convert import (
    amounts_to_proto,
    bare_price_list_to_proto,
    decimal_to_proto,
    entry_to_proto,
    fill_resolved,
    resolved_to_proto,
    timestamp,
    timestamp_to_proto,
)
from retail_pricing.domain.errors import NotFoundError, RuleError, Violation
from retail_pricing.domain.model import PriceQuery, checked_query
from retail_pricing.domain.money import MINOR_UNITS, is_currency
from retail_pricing.domain.pricer import Pricer, Resolved
from retail_pricing.domain.products import ID_PATTERN, validate_id
from retail_pricing.domain.resolution import Outcome
from retail_pricing.handlers.common import Deps, raise_if

__all__ = [
    "MAX_BATCH_QUERIES",
    "batch_resolve_prices",
    "explain_price",
    "get_price_history",
    "list_audit_records",
    "resolve_price",
]

MAX_BATCH_QUERIES = 1000
MAX_HISTORY = timedelta(days=400)
_OUTCOMES = {o: getattr(resolution_pb2, f"CANDIDATE_OUTCOME_{o.name}") for o in Outcome}


def query_from_proto(
    deps: Deps, q: resolution_pb2.PriceQuery, path: str, problems: list[Violation]
) -> PriceQuery:
    problems += validate_id(q.sku, f"{path}.sku")
    if not is_currency(q.currency_code):
        problems.append(Violation(f"{path}.currency_code", f"unknown ISO 4217 currency {q.currency_code!r}"))
    if q.quantity < 0:
        problems.append(Violation(f"{path}.quantity", "must not be negative"))
    at = timestamp(q.at_time) if q.HasField("at_time") else deps.clock.now()
    return PriceQuery(
        sku=q.sku,
        currency=q.currency_code,
        at=at,
        channel_id=q.channel_id,
        location_id=q.location_id,
        region_id=q.region_id,
        customer_segment=q.customer_segment,
        quantity=max(1, q.quantity),
    )


def _resolve(pricer: Pricer, query: PriceQuery, data: SkuData, path: str) -> Resolved:
    if data.product is None:
        raise_if([Violation(f"{path}.sku", f"unknown SKU {query.sku!r}")])
    assert data.product is not None
    resolved = pricer.resolve(query, data.product, data.entries)
    if resolved is None:
        raise NotFoundError("price", f"{query.sku} in {query.currency} at {query.at.isoformat()}")
    return resolved


async def resolve_price(deps: Deps, request: pb.ResolvePriceRequest) -> pb.ResolvePriceResponse:
    problems: list[Violation] = []
    query = query_from_proto(deps, request.query, "query", problems)
    raise_if(problems)
    pricer = await deps.catalog.pricer()
    data = (await deps.catalog.skus([query.sku]))[query.sku]
    response = pb.ResolvePriceResponse()
    fill_resolved(response.price, _resolve(pricer, query, data, "query"))  # in place: no second copy
    return response


# SKUs that passed the ID check (bounded; cleared wholesale beyond): most batches repeat known SKUs, and a
# set lookup costs a tenth of the regular expression.
_VALID_SKUS: set[str] = set()
_VALID_SKUS_BOUND = 500_000


def _batch_query(
    deps: Deps, q: resolution_pb2.PriceQuery, i: int, now: datetime, problems: list[Violation]
) -> PriceQuery:
    """`query_from_proto` for a batch's query: the checks first, the violations' paths only if one fails."""
    sku, currency, quantity = q.sku, q.currency_code, q.quantity
    if sku not in _VALID_SKUS:
        if ID_PATTERN.match(sku) is None:
            return query_from_proto(deps, q, f"queries[{i}]", problems)
        if len(_VALID_SKUS) >= _VALID_SKUS_BOUND:
            _VALID_SKUS.clear()
        _VALID_SKUS.add(sku)
    if currency not in MINOR_UNITS or quantity < 0:
        return query_from_proto(deps, q, f"queries[{i}]", problems)
    at = timestamp(q.at_time) if q.HasField("at_time") else now
    return checked_query(
        sku, currency, at, q.channel_id, q.location_id, q.region_id, q.customer_segment, quantity or 1
    )


async def batch_resolve_prices(
    deps: Deps, request: pb.BatchResolvePricesRequest
) -> pb.BatchResolvePricesResponse:
    if not 1 <= len(request.queries) <= MAX_BATCH_QUERIES:
        raise_if([Violation("queries", f"1 to {MAX_BATCH_QUERIES} queries")])
    problems: list[Violation] = []
    now = deps.clock.now()  # one reading: the batch's queries without an instant resolve at the same one
    queries = [_batch_query(deps, q, i, now, problems) for i, q in enumerate(request.queries)]
    raise_if(problems)
    pricer = await deps.catalog.pricer()
    # Each query's SKU data from the cache as it is now, the misses loaded in one round trip (a list
    # beside the queries: no per-batch dict of the hits).
    cached = deps.catalog.cached_skus()
    found = [cached.get(q.sku) for q in queries]
    if any(d is None for d in found):
        loaded = await deps.catalog.skus([q.sku for q, d in zip(queries, found, strict=True) if d is None])
        found = [loaded[q.sku] if d is None else d for q, d in zip(queries, found, strict=True)]
    response = pb.BatchResolvePricesResponse()
    add = response.results.add
    resolve = pricer.resolve
    for query, sku_data in zip(queries, found, strict=True):
        result = add()
        assert sku_data is not None
        if sku_data.product is None:
            result.error.code, result.error.message = "INVALID_ARGUMENT", f"unknown SKU {query.sku!r}"
            continue
        try:
            resolved = resolve(query, sku_data.product, sku_data.entries)
        except RuleError as exc:
            result.error.code, result.error.message = "FAILED_PRECONDITION", exc.description
            continue
        if resolved is None:
            result.error.code, result.error.message = "NOT_FOUND", "no price applies"
        else:
            fill_resolved(result.price, resolved)
    return response


async def explain_price(deps: Deps, request: pb.ExplainPriceRequest) -> pb.ExplainPriceResponse:
    problems: list[Violation] = []
    query = query_from_proto(deps, request.query, "query", problems)
    raise_if(problems)
    pricer = await deps.catalog.pricer()
    data = (await deps.catalog.skus([query.sku]))[query.sku]
    if data.product is None:
        raise_if([Violation("query.sku", f"unknown SKU {query.sku!r}")])
    assert data.product is not None
    resolution, resolved, rate = pricer.explain(query, data.product, data.entries)
    candidates = []
    for c in resolution.candidates:
        currency = c.price_list.currency if c.price_list else query.currency
        candidates.append(
            resolution_pb2.PriceCandidate(
                entry=entry_to_proto(c.entry, currency),
                price_list=None if c.price_list is None else bare_price_list_to_proto(c.price_list),
                outcome=_OUTCOMES[c.outcome],
                detail=c.detail,
            )
        )
    return pb.ExplainPriceResponse(
        price=None if resolved is None else resolved_to_proto(resolved),
        candidates=candidates,
        tax_rate=decimal_to_proto(rate),
    )


async def get_price_history(deps: Deps, request: pb.GetPriceHistoryRequest) -> pb.GetPriceHistoryResponse:
    problems: list[Violation] = []
    query = query_from_proto(deps, request.query, "query", problems)
    if not request.HasField("start_time"):
        problems.append(Violation("start_time", "required"))
    if not request.HasField("end_time"):
        problems.append(Violation("end_time", "required"))
    raise_if(problems)
    start, end = timestamp(request.start_time), timestamp(request.end_time)
    if end <= start:
        raise_if([Violation("end_time", "must be after start_time")])
    if end - start > MAX_HISTORY:
        raise_if([Violation("end_time", "at most 400 days after start_time")])
    pricer = await deps.catalog.pricer()
    data = (await deps.catalog.skus([query.sku]))[query.sku]
    if data.product is None:
        raise_if([Violation("query.sku", f"unknown SKU {query.sku!r}")])
    assert data.product is not None
    periods = []
    for p in pricer.history(query, data.product, data.entries, start, end):
        winner = p.period.winner
        periods.append(
            resolution_pb2.PricePeriod(
                start_time=timestamp_to_proto(p.period.start),
                end_time=timestamp_to_proto(p.period.end),
                price=None if p.amounts is None else amounts_to_proto(p.amounts, query.currency),
                entry_id=0 if winner is None else winner.entry.entry_id,
                price_list_id="" if winner is None else winner.entry.price_list_id,
            )
        )
    return pb.GetPriceHistoryResponse(periods=periods)


async def list_audit_records(deps: Deps, request: pb.ListAuditRecordsRequest) -> pb.ListAuditRecordsResponse:
    async with deps.pool.acquire() as conn:
        records, token = await audit_page(
            conn,
            entity_type=request.entity_type,
            entity_key=request.entity_key,
            page_size=request.page_size,
            page_token=request.page_token,
        )
    return pb.ListAuditRecordsResponse(records=records, next_page_token=token)
