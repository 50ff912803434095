"""SQL of the gateway: channels and assortments, the delivery ledger/queue, change log, health."""

from pathlib import Path

from retail_channel_gateway.repository.channels import ChannelRecord, ChannelRepository
from retail_channel_gateway.repository.ledger import DeadLetterRow, LedgerRepository, PendingRow
from retail_common.db import MigrationSource

MIGRATIONS = MigrationSource("retail_channel_gateway", Path(__file__).resolve().parents[3] / "migrations")

__all__ = [
    "MIGRATIONS",
    "ChannelRecord",
    "ChannelRepository",
    "DeadLetterRow",
    "LedgerRepository",
    "PendingRow",
]
