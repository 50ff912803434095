"""The pricing service's own migrations (services/pricing/migrations)."""

from __future__ import annotations

from pathlib import Path

from retail_common.db import MigrationSource

__all__ = ["PRICING_MIGRATIONS"]

PRICING_MIGRATIONS = MigrationSource("retail_pricing", Path(__file__).resolve().parents[2] / "migrations")
