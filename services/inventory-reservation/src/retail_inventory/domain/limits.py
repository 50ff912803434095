"""Documented bounds of the inventory contract (see protos/retail/inventory/v1)."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

MAX_ID_LENGTH: Final = 128
MAX_RESERVE_LINES: Final = 100
MAX_LINE_QUANTITY: Final = 1_000_000
MAX_STOCK_QUANTITY: Final = 1_000_000_000
MIN_TTL: Final = timedelta(seconds=10)
MAX_TTL: Final = timedelta(hours=72)
DEFAULT_TTL: Final = timedelta(minutes=15)
MAX_MOVEMENTS_PER_REQUEST: Final = 1_000
MAX_SNAPSHOT_ENTRIES_PER_MESSAGE: Final = 10_000
MAX_POLICIES_PER_REQUEST: Final = 1_000
MAX_FENCES_PER_POSITION: Final = 32
MAX_AVAILABILITY_QUERIES: Final = 1_000
MAX_LOCATION_CHANNELS: Final = 64
MAX_PAGE_SIZE: Final = 1_000
DEFAULT_PAGE_SIZE: Final = 100
BASIS_POINTS: Final = 10_000
