"""What the seed scenario creates (DESIGN.md §1), as plain data: ids carry a per-run suffix so the demo
can run again against the same suite; store ids are stable (the estate is the same shops every run)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

__all__ = ["REGIONS", "Plan", "new_plan"]

# Regions across time zones; stores are spread evenly over them.
REGIONS = (
    ("de-north", "Europe/Berlin"),
    ("fr-west", "Europe/Paris"),
    ("uk-south", "Europe/London"),
    ("us-east", "America/New_York"),
    ("us-west", "America/Los_Angeles"),
    ("jp-kanto", "Asia/Tokyo"),
)


@dataclass(frozen=True)
class Plan:
    run: str
    stores: int = 600
    currency: str = "EUR"
    on_hand: int = 40  # units of every SKU at every store
    guardrail_min: int = 10  # the campaign's minimum available-to-sell per store
    order_units: int = 2  # units each channel's orders reserve per line
    # The campaign starts this long after it is defined (None: enough for launch to register the stock
    # guardrails first, one inventory rule per store and channel, a few ms each, with room for a busy
    # machine: 45 s for 600 stores; launch took 13-19 s on a shared 2-core box).
    start_in: float | None = None

    @property
    def start_in_seconds(self) -> float:
        if self.start_in is not None:
            return self.start_in
        return 20.0 + 0.0085 * self.stores * len(self.channels)

    @property
    def store_ids(self) -> list[str]:
        return [f"store-{i:03d}" for i in range(self.stores)]

    def region_of(self, index: int) -> tuple[str, str]:
        return REGIONS[index % len(REGIONS)]

    @property
    def skus(self) -> dict[str, str]:
        """SKU -> list price (gross EUR)."""
        return {f"TEE-{self.run}": "20.00", f"JEANS-{self.run}": "60.00", f"CAP-{self.run}": "15.00"}

    @property
    def guarded_sku(self) -> str:
        """The SKU the campaign names explicitly, so its stock guardrail watches it at every store."""
        return f"TEE-{self.run}"

    @property
    def category(self) -> str:
        return f"weekend-{self.run}"

    # Channels: three pushed over NATS, two marketplaces by signed webhook (the second one fails).
    @property
    def web(self) -> str:
        return f"web-{self.run}"

    @property
    def app(self) -> str:
        return f"app-{self.run}"

    @property
    def pos(self) -> str:
        return f"pos-{self.run}"

    @property
    def market_ok(self) -> str:
        return f"mkt-a-{self.run}"

    @property
    def market_failing(self) -> str:
        return f"mkt-b-{self.run}"

    @property
    def channels(self) -> list[str]:
        return [self.web, self.app, self.pos, self.market_ok, self.market_failing]

    @property
    def campaign_id(self) -> str:
        return f"weekend-{self.run}"

    @property
    def price_list_id(self) -> str:
        return f"base-{self.run}"

    @property
    def low_stock_stores(self) -> list[str]:
        """Stores where the guarded SKU sells out below its guardrail."""
        return self.store_ids[:3]

    @property
    def order_stores(self) -> list[str]:
        """Stores each channel's orders reserve from (disjoint from the low-stock ones)."""
        return self.store_ids[10:12]


def new_plan(stores: int = 600, start_in: float | None = None) -> Plan:
    if stores < 21:
        raise ValueError("the scenario needs at least 21 stores (low-stock, order and reference stores)")
    return Plan(run=uuid.uuid4().hex[:6], stores=stores, start_in=start_in)
