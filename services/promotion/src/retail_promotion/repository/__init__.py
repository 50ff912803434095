"""Every SQL statement of the promotion service. Functions run inside the caller's transaction."""

from pathlib import Path

from retail_common.db import MigrationSource
from retail_promotion.repository.campaigns import CampaignRepository
from retail_promotion.repository.catalog import LiveCatalog, load_live_catalog
from retail_promotion.repository.redemptions import RedemptionRepository

MIGRATIONS = MigrationSource("retail_promotion", Path(__file__).resolve().parents[3] / "migrations")

__all__ = ["MIGRATIONS", "CampaignRepository", "LiveCatalog", "RedemptionRepository", "load_live_catalog"]
