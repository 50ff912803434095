"""Handlers on a real Postgres: products, price lists, change sets, resolution, events and audit."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from google.type import decimal_pb2

from retail.pricing.v1 import change_sets_pb2, events_pb2, price_lists_pb2, resolution_pb2
from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_common.errors import InvalidArgument
from retail_pricing.domain.errors import BadInputError, ConflictError, ForbiddenError, RuleError
from retail_pricing.handlers import change_sets as cs
from retail_pricing.handlers import price_lists as pl
from retail_pricing.handlers import products as products_h
from retail_pricing.handlers import resolution as res
from retail_pricing.handlers import tax_rates as tax_rates_h
from retail_pricing.testing import add, as_decimal, end, price_list, product, query, ts

from .conftest import START, approve

DAY = timedelta(days=1)
MARKDOWN = price_lists_pb2.PRICE_LIST_KIND_MARKDOWN


async def setup_catalog(deps, *skus: str, **product_kwargs) -> None:
    await products_h.batch_upsert_products(
        deps,
        pb.BatchUpsertProductsRequest(
            request_id="p-setup", products=[product(s, **product_kwargs) for s in skus]
        ),
    )
    await pl.create_price_list(
        deps, pb.CreatePriceListRequest(request_id="l-base", price_list=price_list("base"))
    )
    await pl.create_price_list(
        deps, pb.CreatePriceListRequest(request_id="l-md", price_list=price_list("markdown", MARKDOWN))
    )


async def gross(deps, sku: str, at=None) -> Decimal:
    resolved = await res.resolve_price(deps, pb.ResolvePriceRequest(query=query(sku, at)))
    return as_decimal(resolved.price.price.gross)


async def outbox(pool, event_type: str) -> list:
    return await pool.fetch(
        "select aggregate_key, aggregate_version, payload from outbox where event_type = $1 order by id",
        f"retail.pricing.v1.{event_type}",
    )


async def test_approved_change_set_sets_the_price_emits_versioned_events_and_audits(
    deps, acting, pool, clock
) -> None:
    await setup_catalog(deps, "A")
    first = await approve(deps, acting, "cs1", add("base", "A", "10.00", START))
    assert first.change_set.state == change_sets_pb2.CHANGE_SET_STATE_APPROVED
    assert first.change_set.author_id == "alice"
    assert first.change_set.reviewer_id == "bob"
    assert await gross(deps, "A") == Decimal("10.00")

    entry_id = first.created_entries[0].entry_id
    await clock.advance(DAY)
    await approve(deps, acting, "cs2", end(entry_id), add("base", "A", "12.00", START))
    assert await gross(deps, "A") == Decimal("12.00")
    # The past is not rewritten: the start was clamped to the approval, the old price still answers before.
    assert await gross(deps, "A", START + DAY - timedelta(microseconds=1)) == Decimal("10.00")

    events = await outbox(pool, "PriceChanged")
    assert [(r["aggregate_key"], r["aggregate_version"]) for r in events] == [("A", 1), ("A", 2)]
    payloads = [events_pb2.PriceChanged.FromString(r["payload"]) for r in events]
    assert [p.version for p in payloads] == [1, 2]
    assert payloads[0].cause == events_pb2.PRICE_CHANGE_CAUSE_APPROVAL
    assert len(payloads[0].affected_scopes) == 1  # global list: one global scope

    audit = await res.list_audit_records(
        deps,
        pb.ListAuditRecordsRequest(
            entity_type="retail.pricing.v1.ChangeSet", entity_key=first.change_set.change_set_id
        ),
    )
    actions = [r.action.rsplit("/", 1)[1] for r in audit.records]
    assert actions == ["ApproveChangeSet", "SubmitChangeSet", "CreateChangeSet"]
    assert audit.records[0].principal_id == "bob"
    assert audit.records[0].before["state"] == "CHANGE_SET_STATE_SUBMITTED"
    assert audit.records[0].after["state"] == "CHANGE_SET_STATE_APPROVED"


async def test_author_cannot_approve_and_nothing_changes(deps, acting, pool) -> None:
    await setup_catalog(deps, "A")
    created = await cs.create_change_set(
        deps,
        pb.CreateChangeSetRequest(
            request_id="c", change_set=change_sets_pb2.ChangeSet(items=[add("base", "A", "1", START)])
        ),
    )
    submitted = await cs.submit_change_set(
        deps,
        pb.SubmitChangeSetRequest(
            request_id="s", change_set_id=created.change_set.change_set_id, etag=created.change_set.etag
        ),
    )
    with pytest.raises(ForbiddenError):
        await cs.approve_change_set(
            deps,
            pb.ApproveChangeSetRequest(
                request_id="a",
                change_set_id=submitted.change_set.change_set_id,
                etag=submitted.change_set.etag,
            ),
        )
    assert await pool.fetchval("select count(*) from price_entries") == 0
    assert await pool.fetchval("select state from change_sets") == "submitted"


async def test_overlapping_window_is_refused_by_the_database(deps, acting, pool) -> None:
    await setup_catalog(deps, "A")
    await approve(deps, acting, "cs1", add("base", "A", "10.00", START, START + 10 * DAY))
    with pytest.raises(RuleError, match="ENTRY_OVERLAP"):
        await approve(deps, acting, "cs2", add("base", "A", "9.00", START + 5 * DAY))
    assert await pool.fetchval("select count(*) from price_entries") == 1
    assert await pool.fetchval("select count(*) from change_sets where state = 'approved'") == 1
    # Back-to-back windows are fine (half-open).
    await approve(deps, acting, "cs3", add("base", "A", "9.00", START + 10 * DAY))
    assert await pool.fetchval("select count(*) from price_entries") == 2


async def test_unknown_or_inactive_sku_and_wrong_currency_are_invalid_and_change_nothing(
    deps, acting, pool
) -> None:
    await setup_catalog(deps, "A")
    await products_h.batch_upsert_products(
        deps, pb.BatchUpsertProductsRequest(request_id="p-off", products=[product("OFF", active=False)])
    )
    items = [
        add("base", "NOPE", "1", START),
        add("base", "OFF", "1", START),
        add("base", "A", "1", START, currency="USD"),
    ]
    with pytest.raises(BadInputError) as caught:
        await cs.create_change_set(
            deps, pb.CreateChangeSetRequest(request_id="c", change_set=change_sets_pb2.ChangeSet(items=items))
        )
    fields = [v.subject for v in caught.value.violations]
    assert fields == [
        "change_set.items[0].add_entry.sku",
        "change_set.items[1].add_entry.sku",
        "change_set.items[2].add_entry.amount.currency_code",
    ]
    assert await pool.fetchval("select count(*) from change_sets") == 0


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (add("base", "A", "-1", START), "change_set.items[0].add_entry.amount"),
        (add("base", "A", "1", START, currency="EURO"), "change_set.items[0].add_entry.amount.currency_code"),
        (add("base", "A", "1", START, START - DAY), "change_set.items[0].add_entry.window.absolute.end_time"),
    ],
)
async def test_bad_item_names_the_field(deps, acting, pool, item, field) -> None:
    await setup_catalog(deps, "A")
    with pytest.raises(BadInputError) as caught:
        await cs.create_change_set(
            deps,
            pb.CreateChangeSetRequest(request_id="c", change_set=change_sets_pb2.ChangeSet(items=[item])),
        )
    assert [v.subject for v in caught.value.violations] == [field]
    assert await pool.fetchval("select count(*) from change_sets") == 0


async def test_request_id_retry_returns_first_result_and_reuse_is_refused(deps, acting, pool) -> None:
    request = pb.BatchUpsertProductsRequest(request_id="r1", products=[product("A")])
    first = await products_h.batch_upsert_products(deps, request)
    again = await products_h.batch_upsert_products(deps, request)
    assert again == first
    assert await pool.fetchval("select version from products where sku = 'A'") == 1
    assert len(await outbox(pool, "ProductUpserted")) == 1
    with pytest.raises(InvalidArgument) as caught:
        await products_h.batch_upsert_products(
            deps, pb.BatchUpsertProductsRequest(request_id="r1", products=[product("B")])
        )
    assert caught.value.violations[0].field == "request_id"
    assert caught.value.reason == "IDEMPOTENCY_KEY_REUSED"
    assert await pool.fetchval("select count(*) from products") == 1


async def test_unchanged_product_upsert_emits_nothing_and_changed_one_bumps_version(
    deps, acting, pool
) -> None:
    await products_h.batch_upsert_products(
        deps, pb.BatchUpsertProductsRequest(request_id="1", products=[product("A")])
    )
    await products_h.batch_upsert_products(
        deps, pb.BatchUpsertProductsRequest(request_id="2", products=[product("A")])
    )
    changed = product("A")
    changed.title = "renamed"
    out = await products_h.batch_upsert_products(
        deps, pb.BatchUpsertProductsRequest(request_id="3", products=[changed])
    )
    assert out.products[0].version == 2
    rows = await outbox(pool, "ProductUpserted")
    assert [r["aggregate_version"] for r in rows] == [1, 2]


async def test_too_many_products_is_invalid(deps, acting) -> None:
    with pytest.raises(BadInputError) as caught:
        await products_h.batch_upsert_products(
            deps,
            pb.BatchUpsertProductsRequest(request_id="x", products=[product(f"S{i}") for i in range(1001)]),
        )
    assert caught.value.violations[0].subject == "products"


async def test_price_list_etag_conflict(deps, acting) -> None:
    created = await pl.create_price_list(
        deps, pb.CreatePriceListRequest(request_id="l", price_list=price_list("base"))
    )
    update = price_list_pb = created.price_list
    update.display_name = "Base EUR"
    ok = await pl.update_price_list(deps, pb.UpdatePriceListRequest(request_id="u1", price_list=update))
    assert ok.price_list.etag != created.price_list.etag
    stale = price_list_pb
    stale.display_name = "stale write"
    stale.etag = created.price_list.etag
    with pytest.raises(ConflictError):
        await pl.update_price_list(deps, pb.UpdatePriceListRequest(request_id="u2", price_list=stale))


async def test_change_set_etag_conflict_on_submit(deps, acting) -> None:
    await setup_catalog(deps, "A")
    created = await cs.create_change_set(
        deps,
        pb.CreateChangeSetRequest(
            request_id="c", change_set=change_sets_pb2.ChangeSet(items=[add("base", "A", "1", START)])
        ),
    )
    with pytest.raises(ConflictError):
        await cs.submit_change_set(
            deps,
            pb.SubmitChangeSetRequest(
                request_id="s", change_set_id=created.change_set.change_set_id, etag="999"
            ),
        )


async def test_guardrail_below_cost_blocks_submit_and_warnings_are_recorded(deps, acting) -> None:
    await setup_catalog(deps, "A", cost="5.00", map_price="8.00")
    await approve(deps, acting, "base", add("base", "A", "10.00", START))
    below_cost = await cs.create_change_set(
        deps,
        pb.CreateChangeSetRequest(
            request_id="c1", change_set=change_sets_pb2.ChangeSet(items=[add("markdown", "A", "4.00", START)])
        ),
    )
    with pytest.raises(RuleError, match="below_cost_floor"):
        await cs.submit_change_set(
            deps,
            pb.SubmitChangeSetRequest(
                request_id="s1",
                change_set_id=below_cost.change_set.change_set_id,
                etag=below_cost.change_set.etag,
            ),
        )
    below_map = await cs.create_change_set(
        deps,
        pb.CreateChangeSetRequest(
            request_id="c2", change_set=change_sets_pb2.ChangeSet(items=[add("markdown", "A", "7.00", START)])
        ),
    )
    submitted = await cs.submit_change_set(
        deps,
        pb.SubmitChangeSetRequest(
            request_id="s2", change_set_id=below_map.change_set.change_set_id, etag=below_map.change_set.etag
        ),
    )
    assert [(f.kind, f.severity) for f in submitted.change_set.findings] == [
        (
            change_sets_pb2.GUARDRAIL_KIND_BELOW_MINIMUM_ADVERTISED_PRICE,
            change_sets_pb2.GUARDRAIL_SEVERITY_WARNING,
        )
    ]


async def test_preview_shows_old_new_and_percent(deps, acting) -> None:
    await setup_catalog(deps, "A")
    await approve(deps, acting, "base", add("base", "A", "10.00", START))
    draft = await cs.create_change_set(
        deps,
        pb.CreateChangeSetRequest(
            request_id="c",
            change_set=change_sets_pb2.ChangeSet(items=[add("markdown", "A", "7.50", START + DAY)]),
        ),
    )
    preview = await cs.preview_change_set(
        deps, pb.PreviewChangeSetRequest(change_set_id=draft.change_set.change_set_id)
    )
    assert len(preview.diffs) == 1
    diff = preview.diffs[0]
    assert (as_decimal(diff.old_price.gross), as_decimal(diff.new_price.gross)) == (
        Decimal("10.00"),
        Decimal("7.50"),
    )
    assert diff.change_percent.value == "-25.00"


async def test_revert_restores_previous_price_from_the_revert_on(deps, acting, clock) -> None:
    await setup_catalog(deps, "A")
    base = await approve(deps, acting, "base", add("base", "A", "10.00", START))
    await clock.advance(DAY)
    change = await approve(
        deps, acting, "chg", end(base.created_entries[0].entry_id), add("base", "A", "15.00", START)
    )
    assert await gross(deps, "A") == Decimal("15.00")
    await clock.advance(DAY)
    acting.as_("carol")
    revert = await cs.revert_change_set(
        deps, pb.RevertChangeSetRequest(request_id="rv", change_set_id=change.change_set.change_set_id)
    )
    assert revert.change_set.reverts_change_set_id == change.change_set.change_set_id
    submitted = await cs.submit_change_set(
        deps,
        pb.SubmitChangeSetRequest(
            request_id="rv-s", change_set_id=revert.change_set.change_set_id, etag=revert.change_set.etag
        ),
    )
    acting.as_("bob")
    await cs.approve_change_set(
        deps,
        pb.ApproveChangeSetRequest(
            request_id="rv-a",
            change_set_id=submitted.change_set.change_set_id,
            etag=submitted.change_set.etag,
        ),
    )
    assert await gross(deps, "A") == Decimal("10.00")
    # The day the change was live keeps its price in history.
    assert await gross(deps, "A", START + DAY + timedelta(hours=12)) == Decimal("15.00")
    assert await gross(deps, "A", START + timedelta(hours=12)) == Decimal("10.00")


async def test_valid_from_before_approval_is_clamped(deps, acting, clock) -> None:
    await setup_catalog(deps, "A")
    await clock.advance(DAY)
    done = await approve(deps, acting, "cs", add("base", "A", "10.00", START - 30 * DAY))
    start = done.created_entries[0].window.absolute.start_time.ToDatetime().replace(tzinfo=clock.now().tzinfo)
    assert start == clock.now()


async def test_deactivating_a_list_changes_prices_and_announces_each_sku(deps, acting, pool) -> None:
    await setup_catalog(deps, "A", "B")
    await approve(deps, acting, "base", add("base", "A", "10.00", START), add("base", "B", "11.00", START))
    await approve(deps, acting, "md", add("markdown", "A", "8.00", START))
    assert await gross(deps, "A") == Decimal("8.00")
    current = await pl.get_price_list(deps, pb.GetPriceListRequest(price_list_id="markdown"))
    update = current.price_list
    update.status = price_lists_pb2.PRICE_LIST_STATUS_INACTIVE
    await pl.update_price_list(deps, pb.UpdatePriceListRequest(request_id="off", price_list=update))
    assert await gross(deps, "A") == Decimal("10.00")
    changes = [events_pb2.PriceChanged.FromString(r["payload"]) for r in await outbox(pool, "PriceChanged")]
    configuration = [c for c in changes if c.cause == events_pb2.PRICE_CHANGE_CAUSE_CONFIGURATION]
    assert [(c.sku, c.version) for c in configuration] == [("A", 3)]  # B has no markdown entry
    # A rename alone changes no price and announces nothing.
    renamed = (await pl.get_price_list(deps, pb.GetPriceListRequest(price_list_id="markdown"))).price_list
    renamed.display_name = "old markdown"
    await pl.update_price_list(deps, pb.UpdatePriceListRequest(request_id="rename", price_list=renamed))
    assert len(await outbox(pool, "PriceChanged")) == len(changes)


async def test_price_history_and_explain_through_the_handlers(deps, acting, clock) -> None:
    await setup_catalog(deps, "A")
    await approve(deps, acting, "base", add("base", "A", "10.00", START))
    await approve(deps, acting, "md", add("markdown", "A", "8.00", START + DAY, START + 2 * DAY))
    history = await res.get_price_history(
        deps,
        pb.GetPriceHistoryRequest(query=query("A"), start_time=ts(START - DAY), end_time=ts(START + 3 * DAY)),
    )
    assert [
        (
            p.start_time.ToDatetime().day,
            p.end_time.ToDatetime().day,
            as_decimal(p.price.gross) if p.HasField("price") else None,
        )
        for p in history.periods
    ] == [(28, 1, None), (1, 2, Decimal("10.00")), (2, 3, Decimal("8.00")), (3, 4, Decimal("10.00"))]
    explained = await res.explain_price(deps, pb.ExplainPriceRequest(query=query("A", START + DAY)))
    assert [c.outcome for c in explained.candidates] == [
        resolution_pb2.CANDIDATE_OUTCOME_LOWER_PRIORITY,
        resolution_pb2.CANDIDATE_OUTCOME_WINNER,
    ]
    assert as_decimal(explained.price.reference_price.gross) == Decimal("10.00")
    with pytest.raises(BadInputError) as caught:
        await res.get_price_history(
            deps, pb.GetPriceHistoryRequest(query=query("A"), start_time=ts(START), end_time=ts(START - DAY))
        )
    assert [v.subject for v in caught.value.violations] == ["end_time"]


async def test_tax_rate_change_moves_net_gross_and_announces_priced_skus(deps, acting, pool) -> None:
    await setup_catalog(deps, "A", "B")
    await approve(deps, acting, "base", add("base", "A", "11.90", START))
    rate = price_lists_pb2.TaxRate(region_id="", tax_class="standard", rate=decimal_pb2.Decimal(value="0.19"))
    await tax_rates_h.set_tax_rate(deps, pb.SetTaxRateRequest(request_id="t1", tax_rate=rate))
    resolved = await res.resolve_price(deps, pb.ResolvePriceRequest(query=query("A")))
    assert (as_decimal(resolved.price.price.net), as_decimal(resolved.price.price.gross)) == (
        Decimal("10.00"),
        Decimal("11.90"),
    )
    changes = [events_pb2.PriceChanged.FromString(r["payload"]) for r in await outbox(pool, "PriceChanged")]
    assert [(c.sku, c.cause) for c in changes][-1] == ("A", events_pb2.PRICE_CHANGE_CAUSE_CONFIGURATION)
    assert "B" not in {c.sku for c in changes}  # no price, nothing to announce
