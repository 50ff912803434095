"""`retailctl products|prices|audit` against a real pricing service process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from retail.pricing.v1 import pricing_service_pb2 as pb
from retail.pricing.v1 import pricing_service_pb2_grpc
from retail_common.grpcx import connect
from retail_pricing.service import APPROVER_ROLE, OPERATOR_ROLE
from retail_pricing.testing import price_list

from .conftest import Cli, operator_key

ROLES = (OPERATOR_ROLE, APPROVER_ROLE)
PRODUCT_TYPE = "retail.pricing.v1.Product"
PRODUCTS = 2500  # three ImportProducts messages of at most 1000


@pytest.fixture
async def pricing(start_service, service_env, cli: Cli):
    service = await start_service("retail_pricing", service_env)
    cli.target("pricing", service.address)
    return service


@pytest.fixture
async def keys(pricing, pool):
    return await operator_key(pool, "alice", ROLES), await operator_key(pool, "bob", ROLES)


def write_products(path: Path, count: int) -> Path:
    rows = [
        f"P{i:05},Product {i},active,standard,apparel;apparel/shirts,10.00 EUR,blue" for i in range(count)
    ]
    path.write_text("sku,title,status,tax_class,categories,cost_price,attr:colour\n" + "\n".join(rows) + "\n")
    return path


async def test_import_products_and_prices_then_explain(pricing, keys, cli: Cli, tmp_path: Path) -> None:
    alice, bob = keys
    cli.key(alice)
    imported = await cli("products", "import", str(write_products(tmp_path / "p.csv", PRODUCTS)), "--json")
    assert imported.code == 0, imported.err
    document = imported.json()
    assert (document["received_count"], document["changed_count"]) == (str(PRODUCTS), str(PRODUCTS))
    # progress on stderr (not a TTY here: a line per tenth, then the final count)
    assert f"{PRODUCTS:,}/{PRODUCTS:,} rows sent (100%)" in imported.err
    assert "rows sent (40%)" in imported.err

    # the same file again with the same request id: the service answers the first result
    again = await cli(
        "products", "import", str(tmp_path / "p.csv"), "--request-id", document["request_id"], "--json"
    )
    assert again.code == 0
    assert again.json()["changed_count"] == str(PRODUCTS)

    # a price list (no CLI command creates one), then a price file into a DRAFT change set
    async with connect(pricing.address, credential=alice, tracing=False) as channel:
        stub = pricing_service_pb2_grpc.PricingServiceStub(channel)
        await stub.CreatePriceList(pb.CreatePriceListRequest(request_id="pl", price_list=price_list("base")))
    start = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    prices = tmp_path / "prices.csv"
    prices.write_text(
        "price_list_id,sku,amount,currency_code,start_time\n"
        f"base,P00001,19.99,EUR,{start}\nbase,P00002,15.00,EUR,{start}\n"
    )
    staged = await cli("prices", "import", str(prices), "--description", "autumn", "--json")
    assert staged.code == 0, staged.err
    change_set = staged.json()["change_set"]
    assert (change_set["state"], staged.json()["row_count"]) == ("CHANGE_SET_STATE_DRAFT", "2")
    assert "2/2 rows sent (100%)" in staged.err

    # submit (author) and approve (another operator), then explain the price
    async with connect(pricing.address, credential=alice, tracing=False) as channel:
        submitted = await pricing_service_pb2_grpc.PricingServiceStub(channel).SubmitChangeSet(
            pb.SubmitChangeSetRequest(
                request_id="s", change_set_id=change_set["change_set_id"], etag=change_set["etag"]
            )
        )
    async with connect(pricing.address, credential=bob, tracing=False) as channel:
        await pricing_service_pb2_grpc.PricingServiceStub(channel).ApproveChangeSet(
            pb.ApproveChangeSetRequest(
                request_id="a", change_set_id=change_set["change_set_id"], etag=submitted.change_set.etag
            )
        )
    explained = await cli("prices", "explain", "P00001", "--currency", "EUR", "--json")
    assert explained.code == 0, explained.err
    answer = explained.json()
    assert answer["price"]["price"]["gross"] == {"currency_code": "EUR", "units": "19", "nanos": 990000000}
    assert [c["outcome"] for c in answer["candidates"]] == ["CANDIDATE_OUTCOME_WINNER"]
    table = await cli("prices", "explain", "P00001", "--currency", "EUR")
    assert table.code == 0
    assert "gross:" in table.out
    assert "19.99 EUR" in table.out
    assert "WINNER" in table.out

    # a SKU without entries: no price is a finding (exit 1), the table says so
    missing = await cli("prices", "explain", "P00003", "--currency", "EUR")
    assert missing.code == 1
    assert "no price" in missing.out


async def test_audit_pages_through_every_record(pricing, keys, cli: Cli, tmp_path: Path) -> None:
    cli.key(keys[0])
    assert (await cli("products", "import", str(write_products(tmp_path / "p.csv", 1200)))).code == 0
    # 1100 records of one entity type: three pages (500 at most per page)
    listed = await cli(
        "audit",
        "--service",
        "pricing",
        "--entity-type",
        "retail.pricing.v1.Product",
        "--limit",
        "1100",
        "--json",
    )
    assert listed.code == 0, listed.err
    records = listed.json()["records"]
    assert len(records) == 1100
    assert len({r["audit_id"] for r in records}) == 1100
    assert {r["service"] for r in records} == {"pricing"}
    assert {r["principal_id"] for r in records} == {"alice"}
    assert records == sorted(records, key=lambda r: (r["occurred_at"], r["audit_id"]), reverse=True)

    one = await cli(
        "audit",
        "--service",
        "pricing",
        "--entity-type",
        "retail.pricing.v1.Product",
        "--entity-key",
        "P00007",
    )
    assert one.code == 0
    lines = one.out.splitlines()
    assert lines[0].split()[:3] == ["TIME", "SERVICE", "PRINCIPAL"]
    assert len(lines) == 2
    assert "P00007" in lines[1]
    assert "ImportProducts" in lines[1]


async def test_refusals_name_the_row_or_field(pricing, keys, cli: Cli, tmp_path: Path) -> None:
    cli.key(keys[0])
    # rows checked before sending: every bad row with its number (header = row 1), nothing sent
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "sku,tax_class,status,cost_price\nA1,standard,ACTIVE,\nA2,,ACTIVE,\nA3,standard,ACTIVE,12\n"
    )
    refused = await cli("products", "import", str(bad))
    assert refused.code == 4
    assert "row 3, column tax_class: required" in refused.err
    assert "row 4, column cost_price" in refused.err
    assert "nothing was sent" in refused.err
    # a product the service refuses (whitespace in a SKU): its products[i] becomes the CSV row, the
    # stream is all or nothing, so nothing was applied
    spaced = tmp_path / "spaced.csv"
    spaced.write_text("sku,tax_class\n\nA1,standard\nA 2,standard\n")
    refused = await cli("products", "import", str(spaced))
    assert refused.code == 4
    assert f"pricing refused {spaced}: row 4, column sku" in refused.err
    audit = await cli("audit", "--service", "pricing", "--json")
    assert audit.json()["records"] == []

    # rows refused by the service (the list does not exist): its rows[i].field becomes row and column
    prices = tmp_path / "prices.csv"
    prices.write_text(
        "price_list_id,sku,amount,currency_code,start_time\nnope,A1,1.00,EUR,2026-01-01T00:00:00Z\n"
    )
    refused = await cli("prices", "import", str(prices))
    assert refused.code == 4, refused.err
    assert f"refused {prices}: row 2, column price_list_id" in refused.err
    assert len(refused.err.strip().splitlines()) == 1

    # INVALID_ARGUMENT on a plain call names the request field
    refused = await cli("prices", "explain", "A1", "--currency", "XXX")
    assert refused.code == 4
    assert "field query.currency_code" in refused.err
    assert "XXX" in refused.err

    # a wrong key: refused (4) with what to set
    cli.key(SecretStr("rk_bogus_bogus"))
    refused = await cli("prices", "explain", "A1", "--currency", "EUR")
    assert refused.code == 4
    assert "RETAILCTL_API_KEY" in refused.err


async def test_unreachable_service_and_missing_key(cli: Cli, tmp_path: Path) -> None:
    cli.target("pricing", "127.0.0.1:1")
    no_key = await cli("prices", "explain", "A1", "--currency", "EUR")
    assert no_key.code == 2
    assert "RETAILCTL_API_KEY" in no_key.err

    cli.key(SecretStr("rk_x_y"))
    down = await cli("prices", "explain", "A1", "--currency", "EUR", "--timeout", "5")
    assert down.code == 3
    assert "cannot reach pricing at 127.0.0.1:1" in down.err
    assert "PRICING_TARGET" in down.err
    assert len(down.err.strip().splitlines()) == 1

    usage = await cli("campaigns", "list", "--state", "SOMEDAY")
    assert usage.code == 2
