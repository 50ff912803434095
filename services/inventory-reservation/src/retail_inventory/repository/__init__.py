"""All SQL of the inventory service."""

from retail_inventory.repository.inventory import (
    MIGRATIONS,
    InventoryRepository,
    LocationIn,
    MovementIn,
    PolicyIn,
    ReserveAudit,
    RuleIn,
    SnapshotIn,
    SnapshotResult,
)

__all__ = [
    "MIGRATIONS",
    "InventoryRepository",
    "LocationIn",
    "MovementIn",
    "PolicyIn",
    "ReserveAudit",
    "RuleIn",
    "SnapshotIn",
    "SnapshotResult",
]
