"""`retailctl stock import` against a real inventory service process."""

from __future__ import annotations

from pathlib import Path

from retail.inventory.v1 import inventory_service_pb2 as pb
from retail.inventory.v1 import inventory_service_pb2_grpc, location_pb2
from retail_common.grpcx import connect
from retail_inventory.servicer import OPERATOR_ROLE

from .conftest import Cli, operator_key

AS_OF = "2026-03-01T06:00:00Z"


async def test_stock_import_batches_reports_and_refuses_unknown_locations(
    start_service, service_env, pool, cli: Cli, tmp_path: Path
) -> None:
    inventory = await start_service("retail_inventory", service_env)
    key = await operator_key(pool, "ops", [OPERATOR_ROLE])
    async with connect(inventory.address, credential=key, tracing=False) as channel:
        stub = inventory_service_pb2_grpc.InventoryServiceStub(channel)
        for store in ("s1", "s2"):
            await stub.UpsertLocation(
                pb.UpsertLocationRequest(
                    request_id=f"loc-{store}",
                    location=location_pb2.Location(
                        location_id=store,
                        kind=location_pb2.LOCATION_KIND_STORE,
                        region_id="r1",
                        time_zone="Europe/Berlin",
                        channel_ids=["web"],
                        active=True,
                    ),
                )
            )
    cli.target("inventory-reservation", inventory.address)
    cli.key(key)

    # 6000 SKUs x 2 stores: three messages of at most 5000 entries
    rows = [f"K{i:05},{store},{i % 50},{AS_OF}" for i in range(6000) for store in ("s1", "s2")]
    counts = tmp_path / "stock.csv"
    counts.write_text("sku,location_id,on_hand,as_of_time\n" + "\n".join(rows) + "\n")
    imported = await cli("stock", "import", str(counts), "--json")
    assert imported.code == 0, imported.err
    result = imported.json()
    assert (result["received_count"], result["applied_count"], result["ignored_count"]) == (
        "12000",
        "12000",
        "0",
    )
    assert "12,000/12,000 rows sent (100%)" in imported.err

    # the same counts again are not newer: ignored, nothing changes (a retry after a break is safe)
    again = await cli("stock", "import", str(counts))
    assert again.code == 0
    assert "ignored (not newer): 12000" in again.out

    # an unknown store and a negative count: both rows named, nothing sent
    bad = tmp_path / "bad.csv"
    bad.write_text(
        f"sku,location_id,on_hand,as_of_time\nK1,s1,3,{AS_OF}\nK1,s9,3,{AS_OF}\nK2,s2,-1,{AS_OF}\n"
    )
    refused = await cli("stock", "import", str(bad))
    assert refused.code == 4
    assert "row 3, column location_id: unknown location 's9'" in refused.err
    assert "row 4, column on_hand" in refused.err
