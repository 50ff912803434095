"""The batch resolution's query fast path (pure, no database): queries built without the dataclass
constructor equal the constructor's, and remembering valid SKUs never lets an invalid one through."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_common.clock import ManualClock
from retail_pricing.domain.errors import BadInputError
from retail_pricing.domain.model import PriceQuery, checked_query
from retail_pricing.handlers import resolution
from retail_pricing.handlers.common import Deps
from retail_pricing.testing import query

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_checked_query_equals_the_constructors_query() -> None:
    built = checked_query("SKU", "EUR", NOW, "web", "S1", "R1", "vip", 3)
    expected = PriceQuery("SKU", "EUR", NOW, "web", "S1", "R1", "vip", 3)
    assert built == expected
    assert hash(built) == hash(expected)
    assert repr(built) == repr(expected)
    with pytest.raises(AttributeError):  # still frozen
        built.sku = "other"  # type: ignore[misc]


async def test_a_batch_reports_every_bad_query_even_after_its_sku_was_seen_valid() -> None:
    deps = Deps(pool=None, clock=ManualClock(NOW), catalog=None, writer=None)  # type: ignore[arg-type]
    good = query("SKU-1")
    bad_sku, bad_currency, bad_quantity = query("bad sku"), query("SKU-1"), query("SKU-1")
    bad_currency.currency_code = "XXX"
    bad_quantity.quantity = -1
    request = pb.BatchResolvePricesRequest(queries=[good, bad_sku, good, bad_currency, bad_quantity])
    for _ in range(2):  # the second time "SKU-1" is remembered as a valid SKU
        with pytest.raises(BadInputError) as caught:
            await resolution.batch_resolve_prices(deps, request)
        assert [v.subject for v in caught.value.violations] == [
            "queries[1].sku",
            "queries[3].currency_code",
            "queries[4].quantity",
        ]
